"""The environment the tests run in is the one requirements/constraints.txt pins.

``make test`` (and so CI) and ``make demo`` install with ``pip -c
requirements/constraints.txt``; if this test fails, the venv was installed some other way
or the lock is stale (``make lock`` refreshes it).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"


def pins() -> dict[str, str]:
    found = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def test_every_dependency_and_dev_tool_is_pinned_to_one_version():
    pinned = pins()
    for tool in ("pydantic", "pytest", "ruff", "mypy", "pip", "asyncpg", "typer", "rich"):
        assert tool in pinned, tool
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", version) for version in pinned.values())


def test_the_running_environment_has_exactly_the_pinned_versions():
    installed = {
        re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(): dist.version
        for dist in metadata.distributions()
    }
    wrong = {
        name: (version, installed.get(name))
        for name, version in pins().items()
        if name not in ("setuptools",) and installed.get(name) != version
    }
    assert wrong == {}, "run `make test` (it installs the lock) or refresh it with `make lock`"
