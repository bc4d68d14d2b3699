"""``cqrs observatory``: serve the live web view of a message store.

::

    cqrs observatory                                   # ./cqrs.db on http://127.0.0.1:9000
    cqrs observatory --store postgresql://app@db/cqrs --port 9100
    CQRS_OBSERVATORY_TOKEN=... cqrs observatory --host 0.0.0.0
    cqrs observatory --transport redis://broker:6379/0 --dead-letters orders.events

It runs :func:`python_cqrs_core.apps.observatory.serve`, which needs the
``[observatory]`` extra (FastAPI, uvicorn, Jinja2): without it, the command says how to
install it.  Every setting is checked before the server starts: a bad one (a token
too short, a public address without a token, a port in use, a store that cannot be
opened) is one ``error:`` line, with passwords of the URLs masked, and exit code 2
(invalid input) or 1 (the store or the port cannot be had).  Ctrl-C or ``SIGTERM``
stops it; the exit code is then 0.

:func:`register` adds the command to the ``cqrs`` application
(:mod:`python_cqrs_core.apps.cli.commands` calls it).
"""

from __future__ import annotations

from typing import Annotated, Final

import typer

__all__ = ["INSTALL_OBSERVATORY", "TOKEN_ENV", "observatory", "register"]

TOKEN_ENV: Final = "CQRS_OBSERVATORY_TOKEN"  # noqa: S105 - a variable's name, not a secret
"""The environment variable ``--token`` defaults to (``ps`` does not show it)."""

INSTALL_OBSERVATORY: Final = (
    "the Observatory needs the [observatory] extra (FastAPI, uvicorn, Jinja2): "
    "pip install 'python-cqrs-core[observatory]'"
)
_EXTRA_LIBRARIES: Final = frozenset(("fastapi", "starlette", "uvicorn", "jinja2", "markupsafe"))


def observatory(
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            "-s",
            metavar="URL",
            help="The store to show, opened read-only: sqlite:///path.db or postgresql://... "
            "[default: $CQRS_STORE_URL, else sqlite:///cqrs.db]",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="The address to listen on; any but a loopback one needs a token."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="The port to listen on (0: any free).")
    ] = 9000,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            metavar="TOKEN",
            help=f"Require this token (16 or more characters) [default: ${TOKEN_ENV}; "
            "prefer the variable, which ps does not show].",
            show_default=False,
            show_envvar=False,
        ),
    ] = None,
    transport: Annotated[
        str | None,
        typer.Option(
            "--transport",
            metavar="URL",
            help="A Redis Streams URL (redis://...) whose dead letters the failures page shows.",
        ),
    ] = None,
    transport_prefix: Annotated[
        str,
        typer.Option(
            "--transport-prefix",
            metavar="PREFIX",
            help="The key prefix the application's RedisTransport(prefix=...) uses.",
        ),
    ] = "",
    dead_letters: Annotated[
        list[str] | None,
        typer.Option(
            "--dead-letters",
            metavar="DESTINATION",
            help="A destination whose dead letters to show (repeat it for several).",
        ),
    ] = None,
    apm_url: Annotated[
        str | None,
        typer.Option(
            "--apm-url",
            metavar="TEMPLATE",
            help="An address with {trace_id}, e.g. https://tempo.example/trace/{trace_id}: "
            "each traceparent links to it.",
        ),
    ] = None,
) -> None:
    """Serve the Observatory: a live web view of the store (timeline, trees, failures).

    It reads the store read-only, on its own connection, and listens on
    http://127.0.0.1:9000/timeline by default; Ctrl-C stops it.
    """
    # commands imports this module to register it: its helpers are imported here.
    from ...store import StoreOpenError
    from .commands import CliError, StoreUrl, _store_url, _user_errors

    with _user_errors():
        try:
            from ..observatory import serve
        except ImportError as exc:
            if (exc.name or "").split(".")[0] not in _EXTRA_LIBRARIES:
                raise
            raise CliError(INSTALL_OBSERVATORY, exit_code=2) from None
        url = _store_url(store)
        broker = None if transport is None else StoreUrl.of(transport)

        def scrub(text: str) -> str:
            text = url.scrub(text)
            return text if broker is None else broker.scrub(text)

        try:
            serve(
                url.text,
                host=host,
                port=port,
                token=token,
                transport_url=transport,
                transport_prefix=transport_prefix,
                dead_letter_destinations=dead_letters or (),
                apm_url_template=apm_url,
            )
        except KeyboardInterrupt:
            return
        except StoreOpenError as exc:
            raise CliError(url.explain(exc)) from None
        except (ValueError, TypeError) as exc:
            raise CliError(scrub(str(exc)), exit_code=2) from None
        except OSError as exc:
            raise CliError(scrub(str(exc))) from None


def register(app: typer.Typer) -> None:
    """Add ``cqrs observatory`` to ``app``."""
    app.command("observatory")(observatory)
