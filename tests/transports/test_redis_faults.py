"""Faults with real processes and a real broker: a consumer killed with SIGKILL in the
middle of 10,000 events, and Redis itself going away for a few seconds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from consumer_process import is_poisoned
from transport_testing import OrderPlaced, make_codec

from python_cqrs_core import Mediator
from python_cqrs_core.transports import Consumer, RedisInbox, TransportError
from python_cqrs_core.transports.redis import RedisTransport
from service_testing import PrivateRedis, eventually

CODEC = make_codec()
PROCESS = Path(__file__).resolve().parent / "consumer_process.py"
EVENTS = 10_000

pytestmark = pytest.mark.slow


def start_consumer(url: str, prefix: str, name: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(PROCESS), url, prefix, name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


async def publish_events(transport: RedisTransport, count: int) -> dict[str, int]:
    """Publish ``count`` events; returns order id -> message id."""
    ids: dict[str, int] = {}
    for start in range(0, count, 500):
        batch = []
        for order_id in range(start, min(start + 500, count)):
            event = OrderPlaced(order_id=order_id, correlation_id=f"op-{order_id}")
            ids[str(event.request_id)] = order_id
            batch.append(CODEC.encode(event, trace_context={}))
        await asyncio.gather(*(transport.publish("orders", h, b) for h, b in batch))
    return ids


async def test_a_consumer_killed_mid_stream_loses_nothing_and_handles_everything_once(
    make_redis_transport: Callable[..., RedisTransport],
    redis_client: aioredis.Redis,
    redis_url: str,
    prefix: str,
):
    transport = make_redis_transport()
    await transport.ensure_group("orders", "billing")
    published = await publish_events(transport, EVENTS)
    effects = f"{prefix}effects"
    poisoned = {order_id for order_id in range(EVENTS) if is_poisoned(order_id)}
    expected = {str(order_id) for order_id in range(EVENTS)} - {str(p) for p in poisoned}

    first = start_consumer(redis_url, prefix, "first")
    try:
        await eventually(
            lambda: _more_than(redis_client, effects, 3000), timeout=30, what="3000 handled"
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
    handled_at_kill = await redis_client.hlen(effects)
    assert handled_at_kill < len(expected), "the kill came too late to test anything"

    second = start_consumer(redis_url, prefix, "second")
    try:

        async def done() -> bool:
            letters = await transport.dead_letters("orders", limit=1000)
            return await redis_client.hlen(effects) == len(expected) and len(letters) == len(
                poisoned
            )

        await eventually(done, timeout=60, interval=0.2, what="every event handled")
        await eventually(
            lambda: _lag_is_zero(transport), timeout=10, what="every delivery acknowledged"
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=15) == 0  # a graceful stop

    counts = {k.decode(): int(v) for k, v in (await redis_client.hgetall(effects)).items()}
    assert set(counts) == expected  # none lost, none poisoned handled
    assert set(counts.values()) == {1}  # each exactly once, across the crash
    letters = await transport.dead_letters("orders", limit=1000)
    dead = sorted(published[letter.headers["cqrs-message-id"]] for letter in letters)
    assert dead == sorted(poisoned)  # the dead-letter stream holds the poisoned ones only
    for letter in letters:  # out of attempts; a poisoned one in flight at the kill may
        # have been delivered a fourth time to the survivor, which gives up at once
        assert letter.reason.startswith(
            ("failed 3 times; last error: ValueError", "delivered 4 times without")
        ), letter.reason


async def _more_than(client: aioredis.Redis, key: str, count: int) -> bool:
    return int(await client.hlen(key)) > count


async def _lag_is_zero(transport: RedisTransport) -> bool:
    return await transport.lag("orders", "billing") == 0


async def test_the_consumer_rides_out_redis_going_away_and_delivers_everything(
    private_redis: PrivateRedis,
):
    transport = RedisTransport.from_url(
        private_redis.url, claim_idle=1.0, poll_interval=0.05, socket_connect_timeout=0.5
    )
    handled: list[int] = []
    bus = Mediator()

    async def on_placed(event: OrderPlaced) -> None:
        handled.append(event.order_id)

    bus.subscribe(OrderPlaced, on_placed)
    consumer = Consumer(
        bus, transport, CODEC, "orders", "billing", inbox=RedisInbox(transport), wait=0.2
    )
    await transport.ensure_group("orders", "billing")
    task = consumer.start()
    refused = 0

    async def publish_all() -> None:
        nonlocal refused
        for order_id in range(300):
            headers, body = CODEC.encode(OrderPlaced(order_id=order_id), trace_context={})
            while True:  # at least once, as an outbox relay publishes
                try:
                    await transport.publish("orders", headers, body)
                    break
                except TransportError:
                    refused += 1
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.01)

    publisher = asyncio.create_task(publish_all())
    await eventually(lambda: len(handled) >= 50, timeout=10)
    private_redis.stop()
    stopped_at = time.monotonic()
    await asyncio.sleep(3)
    assert not task.done()
    private_redis.start()
    await asyncio.wait_for(publisher, 30)
    await eventually(lambda: set(handled) == set(range(300)), timeout=30, what="all delivered")
    assert refused > 0, "the broker was never down while publishing"
    assert time.monotonic() - stopped_at >= 3
    assert not task.done()
    assert await consumer.stop(grace=5)
    await eventually(lambda: _lag_is_zero(transport), timeout=10)
    await transport.close()


def test_the_consumer_process_helper_is_not_collected_as_tests():
    assert os.path.basename(PROCESS) == "consumer_process.py"
