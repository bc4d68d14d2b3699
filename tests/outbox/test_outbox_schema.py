"""The outbox tables: our migrations and the SQLAlchemy metadata (what Alembic manages)
define the same tables; migrations are idempotent and refuse what they did not make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
from outbox_testing import create_schema
from sqlalchemy import MetaData, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from python_cqrs_core.outbox import OutboxTableError, SQLiteOutbox
from python_cqrs_core.outbox.postgres import PostgresOutbox, migrate_outbox
from python_cqrs_core.outbox.schema import INBOX_TABLE, OUTBOX_TABLE, SCHEMA_VERSION_TABLE
from python_cqrs_core.outbox.sqlalchemy import inbox_table, outbox_table
from python_cqrs_core.store import open_store


def _engine(url: str, schema: str) -> Any:
    return create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1),
        connect_args={"server_settings": {"search_path": schema}},
    )


def _describe(sync_conn: Any, schema: str) -> dict[str, Any]:
    """Everything Alembic's autogenerate compares, for both tables, schema-neutral."""
    inspector = inspect(sync_conn)
    described: dict[str, Any] = {}
    for table in (OUTBOX_TABLE, INBOX_TABLE):
        columns = [
            (
                column["name"],
                repr(column["type"]),  # TIMESTAMP(timezone=True), not just TIMESTAMP
                column["nullable"],
                column.get("default"),
                {k: v for k, v in (column.get("identity") or {}).items()},
            )
            for column in inspector.get_columns(table, schema=schema)
        ]
        indexes = sorted(
            (
                index["name"],
                tuple(index["column_names"]),
                bool(index["unique"]),
                str(index.get("dialect_options", {}).get("postgresql_where")),
            )
            for index in inspector.get_indexes(table, schema=schema)
        )
        described[table] = {
            "columns": columns,
            "primary key": inspector.get_pk_constraint(table, schema=schema),
            "indexes": indexes,
            "unique constraints": inspector.get_unique_constraints(table, schema=schema),
            "foreign keys": inspector.get_foreign_keys(table, schema=schema),
        }
    return described


async def test_the_metadata_tables_alembic_would_create_equal_the_migrated_ones(
    postgres_url: str,
):
    migrated, declared = await create_schema(postgres_url), await create_schema(postgres_url)
    conn = await asyncpg.connect(postgres_url, server_settings={"search_path": migrated})
    try:
        assert await migrate_outbox(conn) == 1
    finally:
        await conn.close()
    metadata = MetaData()
    assert outbox_table(metadata) is outbox_table(metadata)  # declared once per metadata
    inbox_table(metadata)
    engine = _engine(postgres_url, declared)
    try:
        async with engine.begin() as sync:
            await sync.run_sync(metadata.create_all)
        async with engine.connect() as sync:
            from_metadata = await sync.run_sync(_describe, declared)
            from_migrations = await sync.run_sync(_describe, migrated)
    finally:
        await engine.dispose()

    assert from_metadata == from_migrations
    outbox = from_migrations[OUTBOX_TABLE]
    assert [c[0] for c in outbox["columns"]][:3] == ["position", "message_id", "message_type"]
    assert outbox["columns"][0][4]["always"] is True  # GENERATED ALWAYS AS IDENTITY
    assert ("cqrs_outbox_message_id", ("message_id",), True, "None") in outbox["indexes"]


async def test_migrations_are_idempotent_and_tables_alembic_made_are_left_to_alembic(
    postgres_url: str,
):
    ours, alembics = await create_schema(postgres_url), await create_schema(postgres_url)
    for _ in range(2):
        outbox = await PostgresOutbox.connect(postgres_url, server_settings={"search_path": ours})
        await outbox.close()
    conn = await asyncpg.connect(postgres_url, server_settings={"search_path": ours})
    try:
        assert await conn.fetchval(f"SELECT count(*) FROM {SCHEMA_VERSION_TABLE}") == 1
    finally:
        await conn.close()

    empty = {"server_settings": {"search_path": alembics}}
    with pytest.raises(OutboxTableError, match="has no cqrs_outbox and cqrs_inbox tables"):
        await PostgresOutbox.connect(postgres_url, migrate=False, **empty)
    metadata = MetaData()
    outbox_table(metadata)
    inbox_table(metadata)
    engine = _engine(postgres_url, alembics)
    try:
        async with engine.begin() as sync:
            await sync.run_sync(metadata.create_all)
    finally:
        await engine.dispose()
    with pytest.raises(OutboxTableError, match="open the outbox with migrate=False"):
        await PostgresOutbox.connect(postgres_url, **empty)
    outbox = await PostgresOutbox.connect(postgres_url, migrate=False, **empty)
    assert await outbox.backlog() == 0
    await outbox.close()


async def test_a_schema_newer_than_the_library_is_refused(postgres_url: str):
    schema = await create_schema(postgres_url)
    settings = {"server_settings": {"search_path": schema}}
    (await PostgresOutbox.connect(postgres_url, **settings)).pool.terminate()
    conn = await asyncpg.connect(postgres_url, **settings)
    try:
        await conn.execute(
            f"INSERT INTO {SCHEMA_VERSION_TABLE} VALUES (99, 'from the future', 'now')"
        )
    finally:
        await conn.close()
    with pytest.raises(OutboxTableError, match="schema version 99, newer than"):
        await PostgresOutbox.connect(postgres_url, **settings)


async def test_a_url_that_is_not_postgresql_is_refused_without_its_password():
    with pytest.raises(ValueError, match=r"not a PostgreSQL URL") as caught:
        await PostgresOutbox.connect("mysql://app:secret@db/orders")
    assert "secret" not in str(caught.value)


async def test_the_sqlite_outbox_lives_in_a_message_store_file_and_opens_twice(tmp_path: Path):
    store = await open_store(f"sqlite:///{tmp_path / 'cqrs.db'}")
    try:
        first = await SQLiteOutbox.open(store)
        second = await SQLiteOutbox.open(store.url)
        assert await first.backlog() == await second.backlog() == 0
        await first.close()
        await second.close()
    finally:
        await store.close()
    (tmp_path / "other.db").write_bytes(b"")
    with pytest.raises(OutboxTableError, match="is not a message store"):
        await SQLiteOutbox.open(f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(ValueError, match="not an SQLite store URL"):
        await SQLiteOutbox.open("postgresql://db/x")
