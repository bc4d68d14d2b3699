"""The transactional inbox and the consumer's unit of work: a redelivered message is
handled once per group, its mark commits (or rolls back) with the handler's effects and
outbox entries, on each backend.

The consumer here is the shared convention itself, written out::

    async with unit_of_work(delivery):
        if await inbox.mark(group, message_id):
            await bus.process(message)
"""

from __future__ import annotations

from uuid import UUID

import pytest
from outbox_testing import (
    CODEC,
    Backend,
    OrderPlaced,
    Published,
    RecordingTransport,
    StockReserved,
    delivery_of,
)

from python_cqrs_core.outbox import NoOutboxTransactionError, OutboxRelay, TransactionalInbox
from python_cqrs_core.transports.base import Delivery

GROUP = "inventory"


def from_other_service(order_id: int) -> Published:
    """OrderPlaced as another service published it (its own chain, its own store)."""
    headers, body = CODEC.encode(OrderPlaced(order_id=order_id, correlation_id="op-1"))
    return Published("orders.events", headers, body)


async def consume(backend: Backend, inbox: TransactionalInbox, delivery: Delivery) -> bool:
    """Handle one delivery as the consumer does; ``False`` for a duplicate."""
    message = CODEC.decode(delivery.headers, delivery.body).message
    async with backend.unit_of_work(delivery):
        if not await inbox.mark(GROUP, message.request_id):
            return False
        await backend.bus.process(message)
    return True


def reserve_stock(backend: Backend, handled: list[int], *, fail_first: bool = False) -> None:
    """The consuming service: OrderPlaced writes an order and publishes StockReserved."""
    failures = [True] if fail_first else []

    async def reserve(event: OrderPlaced) -> None:
        handled.append(event.order_id)
        await backend.write_order(event.order_id)
        await backend.bus.publish(StockReserved(order_id=event.order_id))
        if failures:
            failures.pop()
            raise ConnectionError("the warehouse did not answer")

    backend.bus.subscribe(OrderPlaced, reserve)


async def relay_all(backend: Backend, transport: RecordingTransport) -> None:
    relay = OutboxRelay(backend.storage, transport)
    while await relay.run_once():
        pass


async def test_a_redelivered_message_is_handled_once_with_one_set_of_effects(
    backend: Backend, transport: RecordingTransport
):
    handled: list[int] = []
    reserve_stock(backend, handled)
    inbox = TransactionalInbox()
    published = from_other_service(11)

    assert await consume(backend, inbox, delivery_of(published)) is True
    assert await consume(backend, inbox, delivery_of(published, attempt=2)) is False

    assert handled == [11]
    await relay_all(backend, transport)
    [reserved] = [p.decode() for p in transport.published]
    assert isinstance(reserved, StockReserved)
    assert reserved.causation_id == UUID(published.message_id)  # the consumed message
    assert reserved.correlation_id == "op-1"
    if backend.name != "sqlite":  # there, the records are the effects
        assert await backend.orders() == [11]


# On the embedded store a retried delivery cannot be recorded a second time today (the
# failed attempt's record holds its message id), so this runs on PostgreSQL only.
@pytest.mark.parametrize("backend_name", ["sqlalchemy", "asyncpg"], indirect=True)
async def test_a_handler_that_fails_rolls_its_mark_back_so_the_retry_handles_it(
    backend: Backend, transport: RecordingTransport
):
    handled: list[int] = []
    reserve_stock(backend, handled, fail_first=True)
    inbox = TransactionalInbox()
    published = from_other_service(12)

    with pytest.raises(ConnectionError):
        await consume(backend, inbox, delivery_of(published))
    await relay_all(backend, transport)
    assert transport.published == []  # the failed attempt's outbox entry rolled back

    assert await consume(backend, inbox, delivery_of(published, attempt=2)) is True
    assert await consume(backend, inbox, delivery_of(published, attempt=3)) is False
    assert handled == [12, 12]
    await relay_all(backend, transport)
    assert [p.decode().order_id for p in transport.published] == [12]


async def test_seen_tells_a_handled_message_from_a_new_one(backend: Backend):
    handled: list[int] = []
    reserve_stock(backend, handled)
    inbox = TransactionalInbox()
    published = from_other_service(13)
    message_id = UUID(published.message_id)
    await consume(backend, inbox, delivery_of(published))

    async with backend.unit_of_work(delivery_of(published)):
        assert await inbox.seen(GROUP, message_id) is True
        assert await inbox.seen("another-group", message_id) is False


async def test_the_inbox_outside_a_unit_of_work_says_what_is_missing():
    inbox = TransactionalInbox()
    assert inbox.transactional is True
    with pytest.raises(NoOutboxTransactionError, match="give the consumer a unit_of_work"):
        await inbox.mark(GROUP, UUID(int=1))
    with pytest.raises(ValueError, match="group"):
        await inbox.seen("bad group\n", UUID(int=1))
