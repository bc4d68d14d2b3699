"""Stores written by schema version 1: read as they are when opened read-only, and
migrated to version 2 (new columns read as their defaults, new indexes) otherwise."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from store_testing import create_schema

from python_cqrs_core import BaseCommand
from python_cqrs_core.registry import MessageRegistry
from python_cqrs_core.store import MessageStore, open_store
from python_cqrs_core.store.migrations import (
    LATEST_VERSION,
    POSTGRES_MIGRATIONS,
    SCHEMA_VERSION_TABLE,
    SQLITE_MIGRATIONS,
)

WRITTEN = datetime(2025, 6, 1, 9, 30, tzinfo=UTC)
MESSAGE_ID = "6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c44"


class PlaceOrder(BaseCommand):
    __message_type__ = "PlaceOrder"  # schema 1 recorded bare class names
    order_id: int


def version_1_row() -> tuple[Any, ...]:
    """A record as version 1 of the library wrote it: a bare class name, and a payload
    that also holds the five tracing fields."""
    payload = {
        "order_id": 7,
        "request_id": MESSAGE_ID,
        "correlation_id": "req-old",
        "causation_id": None,
        "requested_by": "user:ada",
        "requested_at": WRITTEN.isoformat(),
    }
    return (
        MESSAGE_ID, "command", "PlaceOrder", "req-old", None, "user:ada", WRITTEN, WRITTEN,
        "failed", "OSError", "disk full", 1.5,
        json.dumps([["PlaceOrderHandler", "failed", 1.2, "OSError", "disk full"]]),
        "{}", json.dumps(payload),
    )  # fmt: skip


INSERT_V1 = (
    "INSERT INTO cqrs_messages (message_id, kind, message_type, correlation_id, "
    "causation_id, requested_by, requested_at, recorded_at, outcome, error_type, "
    "error_message, duration_ms, handlers, headers, payload, opens_correlation) VALUES "
)


async def check_reads_version_1(store: MessageStore) -> None:
    """What a store holding the version 1 row must answer."""
    (record,) = await store.read()
    assert (record.message_type, record.outcome, record.requested_by) == (
        "PlaceOrder",
        "failed",
        "user:ada",
    )
    assert (record.service, record.pii_fields, record.payload_redacted) == (None, (), False)
    assert record.handlers[0].handler == "PlaceOrderHandler"
    message = record.to_message(MessageRegistry([PlaceOrder]))
    assert (str(message.request_id), message.correlation_id, message.order_id) == (
        MESSAGE_ID,
        "req-old",
        7,
    )
    (summary,) = await store.correlations()
    assert (summary.correlation_id, summary.outcome, summary.service) == ("req-old", "failed", None)
    assert await store.correlations(service="shop") == []
    assert await store.read(service="shop") == []
    assert [r.message_id for r in await store.read(requested_by="user:ada")] == [record.message_id]
    assert await store.last_position() == 1


def sqlite_version_1(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(SCHEMA_VERSION_TABLE)
        for statement in SQLITE_MIGRATIONS[0].statements:
            conn.execute(statement)
        conn.execute("INSERT INTO cqrs_schema_version VALUES (1, 'v1', '2025-06-01')")
        row = version_1_row()
        sqlite_row = (*row[:6], row[6].isoformat(), row[7].isoformat(), *row[8:], 1)
        conn.execute(INSERT_V1 + "(" + ", ".join("?" * 16) + ")", sqlite_row)
    finally:
        conn.close()


def sqlite_versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [v for (v,) in conn.execute("SELECT version FROM cqrs_schema_version")]
    finally:
        conn.close()


async def test_a_version_1_sqlite_store_opened_read_only_is_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    sqlite_version_1(path)
    async with await open_store(f"sqlite:///{path}", read_only=True) as store:
        assert store.schema_version == 1  # type: ignore[attr-defined]
        await check_reads_version_1(store)
    assert sqlite_versions(path) == [1]  # not migrated


async def test_opening_a_version_1_sqlite_store_migrates_it_keeping_its_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v1.db"
    sqlite_version_1(path)
    async with await open_store(f"sqlite:///{path}") as store:
        assert store.schema_version == LATEST_VERSION  # type: ignore[attr-defined]
        await check_reads_version_1(store)
    assert sqlite_versions(path) == [1, 2, 3, 4]
    conn = sqlite3.connect(path)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(cqrs_messages)")}
    finally:
        conn.close()
    assert {"service", "pii_fields", "payload_redacted"} <= columns


async def postgres_version_1(url: str) -> str:
    schema = await create_schema(url)
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        await conn.execute(SCHEMA_VERSION_TABLE)
        for statement in POSTGRES_MIGRATIONS[0].statements:
            await conn.execute(statement)
        await conn.execute("INSERT INTO cqrs_schema_version VALUES (1, 'v1', '2025-06-01')")
        placeholders = ", ".join(f"${n}" for n in range(1, 16))
        await conn.execute(
            INSERT_V1.replace("opens_correlation) VALUES ", "opens_correlation) SELECT ")
            + placeholders.replace("$13", "$13::jsonb")
            .replace("$14", "$14::jsonb")
            .replace("$15", "$15::jsonb")
            + ", TRUE",
            *version_1_row(),
        )
    finally:
        await conn.close()
    return schema


async def test_a_version_1_postgres_store_is_read_read_only_then_migrated(
    postgres_url: str,
) -> None:
    schema = await postgres_version_1(postgres_url)
    settings = {"server_settings": {"search_path": schema}}
    async with await open_store(postgres_url, read_only=True, **settings) as reader:
        assert reader.schema_version == 1  # type: ignore[attr-defined]
        await check_reads_version_1(reader)
    async with await open_store(postgres_url, **settings) as store:
        assert store.schema_version == LATEST_VERSION  # type: ignore[attr-defined]
        await check_reads_version_1(store)
    conn = await asyncpg.connect(postgres_url, server_settings={"search_path": schema})
    try:
        versions = [row[0] for row in await conn.fetch("SELECT version FROM cqrs_schema_version")]
    finally:
        await conn.close()
    assert versions == [1, 2, 3, 4]
