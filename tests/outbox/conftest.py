"""Fixtures of the outbox tests: a PostgreSQL database per run, a backend per test.

PostgreSQL is the machine's local service.  The run creates its own database,
``cqrs_outbox_<pid>_<hex>``, and drops it at the end; every test gets a fresh schema
in it (``search_path``), so tests never see each other's tables.  If PostgreSQL cannot
be reached the tests *fail*, saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from outbox_testing import (
    BACKENDS,
    AsyncpgBackend,
    Backend,
    RecordingTransport,
    SQLAlchemyBackend,
    SQLiteBackend,
    create_schema,
)

from postgres_testing import database_url, temporary_database


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a database created for this test run, dropped when it ends."""
    with temporary_database("cqrs_outbox", needed_by="the outbox tests") as name:
        yield database_url(name)


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend_location(backend_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The SQLite file, or the run's PostgreSQL database (resolved here, outside the
    event loop)."""
    if backend_name == "sqlite":
        return str(tmp_path / "cqrs.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def backend(backend_name: str, backend_location: str) -> AsyncIterator[Backend]:
    """The test's scenario on each backend (the test runs once per backend)."""
    opened: Backend
    if backend_name == "sqlite":
        opened = await SQLiteBackend.open(Path(backend_location))
    else:
        url = backend_location
        schema = await create_schema(url)
        if backend_name == "sqlalchemy":
            opened = await SQLAlchemyBackend.open(url, schema)
        else:
            opened = await AsyncpgBackend.open(url, schema)
    yield opened
    await opened.close()


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()
