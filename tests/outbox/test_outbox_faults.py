"""Faults, for real: a relay killed by SIGKILL between publishing and marking, and a
broker down for 10 s while commands are handled (Redis Streams, PostgreSQL)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from outbox_testing import CODEC, AsyncpgBackend, Backend, OrderPlaced, create_schema

from python_cqrs_core.outbox import OutboxRelay, TransactionalInbox
from python_cqrs_core.transports.base import Delivery
from python_cqrs_core.transports.redis import RedisTransport
from service_testing import REDIS_URL, PrivateRedis, eventually, new_prefix, redis_keyspace

RELAY_PROCESS = Path(__file__).with_name("relay_process.py")


@pytest.fixture
async def pg_backend(postgres_url: str) -> AsyncIterator[AsyncpgBackend]:
    backend = await AsyncpgBackend.open(postgres_url, await create_schema(postgres_url))
    yield backend
    await backend.close()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test alone on the machine's Redis, deleted afterwards."""
    prefix = new_prefix("cqrs-outbox-test")
    async with redis_keyspace(prefix, needed_by="the outbox fault tests"):
        yield prefix


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def consume(backend: Backend, inbox: TransactionalInbox, delivery: Delivery) -> bool:
    """The consumer's convention: the inbox mark and the handling in one unit of work."""
    message = CODEC.decode(delivery.headers, delivery.body).message
    async with backend.unit_of_work(delivery):
        if not await inbox.mark(delivery.group, message.request_id):
            return False
        await backend.bus.process(message)
    return True


async def test_a_relay_killed_between_publish_and_mark_publishes_again_and_the_inbox_drops_it(
    pg_backend: AsyncpgBackend, prefix: str, postgres_url: str
):
    transport = RedisTransport.from_url(REDIS_URL, prefix=prefix)
    await transport.ensure_group("orders.events", "inventory")
    handled: list[int] = []

    async def reserve(event: OrderPlaced) -> None:
        handled.append(event.order_id)

    pg_backend.bus.subscribe(OrderPlaced, reserve)
    async with pg_backend.transaction():
        await pg_backend.bus.publish(OrderPlaced(order_id=21))
    schema = await pg_backend.pool.fetchval("SELECT current_schema()")

    relay_process = await asyncio.create_subprocess_exec(
        sys.executable, str(RELAY_PROCESS), postgres_url, schema, REDIS_URL, prefix
    )
    assert await asyncio.wait_for(relay_process.wait(), 60) == -signal.SIGKILL
    assert await transport.client.xlen(transport.keys("orders.events").stream) == 1
    assert await pg_backend.storage.backlog() == 1  # published, but not marked

    relay = OutboxRelay(pg_backend.storage, transport)
    assert await relay.run_once() == 0  # the dead relay's lease still holds
    await asyncio.sleep(1.05)
    assert await relay.run_once() == 1  # published again
    assert await pg_backend.storage.backlog() == 0

    inbox = TransactionalInbox()
    handled.clear()  # the producer's own local delivery of the event
    deliveries = await transport.receive("orders.events", "inventory", "inventory-1", count=10)
    assert len(deliveries) == 2
    assert deliveries[0].headers["cqrs-message-id"] == deliveries[1].headers["cqrs-message-id"]
    outcomes = []
    for delivery in deliveries:
        outcomes.append(await consume(pg_backend, inbox, delivery))
        await transport.ack(delivery)
    assert outcomes == [True, False]  # the duplicate was dropped
    assert handled == [21]
    assert await transport.lag("orders.events", "inventory") == 0
    await transport.close()


@pytest.mark.slow
async def test_with_the_broker_down_for_ten_seconds_the_outbox_holds_every_event_until_it_is_back(
    pg_backend: AsyncpgBackend, private_redis: PrivateRedis
):
    transport = RedisTransport.from_url(private_redis.url, socket_connect_timeout=1.0)
    relay = OutboxRelay(
        pg_backend.storage,
        transport,
        poll_interval=0.05,
        retry_initial=0.2,
        retry_max=1.0,
        max_attempts=1000,
    )
    running = asyncio.create_task(relay.run())
    written: list[str] = []

    async def place(order_id: int) -> None:
        event = OrderPlaced(order_id=order_id)
        async with pg_backend.transaction():
            await pg_backend.bus.publish(event)
        written.append(str(event.request_id))

    async def drained() -> bool:
        return await pg_backend.storage.backlog() == 0

    stream = transport.keys("orders.events").stream
    try:
        for order_id in range(5):
            await place(order_id)
        await eventually(drained, what="the first events delivered")

        private_redis.stop()
        outage_ends = asyncio.get_running_loop().time() + 10
        order_id = 5
        while asyncio.get_running_loop().time() < outage_ends:
            await place(order_id)  # commands keep succeeding: the outbox holds the events
            order_id += 1
            await asyncio.sleep(0.25)
        held = await pg_backend.storage.backlog()
        assert held == len(written) - 5
        assert relay.retried > 0 and relay.failed == 0

        private_redis.start()
        await eventually(drained, timeout=20, what="the backlog drained")
    finally:
        relay.stop()
        await running
    entries = await transport.client.xrange(stream)
    published = [fields[b"h:cqrs-message-id"].decode() for _, fields in entries]
    assert set(published) == set(written)
    assert len(written) >= 40
    await transport.close()
