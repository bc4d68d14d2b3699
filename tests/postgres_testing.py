"""The machine's PostgreSQL as the tests use it: a database of their own per run.

Every area of the suite that needs PostgreSQL (the store, the outbox, the CLI, the
Observatory) makes its databases here: a unique name, created at the start and dropped
(``WITH (FORCE)``) at the end, so runs never see each other's data and leave nothing
behind.  PostgreSQL unreachable is a failure that says how to start it, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest

PG_ADMIN_URL = os.environ.get(
    "CQRS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""Where the tests create their databases (``CQRS_TEST_POSTGRES_URL`` overrides it)."""


async def admin(sql: str, url: str = PG_ADMIN_URL) -> None:
    """Run one statement on the administration database (or on the one at ``url``)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def database_url(name: str) -> str:
    """The URL of database ``name`` on the test server."""
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


@contextmanager
def temporary_database(prefix: str, *, needed_by: str) -> Iterator[str]:
    """Create a database named ``<prefix>_<pid>_<random>``, yield its name, drop it.

    ``needed_by`` names the tests in the failure message when PostgreSQL cannot be
    reached (they fail; they are never skipped).
    """
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(
            f"PostgreSQL is required by {needed_by} and is not reachable at {PG_ADMIN_URL} "
            f"({type(exc).__name__}: {exc}); start it with scripts/services",
            pytrace=False,
        )
    try:
        yield name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
