"""What only the Redis Streams transport has: its keys and fields, trimming, its URL
handling, raw entries it did not write, a group lost with its stream, the Redis inbox."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from uuid import uuid4

import pytest
import redis.asyncio as aioredis
from transport_testing import OrderPlaced, make_codec

from python_cqrs_core import Mediator
from python_cqrs_core.transports import Consumer, DeliveryEvent, RedisInbox, TransportError
from python_cqrs_core.transports.redis import RedisTransport, mask_url
from service_testing import eventually

MakeRedis = Callable[..., RedisTransport]
CODEC = make_codec()


async def test_a_message_is_one_entry_with_its_body_and_one_field_per_header(
    make_redis_transport: MakeRedis, redis_client: aioredis.Redis, prefix: str
):
    transport = make_redis_transport()
    entry_id = await transport.publish("orders", {"cqrs-message-id": "m-1", "a": "é"}, b"\x00{}")
    keys = transport.keys("orders", "billing")
    assert keys.stream == f"{prefix}orders"
    assert (keys.retry, keys.delayed, keys.dlq) == (
        f"{prefix}orders:retry:billing",
        f"{prefix}orders:delayed:billing",
        f"{prefix}orders:dlq",
    )
    [(stored_id, fields)] = await redis_client.xrange(keys.stream)
    assert stored_id.decode() == entry_id
    assert fields == {b"body": b"\x00{}", b"h:cqrs-message-id": b"m-1", b"h:a": "é".encode()}


async def test_streams_are_trimmed_to_max_length_on_publish(
    make_redis_transport: MakeRedis, redis_client: aioredis.Redis
):
    transport = make_redis_transport(max_length=100)
    for n in range(1000):
        await transport.publish("orders", {"n": str(n)}, b"{}")
    length = await redis_client.xlen(transport.keys("orders").stream)
    assert 100 <= length < 300  # MAXLEN ~: whole macro nodes are dropped


async def test_streams_are_trimmed_by_age_on_publish(
    make_redis_transport: MakeRedis, redis_client: aioredis.Redis
):
    transport = make_redis_transport(max_age=0.2)
    stream = transport.keys("orders").stream
    for n in range(300):
        await redis_client.xadd(stream, {"n": n}, id=f"{1000 + n}-0")  # entries from 1970
    await transport.publish("orders", {"n": "new"}, b"{}")
    assert await redis_client.xlen(stream) < 300


async def test_the_dead_letter_stream_is_bounded_when_asked(make_redis_transport: MakeRedis):
    transport = make_redis_transport(dead_letter_max_length=1)
    await transport.ensure_group("orders", "g")
    for n in range(3):
        await transport.publish("orders", {"n": str(n)}, b"{}")
    for delivery in await transport.receive("orders", "g", "c", count=3, wait=1):
        await transport.dead_letter(delivery, reason="x")
    assert 1 <= len(await transport.dead_letters("orders")) <= 3


def test_the_url_password_is_never_shown():
    assert mask_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert mask_url("rediss://user:s3cret@host/2") == "rediss://user:***@host/2"
    assert mask_url("redis://host:6379") == "redis://host:6379"
    transport = RedisTransport.from_url("redis://app:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in repr(transport)
    with pytest.raises(ValueError, match="not a Redis URL") as raised:
        RedisTransport.from_url("http://app:s3cret@127.0.0.1/")
    assert "s3cret" not in str(raised.value)


async def test_an_unreachable_redis_is_a_transport_error_without_the_password():
    transport = RedisTransport.from_url(
        "redis://app:s3cret@127.0.0.1:1/0", socket_connect_timeout=0.5
    )
    with pytest.raises(TransportError) as raised:
        await transport.publish("orders", {}, b"")
    assert "127.0.0.1" in str(raised.value)
    assert "s3cret" not in str(raised.value)
    await transport.close()


def test_options_and_reserved_names_are_checked():
    with pytest.raises(ValueError, match="not both"):
        RedisTransport.from_url("redis://localhost", max_length=10, max_age=60)
    with pytest.raises(ValueError, match="prefix"):
        RedisTransport.from_url("redis://localhost", prefix="a b")
    transport = RedisTransport.from_url("redis://localhost")
    for reserved in ("orders:dlq", "orders:retry:g", "a:delayed:b"):
        with pytest.raises(ValueError, match="reserved"):
            transport.keys(reserved)


async def test_entries_written_by_someone_else_reach_the_consumer_and_are_dead_lettered(
    make_redis_transport: MakeRedis, redis_client: aioredis.Redis
):
    transport = make_redis_transport()
    events: list[DeliveryEvent] = []
    consumer = Consumer(
        Mediator(), transport, CODEC, "orders", "billing", wait=0.05, listeners=[events.append]
    )
    await transport.ensure_group("orders", "billing")
    keys = transport.keys("orders", "billing")
    await redis_client.xadd(keys.stream, {b"h:cqrs-message-type": b"\xff\xfe", b"body": b"{}"})
    await redis_client.xadd(keys.stream, {b"unrelated": b"field"})
    await redis_client.xadd(keys.retry, {b"retry": b"not json\n{}"})
    while len(events) < 3:
        await consumer.process_batch()
    assert [event.event for event in events] == ["message.dlq"] * 3
    letters = await transport.dead_letters("orders")
    assert len(letters) == 3
    [odd] = [letter for letter in letters if "cqrs-message-type" in letter.headers]
    assert odd.headers["cqrs-message-type"].encode("utf-8", "surrogateescape") == b"\xff\xfe"
    assert sorted(letter.reason.split(":")[1].strip() for letter in letters) == [
        "header cqrs-message-type",
        "header cqrs-message-type",
        "header cqrs-message-type",
    ]
    assert await transport.lag("orders", "billing") == 0


async def test_a_group_lost_with_its_stream_is_created_again_and_nothing_published_after_is_missed(
    make_redis_transport: MakeRedis, redis_client: aioredis.Redis
):
    transport = make_redis_transport()
    handled: list[int] = []
    bus = Mediator()

    async def on_placed(event: OrderPlaced) -> None:
        handled.append(event.order_id)

    bus.subscribe(OrderPlaced, on_placed)
    consumer = Consumer(bus, transport, CODEC, "orders", "billing", wait=0.05)
    task = consumer.start()
    await eventually(lambda: consumer._group_ensured)
    await redis_client.delete(transport.keys("orders").stream)  # as a restart without data
    for n in range(3):
        headers, body = CODEC.encode(OrderPlaced(order_id=n), trace_context={})
        await transport.publish("orders", headers, body)
    await eventually(lambda: handled == [0, 1, 2], what="the messages after the loss")
    assert await consumer.stop(grace=5)
    assert not task.cancelled()


async def test_the_redis_inbox_remembers_ids_per_group_until_they_expire(
    make_redis_transport: MakeRedis, redis_client: aioredis.Redis, prefix: str
):
    transport = make_redis_transport()
    inbox = RedisInbox(transport, ttl=0.5)
    message_id = uuid4()
    assert not await inbox.seen("billing", message_id)
    assert await inbox.mark("billing", message_id) is True
    assert await inbox.mark("billing", message_id) is False
    assert await inbox.seen("billing", message_id)
    assert not await inbox.seen("shipping", message_id)
    key = inbox.key("billing", message_id)
    assert key == f"{prefix}inbox:billing:{message_id}"
    assert 0 < await redis_client.pttl(key) <= 500
    await asyncio.sleep(0.6)
    assert not await inbox.seen("billing", message_id)
    with pytest.raises(ValueError, match="ttl"):
        RedisInbox(transport, ttl=0)


async def test_a_redelivered_message_is_handled_once_with_the_redis_inbox(
    make_redis_transport: MakeRedis,
):
    transport = make_redis_transport()
    handled: list[int] = []
    bus = Mediator()

    async def on_placed(event: OrderPlaced) -> None:
        handled.append(event.order_id)

    bus.subscribe(OrderPlaced, on_placed)
    consumer = Consumer(
        bus, transport, CODEC, "orders", "billing", inbox=RedisInbox(transport), wait=0.05
    )
    await transport.ensure_group("orders", "billing")
    headers, body = CODEC.encode(OrderPlaced(order_id=1), trace_context={})
    for _ in range(3):
        await transport.publish("orders", headers, body)
    for _ in range(3):
        await consumer.process_batch()
    assert handled == [1]
    assert await transport.lag("orders", "billing") == 0


async def test_lag_of_a_missing_group_is_an_error(make_redis_transport: MakeRedis):
    transport = make_redis_transport()
    await transport.ensure_group("orders", "billing")
    with pytest.raises(TransportError, match="no group 'nobody'"):
        await transport.lag("orders", "nobody")
