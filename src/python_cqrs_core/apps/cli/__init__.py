"""The ``cqrs`` command line: read causation trees out of a message store.

The commands themselves live in :mod:`python_cqrs_core.apps.cli.commands`, which needs
the ``[cli]`` extra (typer and rich).  This package only holds :func:`main`, the
``cqrs`` entry point, so that ``cqrs`` installed without the extra says how to install
it instead of printing a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["INSTALL_HINT", "main"]

INSTALL_HINT = (
    "error: the cqrs command needs the [cli] extra (typer and rich): "
    "pip install 'python-cqrs-core[cli]'"
)


def main() -> None:
    """Entry point of the ``cqrs`` script."""
    try:
        from .commands import app
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("typer", "rich", "click"):
            raise
        print(INSTALL_HINT, file=sys.stderr)
        raise SystemExit(2) from None
    app()
