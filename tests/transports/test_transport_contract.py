"""What every transport does, run on the memory transport and on Redis Streams.

Each test runs once per transport (the ``make_transport`` fixture), so the in-memory
transport that users test with behaves as the real broker does.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from transport_testing import TransportFactory

from python_cqrs_core.transports import DeadLetter, Delivery, Transport, TransportError

HEADERS = {
    "cqrs-message-id": "7d0c1c36-5a0e-4d5e-9d8e-1b2f0f6b6a11",
    "cqrs-requested-by": "Jos%C3%A9",
    "x-odd": "José ✓ \t tabs and ünïcode",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
}


async def publish(transport: Transport, n: int, destination: str = "orders") -> list[str]:
    return [
        await transport.publish(destination, {**HEADERS, "n": str(i)}, b'{"n":%d}' % i)
        for i in range(n)
    ]


def numbers(deliveries: list[Delivery]) -> list[int]:
    return [int(d.headers["n"]) for d in deliveries]


async def receive_all(
    transport: Transport, group: str, consumer: str, *, expected: int, timeout: float = 5.0
) -> list[Delivery]:
    received: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(received) < expected and time.monotonic() < deadline:
        received += await transport.receive("orders", group, consumer, count=50, wait=0.2)
    return received


async def test_headers_and_body_come_back_exactly_as_published(make_transport: TransportFactory):
    transport = make_transport()
    await transport.ensure_group("orders", "billing")
    body = bytes(range(256)) + b"\x00\xff{not json"
    await transport.publish("orders", HEADERS, body)
    await transport.publish("orders", {"only": "x"}, b"")
    first, second = await receive_all(transport, "billing", "b-1", expected=2)
    assert dict(first.headers) == HEADERS
    assert first.body == body
    assert (dict(second.headers), second.body) == ({"only": "x"}, b"")
    assert first.transport == transport.name
    assert (first.destination, first.group, first.attempt) == ("orders", "billing", 1)
    assert first.received_at is not None and first.received_at.tzinfo is not None


async def test_every_group_gets_every_message_and_the_consumers_of_a_group_share_them(
    make_transport: TransportFactory,
):
    transport = make_transport()
    await transport.ensure_group("orders", "billing")
    await transport.ensure_group("orders", "shipping")
    await publish(transport, 6)
    billing_1 = await transport.receive("orders", "billing", "b-1", count=4, wait=1)
    billing_2 = await transport.receive("orders", "billing", "b-2", count=10, wait=1)
    shipping = await receive_all(transport, "shipping", "s-1", expected=6)
    assert numbers(billing_1) == [0, 1, 2, 3]
    assert numbers(billing_2) == [4, 5]
    assert numbers(shipping) == [0, 1, 2, 3, 4, 5]


async def test_a_new_group_starts_with_the_messages_published_after_it(
    make_transport: TransportFactory,
):
    transport = make_transport()
    await publish(transport, 2)
    await transport.ensure_group("orders", "late")
    await transport.ensure_group("orders", "late")  # idempotent
    await transport.publish("orders", {"n": "9"}, b"{}")
    assert numbers(await receive_all(transport, "late", "l-1", expected=1)) == [9]


async def test_receive_waits_for_the_next_publish(make_transport: TransportFactory):
    transport = make_transport()
    await transport.ensure_group("orders", "billing")
    started = time.monotonic()
    assert await transport.receive("orders", "billing", "b-1", wait=0.1) == []
    assert time.monotonic() - started >= 0.09

    async def publish_soon() -> None:
        await asyncio.sleep(0.2)
        await transport.publish("orders", {"n": "1"}, b"{}")

    publisher = asyncio.create_task(publish_soon())
    started = time.monotonic()
    received = await transport.receive("orders", "billing", "b-1", wait=3)
    await publisher
    assert numbers(received) == [1]
    assert time.monotonic() - started < 1.5


async def test_an_acknowledged_delivery_is_not_delivered_again(make_transport: TransportFactory):
    transport = make_transport(claim_idle=0.2)
    await transport.ensure_group("orders", "billing")
    await publish(transport, 1)
    [delivery] = await receive_all(transport, "billing", "b-1", expected=1)
    await transport.ack(delivery)
    await transport.ack(delivery)  # harmless
    await asyncio.sleep(0.3)
    assert await transport.receive("orders", "billing", "b-2", wait=0.3) == []
    assert await transport.lag("orders", "billing") == 0


async def test_a_delivery_left_pending_by_a_dead_consumer_goes_to_another_after_the_idle_time(
    make_transport: TransportFactory,
):
    transport = make_transport(claim_idle=0.6)
    await transport.ensure_group("orders", "billing")
    await publish(transport, 1)
    [first] = await receive_all(transport, "billing", "dies", expected=1)
    # too early: another consumer does not get it
    assert await transport.receive("orders", "billing", "survivor", wait=0.05) == []
    await asyncio.sleep(0.65)
    [again] = await receive_all(transport, "billing", "survivor", expected=1)
    assert again.attempt == 2
    assert (dict(again.headers), again.body) == (dict(first.headers), first.body)
    await transport.ack(again)
    await asyncio.sleep(0.65)
    assert await transport.receive("orders", "billing", "third", wait=0.2) == []


async def test_retry_delivers_the_message_again_after_the_delay_to_its_group_only(
    make_transport: TransportFactory,
):
    transport = make_transport()
    await transport.ensure_group("orders", "billing")
    await transport.ensure_group("orders", "shipping")
    await publish(transport, 1)
    [delivery] = await receive_all(transport, "billing", "b-1", expected=1)
    [shipped] = await receive_all(transport, "shipping", "s-1", expected=1)
    await transport.ack(shipped)
    retried_at = time.monotonic()
    await transport.retry(delivery, delay=0.4, reason="database down")
    assert await transport.receive("orders", "billing", "b-1", wait=0.1) == []
    [again] = await receive_all(transport, "billing", "b-2", expected=1)
    assert time.monotonic() - retried_at >= 0.35
    assert again.attempt == 2
    assert (dict(again.headers), again.body) == (dict(delivery.headers), delivery.body)
    assert await transport.receive("orders", "shipping", "s-1", wait=0.2) == []
    await transport.retry(again, delay=0, reason="still down")
    [third] = await receive_all(transport, "billing", "b-1", expected=1)
    assert third.attempt == 3
    await transport.ack(third)
    assert await transport.lag("orders", "billing") == 0


async def test_a_retried_delivery_left_pending_is_claimed_with_its_attempt_count(
    make_transport: TransportFactory,
):
    transport = make_transport(claim_idle=0.3)
    await transport.ensure_group("orders", "billing")
    await publish(transport, 1)
    [delivery] = await receive_all(transport, "billing", "b-1", expected=1)
    await transport.retry(delivery, delay=0, reason="x")
    [second] = await receive_all(transport, "billing", "dies", expected=1)
    assert second.attempt == 2
    await asyncio.sleep(0.35)
    [third] = await receive_all(transport, "billing", "survivor", expected=1)
    assert third.attempt == 3
    assert third.body == delivery.body


async def test_settling_a_delivery_twice_does_not_duplicate_it(make_transport: TransportFactory):
    transport = make_transport()
    await transport.ensure_group("orders", "billing")
    await publish(transport, 1)
    [delivery] = await receive_all(transport, "billing", "b-1", expected=1)
    await transport.ack(delivery)
    await transport.retry(delivery, delay=0, reason="late")
    await transport.dead_letter(delivery, reason="late")
    assert await transport.receive("orders", "billing", "b-1", wait=0.3) == []
    assert await transport.dead_letters("orders") == []


async def test_a_dead_letter_keeps_message_reason_and_attempts_and_replays_to_its_group(
    make_transport: TransportFactory,
):
    transport = make_transport()
    await transport.ensure_group("orders", "billing")
    await transport.ensure_group("orders", "shipping")
    await publish(transport, 3)
    deliveries = await receive_all(transport, "billing", "b-1", expected=3)
    shipped = await receive_all(transport, "shipping", "s-1", expected=3)
    for delivery in shipped:
        await transport.ack(delivery)
    await transport.ack(deliveries[0])
    await transport.dead_letter(deliveries[1], reason="poisoned\nforged log line")
    await transport.dead_letter(deliveries[2], reason="no handler")

    letters = await transport.dead_letters("orders")
    assert [int(letter.headers["n"]) for letter in letters] == [1, 2]
    first = letters[0]
    assert isinstance(first, DeadLetter)
    assert (first.destination, first.group, first.attempts) == ("orders", "billing", 1)
    assert first.reason == "poisoned?forged log line"
    assert first.body == deliveries[1].body
    assert dict(first.headers) == dict(deliveries[1].headers)
    assert first.original_delivery_id == deliveries[1].delivery_id
    assert first.dead_lettered_at.tzinfo is not None
    assert await transport.dead_letters("orders", after=first.dead_letter_id) == letters[1:]
    assert await transport.dead_letters("orders", limit=1) == letters[:1]
    assert await transport.lag("orders", "billing") == 0

    await transport.replay(first)
    [replayed] = await receive_all(transport, "billing", "b-2", expected=1)
    assert replayed.attempt == 1
    assert (dict(replayed.headers), replayed.body) == (dict(first.headers), first.body)
    assert await transport.receive("orders", "shipping", "s-1", wait=0.2) == []
    assert [letter.dead_letter_id for letter in await transport.dead_letters("orders")] == [
        letters[1].dead_letter_id
    ]
    with pytest.raises(LookupError, match="replayed already"):
        await transport.replay(first)


async def test_lag_counts_unread_pending_and_retried_messages(make_transport: TransportFactory):
    transport = make_transport()
    await transport.ensure_group("orders", "billing")
    await publish(transport, 5)
    assert await transport.lag("orders", "billing") == 5
    deliveries = await transport.receive("orders", "billing", "b-1", count=3, wait=1)
    assert len(deliveries) == 3
    assert await transport.lag("orders", "billing") == 5  # 3 pending + 2 unread
    await transport.ack(deliveries[0])
    await transport.retry(deliveries[1], delay=60, reason="later")
    assert await transport.lag("orders", "billing") == 4  # 1 pending, 1 retry, 2 unread
    await transport.dead_letter(deliveries[2], reason="gone")
    assert await transport.lag("orders", "billing") == 3


async def test_receiving_without_a_group_is_an_error(make_transport: TransportFactory):
    transport = make_transport()
    await transport.publish("orders", {"n": "1"}, b"{}")
    with pytest.raises(TransportError, match="ensure_group"):
        await transport.receive("orders", "nobody", "n-1", wait=0)


@pytest.mark.parametrize("bad", ["", "has space", "line\nbreak", "x" * 300])
async def test_names_are_checked_before_they_reach_the_broker(
    make_transport: TransportFactory, bad: str
):
    transport = make_transport()
    with pytest.raises(ValueError, match="destination"):
        await transport.publish(bad, {}, b"")
    with pytest.raises(ValueError, match="group"):
        await transport.ensure_group("orders", bad)
    await transport.ensure_group("orders", "billing")
    with pytest.raises(ValueError, match="consumer"):
        await transport.receive("orders", "billing", bad, wait=0)


async def test_headers_must_be_text(make_transport: TransportFactory):
    transport = make_transport()
    with pytest.raises(TypeError, match="header 'n' must be a string"):
        await transport.publish("orders", {"n": 1}, b"")  # type: ignore[dict-item]


async def test_close_is_idempotent_and_a_closed_transport_refuses_work(
    make_transport: TransportFactory,
):
    transport = make_transport()
    await transport.close()
    await transport.close()
    with pytest.raises(TransportError, match="closed"):
        await transport.publish("orders", {}, b"")
