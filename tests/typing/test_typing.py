"""Type checking of the public API, as users' code sees it (mypy --strict)."""

from __future__ import annotations

from pathlib import Path

from mypy import api as mypy_api

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def test_send_query_and_process_are_typed_by_the_message_class():
    stdout, stderr, status = mypy_api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            str(HERE / "typed_results.py"),
        ]
    )
    assert status == 0, stdout + stderr
