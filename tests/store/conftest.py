"""Fixtures of the message store tests: one ``store`` per backend, a PostgreSQL
database per test run, and a record factory.

PostgreSQL is the machine's local service (``scripts/test`` starts it).  The run
creates its own database, ``cqrs_test_<pid>_<hex>``, and drops it at the end; every
test then gets a fresh schema in it (``search_path``), so tests never see each
other's records.  If PostgreSQL cannot be reached the tests *fail*, saying so.

The behaviour every backend shares is the store contract, run by
``test_store_behaviour.py``; the ``store`` fixture here serves the other tests that
run once per backend (the recorder's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from store_testing import BACKENDS, RecordFactory, create_schema

from postgres_testing import database_url, temporary_database
from python_cqrs_core.store import MessageStore, open_store
from python_cqrs_core.testing.store_contract import sample_record


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a database created for this test run, dropped when it ends."""
    with temporary_database("cqrs_test", needed_by="the store tests") as name:
        yield database_url(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend_location(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where the test's store lives: ``memory://``, an SQLite URL or the run's
    PostgreSQL database (resolved here, outside the event loop)."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'cqrs.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(backend: str, backend_location: str) -> AsyncIterator[MessageStore]:
    """An empty store of each backend (the test runs once per backend), closed after
    the test.  PostgreSQL stores live in a fresh schema of the run's database."""
    options: dict[str, Any] = {}
    if backend == "postgres":
        schema = await create_schema(backend_location)
        options["server_settings"] = {"search_path": schema}
    opened = await open_store(backend_location, **options)
    yield opened
    await opened.close()


@pytest.fixture
def make_record() -> RecordFactory:
    """Build a record directly, as if a message had been dispatched (the contract's
    :func:`~python_cqrs_core.testing.store_contract.sample_record`).

    ``make_record(correlation_id="op-1", parent=other_record, message_type="X")``;
    ``cause="..."`` sets a raw causation id (for orphans and cycles).
    """
    return sample_record
