"""Fixtures of the message store tests: one ``store`` per backend, a PostgreSQL
database per test run, and a record factory.

PostgreSQL is the machine's local service (``scripts/test`` starts it).  The run
creates its own database, ``cqrs_test_<pid>_<hex>``, and drops it at the end; every
test then gets a fresh schema in it (``search_path``), so tests never see each
other's records.  If PostgreSQL cannot be reached the tests *fail*, saying so.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest
from store_testing import BACKENDS, RecordFactory, StoreOpener, create_schema

from python_cqrs_core import uuid4
from python_cqrs_core.store import HandlerOutcome, MessageRecord, MessageStore, open_store

PG_ADMIN_URL = os.environ.get(
    "CQRS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a database created for this test run, dropped when it ends."""
    name = f"cqrs_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL is required by the store tests and is not reachable at "
            f"{PG_ADMIN_URL} ({type(exc).__name__}: {exc}); start it with scripts/services",
            pytrace=False,
        )
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
async def open_test_store(backend: str, backend_location: str) -> AsyncIterator[StoreOpener]:
    """A function opening (again) *the same* store of the test's backend.

    For ``memory`` there is nothing to reopen: it returns the one store each time.
    Every store it opened is closed after the test.
    """
    opened: list[MessageStore] = []
    schema: list[str] = []

    async def opener() -> MessageStore:
        if backend == "memory":
            if not opened:
                opened.append(await open_store("memory://"))
            return opened[0]
        if backend == "sqlite":
            store = await open_store(backend_location)
        else:
            if not schema:
                schema.append(await create_schema(backend_location))
            store = await open_store(backend_location, server_settings={"search_path": schema[0]})
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_test_store: StoreOpener) -> MessageStore:
    """An empty store of each backend (the test runs once per backend)."""
    return await open_test_store()


@pytest.fixture
def make_record() -> RecordFactory:
    """Build a record directly, as if a message had been dispatched.

    ``make_record(correlation_id="op-1", parent=other_record, message_type="X")``;
    ``cause="..."`` sets a raw causation id (for orphans and cycles).
    """

    def make(
        *,
        correlation_id: str | UUID = "op-1",
        parent: MessageRecord | None = None,
        cause: str | None = None,
        message_id: UUID | None = None,
        message_type: str = "Msg",
        kind: str = "command",
        **fields: Any,
    ) -> MessageRecord:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "message_id": message_id or uuid4(),
            "kind": kind,
            "message_type": message_type,
            "correlation_id": str(correlation_id),
            "causation_id": str(parent.message_id) if parent is not None else cause,
            "requested_by": "alice@example.com",
            "requested_at": now,
            "recorded_at": now,
            "payload": {"n": 1},
            "outcome": "succeeded",
            "handlers": (HandlerOutcome("Handler", "succeeded", 0.25),),
            "error_type": None,
            "error_message": None,
            "duration_ms": 0.5,
            "headers": {},
        }
        values.update(fields)
        return MessageRecord(**values)

    return make
