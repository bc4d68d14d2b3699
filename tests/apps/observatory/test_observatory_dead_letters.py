"""Dead letters: with a transport configured, the failures page and ``/api/dead-letters``
show the messages its consumer groups gave up on, with their reasons, linked to their
operations; on the in-memory transport and on real Redis Streams."""

from __future__ import annotations

import pytest
from observatory_testing import PlaceOrder, running

from python_cqrs_core import correlation_scope
from python_cqrs_core.apps.observatory import create_app
from python_cqrs_core.apps.observatory.app import open_transport
from python_cqrs_core.codec import EnvelopeCodec
from python_cqrs_core.registry import MessageRegistry
from python_cqrs_core.store import MemoryStore
from python_cqrs_core.transports import MemoryTransport, Transport
from service_testing import REDIS_URL, new_prefix, redis_keyspace

REASON = "<b>poisoned</b>: handler raised ValueError after 5 attempts"


async def dead_letter_one(transport: Transport, destination: str) -> PlaceOrder:
    """Publish an order to ``destination`` and dead-letter it, as a consumer that gave
    up would."""
    with correlation_scope("order-77", requested_by="user:ada"):
        order = PlaceOrder(order_id=77, email="ada@example.com")
    headers, body = EnvelopeCodec(MessageRegistry([PlaceOrder])).encode(order)
    await transport.ensure_group(destination, "billing")
    await transport.publish(destination, headers, body)
    [delivery] = await transport.receive(destination, "billing", "billing-1", wait=1)
    await transport.dead_letter(delivery, reason=REASON)
    return order


async def check_shown(client, order: PlaceOrder, destination: str) -> None:
    found = (await client.get("/api/dead-letters")).json()
    assert found["destinations"] == [destination] and found["error"] is None
    [letter] = found["dead_letters"]
    assert letter["reason"] == REASON and letter["group"] == "billing"
    assert letter["message_id"] == str(order.request_id)
    assert letter["message_type"] == "obs.PlaceOrder"
    assert letter["links"] == {
        "message": f"/messages/{order.request_id}",
        "operation": "/timeline?correlation=order-77",
    }
    assert "ada@example.com" not in str(found)  # the body is not shown
    html = (await client.get("/failures")).text
    assert "&lt;b&gt;poisoned&lt;/b&gt;: handler raised ValueError after 5 attempts" in html
    assert "<b>poisoned" not in html
    metrics = (await client.get("/metrics")).text
    assert f'cqrs_observatory_dead_letters{{destination="{destination}"}} 1' in metrics


async def test_dead_letters_of_the_memory_transport_are_shown():
    transport = MemoryTransport()
    order = await dead_letter_one(transport, "orders.commands")
    app = create_app(
        MemoryStore(), transport=transport, dead_letter_destinations=["orders.commands"]
    )
    async with running(app) as client:
        await check_shown(client, order, "orders.commands")


@pytest.mark.redis
async def test_dead_letters_of_redis_streams_are_shown_from_a_transport_url():
    prefix = new_prefix("obs-test")
    async with redis_keyspace(prefix, needed_by="the Observatory's dead-letter test"):
        transport = open_transport(REDIS_URL, prefix=prefix)
        try:
            order = await dead_letter_one(transport, "orders.commands")
            app = create_app(
                MemoryStore(),
                transport=open_transport(REDIS_URL, prefix=prefix),
                dead_letter_destinations=["orders.commands"],
            )
            async with running(app) as client:
                await check_shown(client, order, "orders.commands")
        finally:
            await transport.close()


async def test_an_unreachable_broker_is_said_not_fatal():
    app = create_app(
        MemoryStore(),
        transport="redis://127.0.0.1:1/0",
        dead_letter_destinations=["orders.commands"],
    )
    async with running(app) as client:
        found = (await client.get("/api/dead-letters")).json()
        assert found["error"] == "cannot read the dead letters (TransportError)"
        assert (await client.get("/failures")).status_code == 200
