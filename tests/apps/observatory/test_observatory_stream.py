"""The live stream: server-sent events that follow the store's feed, with chains recorded
by another process, resumed with ``Last-Event-ID`` without losing or repeating an event,
filtered, and served to many viewers from one read of the store."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from observatory_testing import MESSAGES_PER_ORDER, record_orders, running, writer_command

from python_cqrs_core.apps.observatory import create_app
from python_cqrs_core.apps.observatory.feed import FeedFollower, record_events
from python_cqrs_core.apps.observatory.models import RecordModel
from python_cqrs_core.apps.observatory.views import record_view
from python_cqrs_core.store import MemoryStore, MessageRecord, RecordFilter, open_store


class Events:
    """The events of an open stream, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """The next ``count`` events: ``{"id", "event", "data"}`` each."""
        found: list[dict[str, Any]] = []
        current: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line == "":
                    if "data" in current:
                        current["data"] = json.loads(current["data"])
                        found.append(current)
                        if len(found) == count:
                            return found
                    current = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    current[name] = value.removeprefix(" ")
        raise AssertionError(f"the stream ended after {len(found)} of {count} events")


@asynccontextmanager
async def stream(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **params: Any
) -> AsyncIterator[Events]:
    async with client.stream("GET", "/api/stream", params=params, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Events(response)


async def test_chains_recorded_by_another_process_stream_live(client, reader, location):
    async with stream(client) as response:
        start = await reader.last_position()
        process = subprocess.run(
            writer_command(location.url, 4, "--first", "500", options=location.options),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert process.returncode == 0, process.stderr
        received = await response.next(4 * MESSAGES_PER_ORDER)
    assert [int(e["id"]) for e in received] == list(range(start + 1, start + 13))
    assert all(e["event"] == "record" for e in received)
    for event in received:
        record = RecordModel.model_validate(event["data"])
        assert record.position == int(event["id"]) and record.service == "writer"
    assert {e["data"]["correlation_id"] for e in received} == {
        f"order-{n}" for n in range(500, 504)
    }
    assert sum(e["data"]["outcome"] == "failed" for e in received) == 2  # order 503's two


async def test_a_reconnection_resumes_after_the_last_event_without_loss_or_repeat(
    client, reader, writer
):
    start = await reader.last_position()
    async with stream(client, after=str(start)) as response:
        await record_orders(writer, range(200, 204))
        first = await response.next(5)
    last = first[-1]["id"]
    await record_orders(writer, range(204, 208))  # while disconnected
    async with stream(client, headers={"Last-Event-ID": last}, after="0") as response:
        rest = await response.next(8 * MESSAGES_PER_ORDER - 5)
    positions = [int(e["id"]) for e in first + rest]
    stored = [r.position for r in await reader.read(start, limit=1000)]
    assert positions == stored and len(stored) == 8 * MESSAGES_PER_ORDER


async def test_a_stream_sends_only_the_records_its_filters_keep(client, reader, writer):
    start = await reader.last_position()
    async with stream(
        client, after=str(start), outcome="failed", type="obs.OrderPlaced"
    ) as response:
        await record_orders(writer, range(10, 24))  # orders 13 and 23 fail
        received = await response.next(2)
    assert [e["data"]["correlation_id"] for e in received] == ["order-13", "order-23"]
    assert all(e["data"]["message_type"] == "obs.OrderPlaced" for e in received)
    assert received[0]["data"]["links"]["operation"] == (
        "/timeline?correlation=order-13&type=obs.OrderPlaced&outcome=failed"
    )


async def test_a_stream_replays_from_a_position_then_goes_on_live(client, reader, writer):
    async with stream(client, after="30") as response:
        replayed = await response.next(6)
        await record_orders(writer, range(300, 301))
        live = await response.next(MESSAGES_PER_ORDER)
    assert [int(e["id"]) for e in replayed] == list(range(31, 37))
    assert [int(e["id"]) for e in live] == [37, 38, 39]


async def test_a_bad_last_event_id_is_refused(client):
    response = await client.get("/api/stream", headers={"Last-Event-ID": "12; drop"})
    assert response.status_code == 400 and "Last-Event-ID" in response.json()["detail"]


async def test_many_viewers_cost_the_store_one_read_per_interval():
    store = await open_store("memory://")
    reads = 0
    read = store.read

    async def counted(*args: Any, **kwargs: Any) -> list[MessageRecord]:
        nonlocal reads
        reads += 1
        return await read(*args, **kwargs)

    store.read = counted  # type: ignore[method-assign]
    async with running(create_app(store, poll_interval=0.05)) as client:
        async with asyncio.TaskGroup() as group:
            viewers = [group.create_task(_watch(client, MESSAGES_PER_ORDER * 5)) for _ in range(8)]
            await asyncio.sleep(0.3)
            await record_orders(store, range(1, 6))
        before, started = reads, time.perf_counter()
        await asyncio.sleep(0.5)
        polled, elapsed = reads - before, time.perf_counter() - started
    assert all(len(v.result()) == 15 for v in viewers)
    # One read per interval, whatever the number of viewers (eight viewers reading on
    # their own would make it eight times that); measured against the time that really
    # passed, which a loaded machine stretches.
    assert polled <= elapsed / 0.05 + 2


async def _watch(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    async with stream(client) as response:
        return await response.next(count)


# -- the follower and the stream, on their own ----------------------------------------------


async def _collect(source: AsyncIterator[str], count: int) -> list[str]:
    found: list[str] = []
    async with asyncio.timeout(10):
        async for frame in source:
            if frame.startswith("id:"):
                found.append(frame)
                if len(found) == count:
                    return found
    return found


async def test_a_stream_behind_the_followers_memory_catches_up_from_the_store():
    store = MemoryStore()
    await record_orders(store, range(1, 3))  # positions 1..6, before the follower started
    follower = FeedFollower(store, poll_interval=0.01, capacity=4, page=2)
    await follower.start()
    try:
        await record_orders(store, range(3, 7))  # 12 more: memory keeps the newest 4
        while follower.position < 18:
            await asyncio.sleep(0.01)
        assert follower.start_after == 14
        frames = await _collect(record_events(follower, 0, RecordFilter(), record_view), 18)
    finally:
        await follower.close()
    assert [int(f.split("\n")[0][4:]) for f in frames] == list(range(1, 19))


async def test_a_stream_sends_a_keep_alive_when_nothing_happens_and_ends_with_its_follower():
    follower = FeedFollower(MemoryStore(), poll_interval=0.01)
    await follower.start()
    frames = record_events(follower, 0, RecordFilter(), record_view, heartbeat=0.05)
    assert await anext(frames) == "retry: 1000\n\n"
    assert await anext(frames) == ": keep-alive\n\n"
    await follower.close()
    assert [frame async for frame in frames] == []


async def test_the_follower_survives_a_store_that_fails_and_says_so(caplog):
    store = MemoryStore()
    failing = True
    read = store.read

    async def flaky(*args: Any, **kwargs: Any) -> list[MessageRecord]:
        if failing:
            raise ConnectionError("database restarting")
        return await read(*args, **kwargs)

    store.read = flaky  # type: ignore[method-assign]
    follower = FeedFollower(store, poll_interval=0.01)
    await follower.start()
    try:
        await asyncio.sleep(0.1)
        assert follower.error == "cannot read the message store (ConnectionError)"
        assert follower.errors >= 2
        assert sum("cannot read the message store" in r.message for r in caplog.records) == 1
        failing = False
        await record_orders(store, range(1, 2))
        while follower.position < 3:
            await asyncio.sleep(0.01)
        assert follower.error is None
    finally:
        await follower.close()
