"""Fixtures of the ``cqrs`` command line tests: one SQLite store for the whole run,
filled by the real demo (see ``cli_testing.populate``), its two requests' trees, and
empty PostgreSQL databases (the machine's local service; the tests fail if it is down)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_testing import populate, run, sqlite_url

from postgres_testing import temporary_database
from python_cqrs_core.apps.cli._demo import DemoResult
from python_cqrs_core.store import CausationNode


@pytest.fixture(scope="session")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli") / "store.db"


@pytest.fixture(scope="session")
def url(store_path: Path) -> str:
    return sqlite_url(store_path)


@pytest.fixture(scope="session")
def demo(url: str) -> DemoResult:
    return run(populate(url))


@pytest.fixture(scope="session")
def alice(demo: DemoResult) -> CausationNode:
    return next(r for r in demo.requests if r.error is None).trees[0]


@pytest.fixture(scope="session")
def bob(demo: DemoResult) -> CausationNode:
    return next(r for r in demo.requests if r.error is not None).trees[0]


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The name of an empty PostgreSQL database made for the test, dropped after it."""
    with temporary_database("cqrs_cli", needed_by="these tests") as name:
        yield name
