"""Move python-cqrs-core 0.1.0 (the PyPI peer) to the import name ``pcc_peer``.

Adapted from ``setup_venv.sh`` of the shared benchmark harness.  The peer has the
import name of the library under test, so its package is copied to ``pcc_peer``
(every ``python_cqrs_core`` inside rewritten) and its own copy removed; this
repository can then be installed as ``python_cqrs_core`` into the same venv and
both are measured in one process.  The peer's version is written to
``pcc_peer/_peer_version.py``, because once this repository is installed the
distribution name ``python-cqrs-core`` reports our version, not the peer's.

Run with the bench venv's python, after installing the peers and before
installing this repository.  Idempotent: does nothing when the peer is not
installed as ``python_cqrs_core`` (already moved, or replaced by our package).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import sysconfig
from pathlib import Path


def main() -> int:
    site = Path(sysconfig.get_paths()["purelib"])
    src, dst = site / "python_cqrs_core", site / "pcc_peer"
    # The peer 0.1.0 has no mediator; our package (if ever installed non-editable)
    # has one: never move ours.
    if not src.is_dir() or (src / "mediator.py").exists():
        if not dst.is_dir():
            print("rename_peer: python-cqrs-core 0.1.0 is not installed", file=sys.stderr)
            return 1
        return 0
    version = importlib.metadata.version("python-cqrs-core")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    for f in dst.glob("*.py"):
        f.write_text(f.read_text().replace("python_cqrs_core", "pcc_peer"))
    (dst / "_peer_version.py").write_text(f'VERSION = "{version}"\n')
    shutil.rmtree(src)
    print(f"rename_peer: python-cqrs-core {version} -> import name pcc_peer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
