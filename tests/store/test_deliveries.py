"""Messages crossing services: the producer records a message, a consumer in another
service records its *delivery* (and the message only if the store lacks it), on every
backend, through the real memory transport and Consumer.

The scenario of every test: ``orders`` handles PlaceOrder and publishes OrderPlaced,
which a DirectPublisher sends to ``orders.events``; ``inventory`` consumes it (group
``inventory``) and its handler sends ReserveInventory, whose handler publishes
InventoryReserved.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from store_testing import create_schema

from python_cqrs_core import BaseCommand, BaseEvent, Mediator, MessageRegistry, correlation_scope
from python_cqrs_core.codec import EnvelopeCodec
from python_cqrs_core.context import Consumption, consuming, current_consumption
from python_cqrs_core.names import EVENT_MESSAGE_ACKED, EVENT_MESSAGE_DLQ
from python_cqrs_core.outbox import OutboxWriter, SQLiteOutbox, TransactionalInbox
from python_cqrs_core.store import (
    CausationNode,
    DeliveryRecorder,
    MemoryStore,
    MessageRecorder,
    MessageStore,
    StoreWriteError,
    open_store,
)
from python_cqrs_core.transports import (
    Backoff,
    Consumer,
    DeliveryEvent,
    DirectPublisher,
    MemoryTransport,
    Routes,
    current_delivery,
)


class PlaceOrder(BaseCommand):
    __message_type__ = "shop.PlaceOrder"
    order_id: int


class OrderPlaced(BaseEvent):
    __message_type__ = "shop.OrderPlaced"
    order_id: int


class ReserveInventory(BaseCommand):
    __message_type__ = "inventory.ReserveInventory"
    order_id: int


class InventoryReserved(BaseEvent):
    __message_type__ = "inventory.InventoryReserved"
    order_id: int


REGISTRY = MessageRegistry([PlaceOrder, OrderPlaced, ReserveInventory, InventoryReserved])
DESTINATION = "orders.events"


@dataclass
class Services:
    """``orders`` and ``inventory``, each recording into its own store object (one
    store: a shared file, a shared PostgreSQL schema, or one memory store)."""

    orders_store: MessageStore
    inventory_store: MessageStore
    transport: MemoryTransport = field(default_factory=MemoryTransport)
    orders: Mediator = field(default_factory=Mediator)
    inventory: Mediator = field(default_factory=Mediator)
    failures: int = 0  # attempts of OrderPlaced that fail before it is handled
    reserved: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.orders_recorder = MessageRecorder(self.orders_store, service="orders")
        self.orders_recorder.install(self.orders)
        codec = EnvelopeCodec(REGISTRY, service="orders")
        DirectPublisher(self.transport, codec, Routes({OrderPlaced: DESTINATION})).install(
            self.orders
        )
        self.inventory_recorder = MessageRecorder(self.inventory_store, service="inventory")
        self.inventory_recorder.install(self.inventory)

        @self.orders.handler(PlaceOrder)
        async def place_order(command: PlaceOrder) -> None:
            await self.orders.publish(OrderPlaced(order_id=command.order_id))

        @self.inventory.handler(OrderPlaced)
        async def on_order_placed(event: OrderPlaced) -> None:
            delivery = current_delivery()
            assert delivery is not None
            if delivery.attempt <= self.failures:
                raise TimeoutError(f"the warehouse did not answer (attempt {delivery.attempt})")
            await self.inventory.send(ReserveInventory(order_id=event.order_id))

        @self.inventory.handler(ReserveInventory)
        async def reserve(command: ReserveInventory) -> None:
            self.reserved.append(command.order_id)
            await self.inventory.publish(InventoryReserved(order_id=command.order_id))

    def consumer(self, **options: Any) -> Consumer:
        options.setdefault("backoff", Backoff(initial=0.01, factor=1, maximum=0.01))
        options.setdefault("wait", 0.02)
        return Consumer(
            self.inventory,
            self.transport,
            EnvelopeCodec(REGISTRY),
            DESTINATION,
            "inventory",
            name="inventory-1",
            **options,
        )

    async def place_order(self, correlation_id: str) -> None:
        await self.transport.ensure_group(DESTINATION, "inventory")
        with correlation_scope(correlation_id, requested_by="ada"):
            await self.orders.send(PlaceOrder(order_id=7))

    async def close(self) -> None:
        await self.orders_recorder.close()
        await self.inventory_recorder.close()


async def settle(consumer: Consumer, done: Callable[[], bool]) -> None:
    """Run the consumer until ``done()`` (retries included), at most 5 seconds."""
    deadline = asyncio.get_running_loop().time() + 5
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "the consumer did not settle"
        await consumer.process_batch(wait=0.02)


def by_type(tree: CausationNode) -> dict[str, CausationNode]:
    return {node.record.message_type: node for _, node in tree.walk()}


@pytest.fixture
async def shared(backend: str, backend_location: str) -> AsyncIterator[Services]:
    """The two services on one store, each through its own store object."""
    options: dict[str, Any] = {}
    if backend == "postgres":
        schema = await create_schema(backend_location)
        options["server_settings"] = {"search_path": schema}
    orders_store = await open_store(backend_location, **options)
    inventory_store = (
        orders_store if backend == "memory" else await open_store(backend_location, **options)
    )
    services = Services(orders_store, inventory_store)
    yield services
    await services.close()
    for store in {id(s): s for s in (orders_store, inventory_store)}.values():
        await store.close()


async def test_a_consumed_message_is_recorded_once_with_the_delivery_of_each_service(
    shared: Services,
):
    consumer = shared.consumer()
    await shared.place_order("checkout-1")
    await settle(consumer, lambda: consumer.acked == 1)
    assert (consumer.retried, consumer.dead_lettered) == (0, 0)  # no collision, no retry

    (tree,) = await shared.orders_store.build_causation_tree("checkout-1")
    nodes = by_type(tree)
    shown = [(depth, node.record.message_type, node.record.service) for depth, node in tree.walk()]
    assert shown == [
        (0, "shop.PlaceOrder", "orders"),
        (1, "shop.OrderPlaced", "orders"),
        (2, "inventory.ReserveInventory", "inventory"),
        (3, "inventory.InventoryReserved", "inventory"),
    ]  # fmt: skip
    placed = nodes["shop.OrderPlaced"]
    assert placed.record.handlers == ()  # orders has no subscriber of its own
    (delivery,) = placed.deliveries
    assert delivery.message_id == placed.record.message_id
    assert (delivery.service, delivery.outcome, delivery.attempt) == ("inventory", "succeeded", 1)
    assert (delivery.transport, delivery.destination, delivery.group) == (
        "memory",
        DESTINATION,
        "inventory",
    )
    assert delivery.delivery_id is not None and delivery.correlation_id == "checkout-1"
    assert [h.outcome for h in delivery.handlers] == ["succeeded"]
    assert delivery.error_type is None and delivery.duration_ms is not None
    assert nodes["inventory.ReserveInventory"].deliveries == []
    (summary,) = await shared.inventory_store.correlations()
    assert (summary.outcome, summary.message_count, summary.failed_count) == ("succeeded", 4, 0)


async def test_each_attempt_of_a_retried_message_is_a_delivery_and_the_last_one_commits(
    shared: Services,
):
    shared.failures = 2
    consumer = shared.consumer()
    await shared.place_order("checkout-2")
    await settle(consumer, lambda: consumer.acked == 1)
    assert consumer.retried == 2 and shared.reserved == [7]

    (tree,) = await shared.inventory_store.build_causation_tree("checkout-2")
    placed = by_type(tree)["shop.OrderPlaced"]
    assert [(d.attempt, d.outcome, d.error_type) for d in placed.deliveries] == [
        (1, "failed", "TimeoutError"),
        (2, "failed", "TimeoutError"),
        (3, "succeeded", None),
    ]
    assert placed.deliveries[0].error_message == "the warehouse did not answer (attempt 1)"
    assert placed.record.outcome == "succeeded" and placed.record.service == "orders"
    assert [child.record.message_type for child in placed.children] == [
        "inventory.ReserveInventory"
    ]
    (summary,) = await shared.orders_store.correlations()
    assert (summary.outcome, summary.failed_count) == ("succeeded", 0)


async def test_a_dead_lettered_message_shows_a_dead_lettered_delivery_and_fails_its_operation(
    shared: Services,
):
    shared.failures = 99
    consumer = shared.consumer(max_attempts=2)
    dead_letters = DeliveryRecorder(shared.inventory_store, service="inventory")
    consumer.add_listener(dead_letters)
    await shared.place_order("checkout-3")
    await settle(consumer, lambda: consumer.dead_lettered == 1)
    await dead_letters.close()

    (tree,) = await shared.orders_store.build_causation_tree("checkout-3")
    placed = by_type(tree)["shop.OrderPlaced"]
    assert [(d.attempt, d.outcome) for d in placed.deliveries] == [
        (1, "failed"),
        (2, "failed"),
        (2, "dead_lettered"),
    ]
    dead = placed.deliveries[-1]
    assert dead.service == "inventory" and dead.transport == "memory"
    assert dead.error_message is not None and "failed 2 times" in dead.error_message
    assert placed.children == []
    (summary,) = await shared.orders_store.correlations(outcome="failed")
    assert (summary.correlation_id, summary.failed_count) == ("checkout-3", 1)


async def test_a_consumer_recording_into_its_own_store_records_the_message_as_received():
    orders_store, inventory_store = MemoryStore(), MemoryStore()
    services = Services(orders_store, inventory_store, failures=1)
    consumer = services.consumer()
    await services.place_order("checkout-4")
    await settle(consumer, lambda: consumer.acked == 1)

    (tree,) = await inventory_store.build_causation_tree("checkout-4")
    assert tree.orphan  # its cause, PlaceOrder, is in the orders store only
    placed = tree.record
    assert (placed.message_type, placed.service, placed.outcome) == (
        "shop.OrderPlaced",
        "orders",  # from the cqrs-service header
        "succeeded",
    )
    assert placed.handlers == () and placed.duration_ms is None
    assert placed.payload == {"order_id": 7} and placed.requested_by == "ada"
    assert [(d.attempt, d.outcome) for d in tree.deliveries] == [(1, "failed"), (2, "succeeded")]
    assert [child.record.service for child in tree.children] == ["inventory"]
    await services.close()


async def test_a_consumed_message_may_be_handled_again_by_the_recorder_that_produced_it():
    """One service consuming the events it publishes: the decoded copy of a message the
    recorder recorded itself is a delivery, not a second dispatch of that message."""
    store = MemoryStore()
    bus = Mediator()
    recorder = MessageRecorder(store, service="shop").install(bus)
    event = OrderPlaced(order_id=1, correlation_id="op-5")
    await bus.publish(event)
    consumption = Consumption(event.request_id, "shop.OrderPlaced", "op-5", None, None,
                              "memory", DESTINATION, "shop")  # fmt: skip
    with consuming(consumption):
        assert current_consumption() is consumption
        await bus.publish(event)  # the same message object, received back
    assert len(store) == 1
    (delivery,) = await store.deliveries_of([event.request_id])
    assert (delivery.service, delivery.group, delivery.outcome) == ("shop", "shop", "succeeded")
    with consuming(consumption):  # another message: recorded as usual
        await bus.publish(OrderPlaced(order_id=2))
    assert len(store) == 2
    await recorder.close()


async def test_an_async_recorder_writes_deliveries_and_received_records_in_the_background():
    store = MemoryStore()
    bus = Mediator()
    recorder = MessageRecorder(store, service="inventory", durability="async").install(bus)

    @bus.handler(OrderPlaced)
    async def on_placed(event: OrderPlaced) -> None:
        await bus.send(ReserveInventory(order_id=event.order_id))

    @bus.handler(ReserveInventory)
    async def reserve(command: ReserveInventory) -> None:
        pass

    event = OrderPlaced(order_id=3, correlation_id="op-6")
    consumption = Consumption(event.request_id, "shop.OrderPlaced", "op-6", None, None,
                              "memory", DESTINATION, "inventory", attempt=4)  # fmt: skip
    with consuming(consumption):
        await bus.publish(event)
    await recorder.flush()
    assert [r.message_type for r in await store.by_correlation("op-6")] == [
        "shop.OrderPlaced",
        "inventory.ReserveInventory",
    ]
    assert [d.attempt for d in await store.deliveries_by_correlation("op-6")] == [4]
    await recorder.close()


# -- the SQLite outbox: a retried delivery's entries and inbox mark commit ---------------


async def test_on_sqlite_a_retry_commits_its_inbox_mark_and_outbox_entries_with_its_chain(
    tmp_path: Path,
):
    store = await open_store(f"sqlite:///{tmp_path / 'cqrs.db'}")
    services = Services(store, store, failures=2)
    outbox = await SQLiteOutbox.open(services.inventory_recorder)
    codec = EnvelopeCodec(REGISTRY, service="inventory")
    OutboxWriter(Routes({InventoryReserved: "inventory.events"}), codec, chains=outbox).install(
        services.inventory
    )
    inbox = TransactionalInbox()
    consumer = services.consumer(inbox=inbox, unit_of_work=outbox.unit_of_work)
    try:
        await services.place_order("checkout-7")
        await settle(consumer, lambda: consumer.acked == 1)
        assert consumer.retried == 2
        (tree,) = await store.build_causation_tree("checkout-7")
        placed = by_type(tree)["shop.OrderPlaced"]
        assert [(d.attempt, d.outcome) for d in placed.deliveries] == [
            (1, "failed"),
            (2, "failed"),
            (3, "succeeded"),
        ]
        assert [node.record.message_type for _, node in placed.walk()] == [
            "shop.OrderPlaced",
            "inventory.ReserveInventory",
            "inventory.InventoryReserved",
        ]
        assert await outbox.backlog() == 1  # InventoryReserved, of the third attempt
        chain = outbox.begin_chain(str(placed.record.message_id))
        assert await chain.handled("inventory", str(placed.record.message_id))
        # Delivered again (a relay's duplicate): the inbox drops it, nothing is recorded.
        events: list[DeliveryEvent] = []
        consumer.add_listener(events.append)
        headers, body = EnvelopeCodec(REGISTRY).encode(placed.record.to_message(REGISTRY))
        await services.transport.publish(DESTINATION, headers, body)
        await settle(consumer, lambda: consumer.acked == 2)
        assert [(e.event, e.duplicate) for e in events] == [(EVENT_MESSAGE_ACKED, True)]
        assert len(await store.deliveries_of([placed.record.message_id])) == 3
    finally:
        await outbox.close()
        await services.close()
        await store.close()


# -- DeliveryRecorder ---------------------------------------------------------------------


def dlq_event(**changes: Any) -> DeliveryEvent:
    values: dict[str, Any] = {
        "event": EVENT_MESSAGE_DLQ,
        "destination": DESTINATION,
        "group": "inventory",
        "consumer": "inventory-1",
        "delivery_id": "5-0",
        "attempt": 3,
        "message_id": str(uuid4()),
        "message_type": "shop.OrderPlaced",
        "correlation_id": "op-9",
        "causation_id": None,
        "reason": "undecodable: body: is not valid JSON",
        "transport": "redis",
    }
    values.update(changes)
    return DeliveryEvent(**values)


async def test_the_delivery_recorder_records_dead_letters_only():
    store = MemoryStore()
    recorder = DeliveryRecorder(store, service="inventory")
    dead = dlq_event()
    recorder(dlq_event(event=EVENT_MESSAGE_ACKED))
    recorder(dead)
    recorder(dlq_event(message_id=None))  # no id to place it in a chain: not recorded
    foreign = dlq_event(correlation_id=None, transport=None)
    recorder(foreign)
    await recorder.flush()
    first, second = await store.read_deliveries()
    assert (str(first.message_id), first.correlation_id, first.outcome) == (
        dead.message_id,
        "op-9",
        "dead_lettered",
    )
    assert (first.service, first.transport, first.attempt, first.delivery_id) == (
        "inventory",
        "redis",
        3,
        "5-0",
    )
    assert first.error_message == dead.reason and first.error_type is None
    assert second.correlation_id == foreign.message_id  # a foreign message: its own chain
    assert second.transport == "unknown"
    await recorder.close()
    with pytest.raises(RuntimeError, match="closed"):
        recorder(dlq_event())


async def test_a_dead_letter_the_store_refuses_is_reported_by_flush(
    caplog: pytest.LogCaptureFixture,
):
    store = MemoryStore()
    recorder = DeliveryRecorder(store)
    await store.close()
    recorder(dlq_event())
    with pytest.raises(StoreWriteError, match="1 write"):
        await recorder.flush()
    assert "could not record 1 dead letter" in caplog.text
    await recorder.flush()  # reported once


def test_the_delivery_recorder_checks_its_service_name():
    with pytest.raises(ValueError, match="service"):
        DeliveryRecorder(MemoryStore(), service="not a name")
