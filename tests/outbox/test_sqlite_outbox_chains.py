"""The SQLite outbox commits through the recorder's chains: the schema without its old
staging tables and triggers, and what an outbox opened without the recorder may do."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from python_cqrs_core.names import WIRE_MESSAGE_ID
from python_cqrs_core.outbox import SQLiteOutbox
from python_cqrs_core.outbox.schema import (
    SCHEMA_VERSION_TABLE,
    SQLITE_MIGRATIONS,
    VERSION_TABLE_SQL,
)
from python_cqrs_core.store import MessageRecorder, open_store
from python_cqrs_core.transports import Delivery


def objects(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


def create_version_1(path: Path) -> None:
    """The outbox tables as the first SQLite migration made them, staging included."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(VERSION_TABLE_SQL)
        for statement in SQLITE_MIGRATIONS[0].statements:
            conn.execute(statement)
        conn.execute(
            f"INSERT INTO {SCHEMA_VERSION_TABLE} VALUES (1, 'v1', ?)",
            (datetime.now(UTC).isoformat(),),
        )
    finally:
        conn.close()


async def test_opening_a_version_1_outbox_drops_its_staging_tables_and_triggers(tmp_path: Path):
    path = tmp_path / "cqrs.db"
    store = await open_store(f"sqlite:///{path}")
    create_version_1(path)
    assert {"cqrs_outbox_staged", "cqrs_outbox_commit_with_chain"} <= objects(path)
    outbox = await SQLiteOutbox.open(store)
    try:
        found = objects(path)
        assert (
            not {
                "cqrs_outbox_staged",
                "cqrs_inbox_staged",
                "cqrs_outbox_commit_with_chain",
                "cqrs_outbox_discard_with_chain",
            }
            & found
        )
        assert {"cqrs_outbox", "cqrs_inbox", "cqrs_outbox_message_id"} <= found
        conn = sqlite3.connect(path)
        versions = [v for (v,) in conn.execute(f"SELECT version FROM {SCHEMA_VERSION_TABLE}")]
        conn.close()
        assert versions == [1, 2]
    finally:
        await outbox.close()
        await store.close()


async def test_an_outbox_opened_without_the_recorder_relays_but_writes_nothing(tmp_path: Path):
    store = await open_store(f"sqlite:///{tmp_path / 'cqrs.db'}")
    outbox = await SQLiteOutbox.open(store.url)
    message_id = "00000000-0000-4000-8000-000000000009"
    delivery = Delivery("memory", "orders", "billing", "1-0", {WIRE_MESSAGE_ID: message_id}, b"")
    try:
        assert not outbox.records_queries
        assert await outbox.backlog() == 0
        with pytest.raises(RuntimeError, match=r"SQLiteOutbox.open\(recorder\)"):
            outbox.begin_chain(message_id)
        with pytest.raises(RuntimeError, match="cannot mark a consumer's inbox"):
            async with outbox.unit_of_work(delivery):
                pass
    finally:
        await outbox.close()
        await store.close()


async def test_an_outbox_follows_its_recorder_recording_queries(tmp_path: Path):
    store = await open_store(f"sqlite:///{tmp_path / 'cqrs.db'}")
    recorder = MessageRecorder(store, record_queries=True)
    outbox = await SQLiteOutbox.open(recorder)
    try:
        assert outbox.records_queries and outbox.recorder is recorder
    finally:
        await outbox.close()
        await recorder.close()
        await store.close()
