"""The relay: at least once, in order per correlation id, several relays side by side,
retries with backoff, failures reported and kept, on each backend."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path

import pytest
from outbox_testing import Backend, RecordingTransport, SQLiteBackend, StockReserved

from python_cqrs_core.names import (
    EVENT_OUTBOX_FAILED,
    EVENT_OUTBOX_PUBLISHED,
    EVENT_OUTBOX_RETRIED,
    WIRE_MESSAGE_ID,
)
from python_cqrs_core.outbox import FAILED, OutboxEvent, OutboxRelay, OutboxStorage, SQLiteOutbox
from python_cqrs_core.outbox.postgres import PostgresOutbox
from python_cqrs_core.transports import Delivery
from service_testing import eventually


async def write(backend: Backend, correlation: str, order_id: int) -> None:
    """One committed transaction publishing one routed event of ``correlation``."""
    async with backend.transaction():
        await backend.bus.publish(StockReserved(order_id=order_id, correlation_id=correlation))


async def second_storage(backend: Backend) -> OutboxStorage:
    """The same outbox, opened as another relay process would (its own connections)."""
    if isinstance(backend.storage, SQLiteOutbox):
        return await SQLiteOutbox.open(backend.storage.url)
    assert isinstance(backend.storage, PostgresOutbox)
    return await PostgresOutbox.connect(backend.storage.pool, migrate=False)


async def test_two_relays_running_at_once_publish_every_entry_once_in_order_per_correlation(
    backend: Backend,
):
    correlations = [f"op-{n}" for n in range(12)]
    for order_id in range(8):  # interleaved: each correlation's entries are far apart
        for correlation in correlations:
            await write(backend, correlation, order_id)

    class SlowTransport(RecordingTransport):
        async def publish(self, destination, headers, body):  # type: ignore[no-untyped-def]
            await asyncio.sleep(random.uniform(0, 0.002))  # let the relays interleave
            return await super().publish(destination, headers, body)

    transport = SlowTransport()
    other = await second_storage(backend)
    relays = [
        OutboxRelay(storage, transport, batch_size=3, run_limit=2, poll_interval=0.01)
        for storage in (backend.storage, other)
    ]
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    try:
        await eventually(lambda: len(transport.published) >= 96, what="96 entries published")
        await asyncio.sleep(0.1)  # time for a duplicate to show up, if any
    finally:
        for relay in relays:
            relay.stop()
        await asyncio.gather(*tasks)
        await other.close()

    assert all(relay.published > 0 for relay in relays)  # both relays took part
    ids = transport.ids()
    assert len(ids) == len(set(ids)) == 96  # no duplicate in the normal case
    by_correlation: dict[str, list[int]] = defaultdict(list)
    for published in transport.published:
        event = published.decode()
        by_correlation[event.correlation_id].append(event.order_id)
    assert by_correlation == {correlation: list(range(8)) for correlation in correlations}
    assert await backend.storage.backlog() == 0


async def test_a_failing_publish_is_retried_after_a_backoff_then_failed_reported_and_kept(
    backend: Backend, transport: RecordingTransport
):
    await write(backend, "op-a", 1)
    await write(backend, "op-a", 2)  # behind 1: waits for it
    await write(backend, "op-b", 3)
    events: list[OutboxEvent] = []
    relay = OutboxRelay(
        backend.storage, transport, max_attempts=2, retry_initial=0.3, retry_max=0.3
    )
    relay.add_listener(events.append)

    transport.down = True
    assert await relay.run_once() == 0
    # The first failure stops the round: op-b's head was released untried.
    assert [(e.name, e.correlation_id, e.attempt) for e in events] == [
        (EVENT_OUTBOX_RETRIED, "op-a", 1)
    ]
    assert "broker is down" in (events[0].reason or "")
    assert await relay.run_once() == 0  # op-a is not due before its backoff; op-b is
    assert [(e.correlation_id, e.attempt) for e in events] == [("op-a", 1), ("op-b", 1)]
    await asyncio.sleep(0.35)
    assert await relay.run_once() == 0
    assert (events[-1].name, events[-1].correlation_id) == (EVENT_OUTBOX_FAILED, "op-a")
    assert relay.failed == 1 and relay.retried == 2
    [failed] = await backend.storage.failed_entries()
    assert failed.status == FAILED and failed.attempts == 2
    assert failed.last_error is not None and "broker is down" in failed.last_error
    assert await backend.storage.backlog() == 2  # kept, never dropped

    transport.down = False
    await asyncio.sleep(0.35)
    while await relay.run_once():
        pass
    # The failed entry holds its correlation back; the other correlation went out.
    assert [p.decode().order_id for p in transport.published] == [3]

    assert await backend.storage.retry_failed() == 1
    while await relay.run_once():
        pass
    assert [p.decode().order_id for p in transport.published] == [3, 1, 2]
    assert await backend.storage.backlog() == 0
    published = [e for e in events if e.name == EVENT_OUTBOX_PUBLISHED]
    assert [(e.correlation_id, e.destination) for e in published][-1] == (
        "op-a",
        "inventory.events",
    )


async def test_a_relay_that_died_holding_claims_is_replaced_once_its_lease_runs_out(
    backend: Backend, transport: RecordingTransport
):
    await write(backend, "op-a", 1)
    dead = await backend.storage.claim("dead-relay", limit=10, run_limit=10, lease=0.3)
    assert [entry.position for entry in dead] != []
    relay = OutboxRelay(backend.storage, transport)
    assert await relay.run_once() == 0  # claimed by a live lease
    await asyncio.sleep(0.35)
    assert await relay.run_once() == 1
    assert await backend.storage.mark_delivered("dead-relay", [dead[0].position]) == 0


@pytest.mark.parametrize("backend_name", ["sqlite"], indirect=True)
async def test_relay_counts_and_events_tell_what_it_published(
    backend: Backend, transport: RecordingTransport
):
    await write(backend, "op-a", 1)
    events: list[OutboxEvent] = []
    relay = OutboxRelay(backend.storage, transport)
    relay.add_listener(events.append)
    assert await relay.backlog() == 1
    assert await relay.run_once() == 1
    assert relay.published == 1 and await relay.backlog() == 0
    [event] = events
    assert event.name == EVENT_OUTBOX_PUBLISHED and event.attempt == 1
    assert event.message_id == transport.published[0].message_id
    assert event.correlation_id == "op-a" and event.causation_id is None


def test_relay_settings_are_checked():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        OutboxRelay(None, RecordingTransport(), batch_size=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lease must be a positive number of seconds"):
        OutboxRelay(None, RecordingTransport(), lease=-1)  # type: ignore[arg-type]


async def test_an_inbox_mark_of_a_delivery_never_dispatched_is_never_written(tmp_path: Path):
    backend = await SQLiteBackend.open(tmp_path / "cqrs.db")
    try:
        outbox = backend.storage
        assert isinstance(outbox, SQLiteOutbox)
        message_id = "00000000-0000-4000-8000-000000000002"
        headers = {WIRE_MESSAGE_ID: message_id}
        delivery = Delivery("memory", "orders", "billing", "1-0", headers, b"")
        async with outbox.unit_of_work(delivery) as transaction:
            assert await transaction.mark_handled("billing", message_id)
        # The block ended before the message was dispatched: its mark went nowhere.
        assert not await outbox.begin_chain(message_id).handled("billing", message_id)
    finally:
        await backend.close()


@pytest.mark.parametrize("backend_name", ["sqlite"], indirect=True)
async def test_a_relay_survives_its_database_failing_and_stops_when_asked(
    backend: Backend, transport: RecordingTransport, caplog: pytest.LogCaptureFixture
):
    await write(backend, "op-a", 1)
    storage = backend.storage
    failures = [ConnectionError("the database went away")]
    real_claim = storage.claim

    async def claim(owner: str, **options: object) -> list:  # type: ignore[type-arg]
        if failures:
            raise failures.pop()
        return await real_claim(owner, **options)  # type: ignore[arg-type]

    storage.claim = claim  # type: ignore[method-assign]
    relay = OutboxRelay(storage, transport, retry_initial=0.01, poll_interval=0.01)
    running = asyncio.create_task(relay.run())
    await eventually(lambda: relay.published == 1, what="the entry published after the failure")
    relay.stop()
    await asyncio.wait_for(running, 5)
    assert "a round failed; retrying" in caplog.text

    stopped_first = OutboxRelay(storage, transport)
    stopped_first.stop()
    await asyncio.wait_for(stopped_first.run(), 1)  # a stop before run() is not lost
