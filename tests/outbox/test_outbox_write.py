"""The outbox write: a routed event is delivered if and only if the transaction holding
the application's writes commits, on each of the three backends."""

from __future__ import annotations

import pytest
from outbox_testing import (
    Backend,
    OrderPlaced,
    PlaceOrder,
    RecordingTransport,
)

from python_cqrs_core.outbox import NoOutboxTransactionError, OutboxRelay
from python_cqrs_core.outbox.postgres import connection_transaction, current_connection
from python_cqrs_core.outbox.sqlalchemy import current_session


async def relay_all(backend: Backend, transport: RecordingTransport) -> int:
    relay = OutboxRelay(backend.storage, transport)
    total = 0
    while published := await relay.run_once():
        total += published
    return total


async def test_an_event_routed_in_a_committed_transaction_is_relayed_with_its_ids(
    backend: Backend, transport: RecordingTransport
):
    command = PlaceOrder(order_id=7, correlation_id="req-7")
    async with backend.transaction():
        await backend.bus.send(command)

    assert await backend.orders() == [7]
    assert await backend.storage.backlog() == 1
    assert await relay_all(backend, transport) == 1
    [published] = transport.published
    assert published.destination == "orders.events"
    event = published.decode()
    assert isinstance(event, OrderPlaced) and event.order_id == 7
    assert event.correlation_id == "req-7"
    assert event.causation_id == command.request_id
    assert await backend.storage.backlog() == 0
    assert await relay_all(backend, transport) == 0  # delivered: never published again


async def test_an_event_routed_in_a_rolled_back_transaction_is_never_relayed(
    backend: Backend, transport: RecordingTransport
):
    with pytest.raises(RuntimeError, match="order 8 refused"):
        async with backend.transaction():
            await backend.bus.send(PlaceOrder(order_id=8, fail=True))
    async with backend.transaction():
        await backend.bus.send(PlaceOrder(order_id=9))

    assert await backend.orders() == [9]
    assert await relay_all(backend, transport) == 1
    assert [p.decode().order_id for p in transport.published] == [9]
    assert await backend.storage.backlog() == 0


async def test_unrouted_messages_never_reach_the_outbox(
    backend: Backend, transport: RecordingTransport
):
    async with backend.transaction():
        await backend.bus.send(PlaceOrder(order_id=3))
    await relay_all(backend, transport)
    assert [p.headers["cqrs-message-type"] for p in transport.published] == [
        OrderPlaced.__message_type__
    ]


@pytest.mark.parametrize("backend_name", ["sqlalchemy", "asyncpg"], indirect=True)
async def test_a_routed_event_outside_any_transaction_raises_before_any_handler_runs(
    backend: Backend,
):
    handled: list[OrderPlaced] = []
    backend.bus.subscribe(OrderPlaced, _collect(handled))

    with pytest.raises(NoOutboxTransactionError, match=r"routed to 'orders\.events'"):
        await backend.bus.publish(OrderPlaced(order_id=1))
    assert handled == []
    assert await backend.storage.backlog() == 0


def _collect(into: list[OrderPlaced]):
    async def collect(event: OrderPlaced) -> None:
        into.append(event)

    return collect


@pytest.mark.parametrize("backend_name", ["sqlite"], indirect=True)
async def test_on_the_embedded_store_every_root_dispatch_is_a_transaction_of_its_own(
    backend: Backend, transport: RecordingTransport
):
    await backend.bus.publish(OrderPlaced(order_id=1))  # no transaction opened: a chain
    await backend.bus.send(PlaceOrder(order_id=2))
    with pytest.raises(RuntimeError):
        await backend.bus.send(PlaceOrder(order_id=3, fail=True))

    assert await relay_all(backend, transport) == 2
    assert [p.decode().order_id for p in transport.published] == [1, 2]


@pytest.mark.parametrize("backend_name", ["asyncpg"], indirect=True)
async def test_a_transaction_opened_by_the_application_is_joined_and_committed_by_it(
    backend: Backend, transport: RecordingTransport
):
    pool = backend.pool  # type: ignore[attr-defined]
    async with pool.acquire() as conn:
        outer = conn.transaction()
        await outer.start()
        async with connection_transaction(conn):
            await backend.bus.send(PlaceOrder(order_id=4))
        assert conn.is_in_transaction()  # joined: not committed by the block
        await outer.rollback()
    assert await backend.orders() == []
    assert await relay_all(backend, transport) == 0


@pytest.mark.parametrize("backend_name", ["sqlalchemy", "asyncpg"], indirect=True)
async def test_a_message_dispatched_twice_is_in_the_outbox_once(
    backend: Backend, transport: RecordingTransport
):
    event = OrderPlaced(order_id=5)
    for _ in range(2):
        async with backend.transaction():
            await backend.bus.publish(event)
    assert await relay_all(backend, transport) == 1


async def test_handlers_reach_the_transaction_only_inside_one():
    with pytest.raises(NoOutboxTransactionError, match="session_transaction"):
        current_session()
    with pytest.raises(NoOutboxTransactionError, match="connection_transaction"):
        current_connection()
