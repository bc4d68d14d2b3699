"""MessageRecorder.attach and chain(): SQL of one's own committed in a chain's
transaction (the SQLite store's hook, what the embedded outbox uses)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from python_cqrs_core import BaseCommand, BaseEvent, Mediator
from python_cqrs_core.store import (
    MemoryStore,
    MessageRecorder,
    Statement,
    StoreWriteError,
    open_store,
)
from python_cqrs_core.store.sqlite import SQLiteStore

NOTE = "INSERT INTO notes (text) VALUES (?)"


class Ship(BaseCommand):
    order_id: int


class Shipped(BaseEvent):
    order_id: int


def notes(path: Path) -> list[str]:
    """The notes committed in the store's file, read on a connection of their own."""
    conn = sqlite3.connect(path)
    try:
        return [text for (text,) in conn.execute("SELECT text FROM notes ORDER BY rowid")]
    finally:
        conn.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    path = tmp_path / "cqrs.db"
    opened = await open_store(f"sqlite:///{path}")
    assert isinstance(opened, SQLiteStore)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT NOT NULL UNIQUE)")
    conn.commit()
    conn.close()
    yield opened
    await opened.close()


def path_of(store: SQLiteStore) -> Path:
    return Path(store.path)


async def test_a_statement_attached_in_a_chain_commits_with_its_records(store: SQLiteStore):
    bus = Mediator()
    recorder = MessageRecorder(store).install(bus)
    seen_during: list[list[str]] = []

    @bus.handler(Ship)
    async def ship(command: Ship) -> None:
        await bus.publish(Shipped(order_id=command.order_id))

    @bus.handler(Shipped)
    async def shipped(event: Shipped) -> None:
        await recorder.attach(NOTE, (f"order {event.order_id} shipped",))
        seen_during.append(notes(path_of(store)))

    command = Ship(order_id=7)
    await bus.send(command)
    assert seen_during == [[]]  # not before the chain commits...
    assert notes(path_of(store)) == ["order 7 shipped"]  # ...with it
    assert len(await store.by_correlation(command.request_id)) == 2
    await recorder.close()


async def test_a_failed_root_dispatch_drops_its_statements_and_records_the_failure(
    store: SQLiteStore,
):
    bus = Mediator()
    recorder = MessageRecorder(store).install(bus)

    @bus.handler(Ship)
    async def ship(command: Ship) -> None:
        await recorder.attach(NOTE, ("never",))
        raise LookupError("no such order")

    command = Ship(order_id=8)
    with pytest.raises(LookupError):
        await bus.send(command)
    assert notes(path_of(store)) == []
    (record,) = await store.by_correlation(command.request_id)
    assert record.outcome == "failed" and record.error_type == "LookupError"
    await recorder.close()


async def test_outside_any_chain_a_statement_commits_alone_at_once(store: SQLiteStore):
    recorder = MessageRecorder(store)
    await recorder.attach(NOTE, ("alone",))
    assert notes(path_of(store)) == ["alone"]
    assert await store.last_position() == 0
    await recorder.close()


async def test_a_chain_block_gives_its_statements_to_its_first_root_dispatch(
    store: SQLiteStore,
):
    bus = Mediator()
    recorder = MessageRecorder(store).install(bus)

    @bus.handler(Ship)
    async def ship(command: Ship) -> None:
        if command.order_id < 0:
            raise ValueError("negative order")

    with recorder.chain():
        await recorder.attach(NOTE, ("marked before",))
        assert notes(path_of(store)) == []
        await bus.send(Ship(order_id=1))  # takes the mark
        assert notes(path_of(store)) == ["marked before"]
        await bus.send(Ship(order_id=2))  # a chain of its own, with nothing attached
    with recorder.chain():
        await recorder.attach(NOTE, ("a duplicate: never dispatched",))
    with recorder.chain():
        await recorder.attach(NOTE, ("the handler failed",))
        with pytest.raises(ValueError):
            await bus.send(Ship(order_id=-1))
    assert notes(path_of(store)) == ["marked before"]
    assert len(await store.read()) == 3
    await recorder.close()


async def test_a_statement_that_fails_rejects_its_batch_only(store: SQLiteStore):
    await store.append([], statements=[Statement(NOTE, ("taken",))])
    bus = Mediator()
    recorder = MessageRecorder(store).install(bus)

    @bus.handler(Ship)
    async def ship(command: Ship) -> None:
        await recorder.attach(NOTE, ("taken" if command.order_id == 1 else f"n{command.order_id}",))

    first, second = Ship(order_id=1), Ship(order_id=2)
    outcomes = await asyncio.gather(bus.send(first), bus.send(second), return_exceptions=True)
    assert isinstance(outcomes[0], StoreWriteError)
    assert "attached statement" in str(outcomes[0]) and "UNIQUE" in str(outcomes[0])
    assert outcomes[1] is None
    assert await store.get(first.request_id) is None  # rejected with its statement
    assert await store.get(second.request_id) is not None
    assert notes(path_of(store)) == ["taken", "n2"]
    await recorder.close()


async def test_a_background_recorder_writes_its_statements_when_it_flushes(store: SQLiteStore):
    bus = Mediator()
    recorder = MessageRecorder(store, durability="async").install(bus)

    @bus.handler(Ship)
    async def ship(command: Ship) -> None:
        await recorder.attach(NOTE, (f"async {command.order_id}",))

    await bus.send(Ship(order_id=3))
    await recorder.attach(NOTE, ("async alone",))
    await recorder.flush()
    assert sorted(notes(path_of(store))) == ["async 3", "async alone"]
    await recorder.close()


async def test_attach_needs_a_store_that_runs_statements():
    recorder = MessageRecorder(MemoryStore())
    with pytest.raises(TypeError, match="needs the SQLite store"):
        await recorder.attach(NOTE, ("x",))
    with pytest.raises(ValueError, match="runs no SQL statements"):
        await MemoryStore().append([], statements=[Statement(NOTE, ("x",))])
