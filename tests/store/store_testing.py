"""Names shared by the store tests (imported by the test modules and conftest)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import asyncpg

from python_cqrs_core.store import MessageRecord

BACKENDS = ["memory", "sqlite", "postgres"]

RecordFactory = Callable[..., MessageRecord]
"""Builds a record: see the ``make_record`` fixture."""


async def create_schema(url: str) -> str:
    """Create a fresh, empty schema in ``url``'s database: a store of its own."""
    schema = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    return schema
