"""Fixtures of the ``cqrs`` command line tests: one SQLite store for the whole run,
filled by the real demo (see ``cli_testing.populate``), its two requests' trees, and
empty PostgreSQL databases (the machine's local service; the tests fail if it is down)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from cli_testing import PG_ADMIN_URL, admin, populate, run, sqlite_url

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
    name = f"cqrs_cli_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL is required by these tests and is not reachable at {PG_ADMIN_URL} "
            f"({type(exc).__name__}: {exc}); start it with scripts/services",
            pytrace=False,
        )
    yield name
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
