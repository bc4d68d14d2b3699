"""The correlation and causation guide, expressed with our API.

``correlation-and-causation-guide.txt`` describes Protean's guarantees; each test
below restates one of them with :class:`~python_cqrs_core.Mediator`:
``domain.process(...)`` is ``bus.process(...)``, a message's ``headers.id`` is its
``request_id``, the HTTP middleware's ``g.request_correlation_id`` is a
``correlation_scope``, and ``g.message_in_context`` is ``current_message()``.  The
guide's event store is a :func:`~python_cqrs_core.testing.capture` of the bus, and its
causation tree drawing an :func:`~python_cqrs_core.testing.assert_chain` spec.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest

from python_cqrs_core import (
    BaseCommand,
    BaseEvent,
    Mediator,
    correlation_scope,
    current_causation_id,
    current_correlation_id,
    current_message,
)
from python_cqrs_core.testing import Capture, assert_chain, capture


class PlaceOrder(BaseCommand):
    customer_id: str


class OrderPlaced(BaseEvent):
    customer_id: str


class ReserveInventory(BaseCommand):
    order_id: str


class InventoryReserved(BaseEvent):
    order_id: str


class NotifyCustomer(BaseCommand):
    order_id: str


class NotificationSent(BaseEvent):
    order_id: str


class NotifyWarehouse(BaseCommand):
    order_id: str


@pytest.fixture
def dispatched(bus: Mediator) -> Iterator[Capture]:
    """Every message dispatched through the bus, in order (the guide's event store)."""
    with capture(bus) as messages:
        yield messages


GUIDE_TREE = """
    PlaceOrder
    └── OrderPlaced
        ├── ReserveInventory
        │   └── InventoryReserved
        └── NotifyCustomer
            └── NotificationSent
"""
"""The guide's causation tree: every child's causation id is its parent's id."""


@pytest.fixture
def order_flow(bus: Mediator) -> Mediator:
    """The guide's causation tree: PlaceOrder -> OrderPlaced -> two commands -> events."""

    async def place_order(command: PlaceOrder) -> None:
        await bus.publish(OrderPlaced(customer_id=command.customer_id))

    async def reserve_after_placed(event: OrderPlaced) -> None:
        await bus.send(ReserveInventory(order_id="o-1"))

    async def notify_after_placed(event: OrderPlaced) -> None:
        await bus.send(NotifyCustomer(order_id="o-1"))

    async def reserve_inventory(command: ReserveInventory) -> None:
        await bus.publish(InventoryReserved(order_id=command.order_id))

    async def notify_customer(command: NotifyCustomer) -> None:
        await bus.publish(NotificationSent(order_id=command.order_id))

    async def noop(event: BaseEvent) -> None:
        return None

    bus.register(PlaceOrder, place_order)
    bus.subscribe(OrderPlaced, reserve_after_placed)
    bus.subscribe(OrderPlaced, notify_after_placed)
    bus.register(ReserveInventory, reserve_inventory)
    bus.register(NotifyCustomer, notify_customer)
    bus.subscribe(InventoryReserved, noop)
    bus.subscribe(NotificationSent, noop)
    return bus


# -- the out-of-the-box guarantee ----------------------------------------------------------


async def test_every_message_in_the_chain_carries_both_ids_without_wiring(order_flow, dispatched):
    await order_flow.process(PlaceOrder(customer_id="cust-123"))

    root = dispatched[0].message
    assert isinstance(root.correlation_id, UUID)  # auto-generated: never None
    # six messages, one correlation id, each caused by its parent, the root by nothing
    assert_chain(dispatched, GUIDE_TREE, correlation_id=root.correlation_id)


# -- passing correlation ids from external callers -------------------------------------------


async def test_explicitly_via_process(order_flow, dispatched):
    await order_flow.process(
        PlaceOrder(customer_id="cust-123"),
        correlation_id="req-abc-123-from-gateway",
    )
    assert_chain(dispatched, GUIDE_TREE, correlation_id="req-abc-123-from-gateway")


async def test_automatically_from_the_http_header_via_a_correlation_scope(order_flow, dispatched):
    # What the HTTP middleware does with "X-Correlation-ID: ext-123".
    async with correlation_scope("ext-123") as scope:
        await order_flow.process(PlaceOrder(customer_id="cust-123"))
    assert_chain(dispatched, GUIDE_TREE, correlation_id="ext-123")
    assert scope.correlation_id == "ext-123"  # what the response header reflects


# -- priority of correlation id sources ----------------------------------------------------------


async def test_priority_1_explicit_parameter_beats_everything(bus: Mediator, dispatched):
    async def on_placed(event: OrderPlaced) -> None:
        await bus.process(ReserveInventory(order_id="o-1"), correlation_id="explicit")

    async def reserve(command: ReserveInventory) -> None:
        return None

    bus.subscribe(OrderPlaced, on_placed)
    bus.register(ReserveInventory, reserve)
    async with correlation_scope("from-header"):
        await bus.process(OrderPlaced(customer_id="c"), correlation_id="explicit-root")
    event, command = dispatched.messages
    assert (event.correlation_id, command.correlation_id) == ("explicit-root", "explicit")
    assert command.causation_id == event.request_id


async def test_priority_2_the_parent_message_beats_the_http_header(bus: Mediator, dispatched):
    async def on_placed(event: OrderPlaced) -> None:
        async with correlation_scope("other-header"):
            await bus.process(ReserveInventory(order_id="o-1"))

    async def reserve(command: ReserveInventory) -> None:
        return None

    bus.subscribe(OrderPlaced, on_placed)
    bus.register(ReserveInventory, reserve)
    async with correlation_scope("from-header"):
        await bus.process(OrderPlaced(customer_id="c", correlation_id="parent-corr"))
    event, command = dispatched.messages
    assert (command.correlation_id, command.causation_id) == ("parent-corr", event.request_id)


async def test_priority_3_the_http_header_beats_auto_generation(order_flow, dispatched):
    async with correlation_scope("from-header"):
        await order_flow.process(PlaceOrder(customer_id="c"))
    assert_chain(dispatched, GUIDE_TREE, correlation_id="from-header")


async def test_priority_4_auto_generated_when_nothing_is_given(order_flow, dispatched):
    await order_flow.process(PlaceOrder(customer_id="c"))
    root = dispatched[0].message
    assert root.correlation_id == root.request_id
    assert isinstance(root.correlation_id, UUID) and root.correlation_id.version == 4


# -- full propagation flow and the causation tree --------------------------------------------


async def test_full_propagation_flow_from_an_http_request(bus: Mediator, dispatched):
    seen_in_handler: list[tuple[object, object, object]] = []

    async def place_order(command: PlaceOrder) -> None:
        # g.message_in_context = the PlaceOrder message
        seen_in_handler.append((current_message(), current_correlation_id(), None))
        await bus.publish(OrderPlaced(customer_id=command.customer_id))

    async def reserve_after_placed(event: OrderPlaced) -> None:
        await bus.process(ReserveInventory(order_id="o-1"))

    async def reserve(command: ReserveInventory) -> None:
        seen_in_handler.append(
            (current_message(), current_correlation_id(), current_causation_id())
        )

    bus.register(PlaceOrder, place_order)
    bus.subscribe(OrderPlaced, reserve_after_placed)
    bus.register(ReserveInventory, reserve)

    async with correlation_scope("ext-123"):
        await bus.process(PlaceOrder(customer_id="cust-123"))

    assert_chain(
        dispatched,
        """
        PlaceOrder
        └── OrderPlaced
            └── ReserveInventory
        """,
        correlation_id="ext-123",
    )
    place, _, reserve_cmd = dispatched.messages
    assert seen_in_handler[0][:2] == (place, "ext-123")
    assert seen_in_handler[1] == (reserve_cmd, "ext-123", reserve_cmd.request_id)


async def test_causation_chain_forms_the_guides_tree(order_flow, dispatched):
    await order_flow.process(PlaceOrder(customer_id="cust-123"), correlation_id="ext-123")

    assert_chain(dispatched, GUIDE_TREE, correlation_id="ext-123")


# -- propagation rules table -------------------------------------------------------------------


async def test_propagation_rules_table(order_flow, dispatched):
    # process(cmd): auto-generated correlation, no cause
    await order_flow.process(PlaceOrder(customer_id="c"))
    root, placed, reserve = dispatched.messages[:3]
    assert (root.correlation_id, root.causation_id) == (root.request_id, None)
    # command handler raises event: inherited from the command, caused by it
    assert (placed.correlation_id, placed.causation_id) == (root.correlation_id, root.request_id)
    # event handler dispatches a new command: inherited from the event, caused by it
    assert (reserve.correlation_id, reserve.causation_id) == (
        placed.correlation_id,
        placed.request_id,
    )

    dispatched.clear()
    # process(cmd, correlation_id="ext-123"): "ext-123", no cause
    await order_flow.process(PlaceOrder(customer_id="c"), correlation_id="ext-123")
    new_root = dispatched[0].message
    assert (new_root.correlation_id, new_root.causation_id) == ("ext-123", None)


# -- service boundary handling -------------------------------------------------------------------


async def test_a_subscriber_bridges_the_correlation_of_a_broker_message(bus: Mediator, dispatched):
    async def confirm(command: ReserveInventory) -> None:
        return None

    bus.register(ReserveInventory, confirm)

    async def payment_subscriber(message: dict[str, str | None]) -> None:
        # The correlation id of the source service becomes the ambient one; without
        # one, a fresh UUID keeps the chain traced within this service.
        async with correlation_scope(message.get("correlation_id")):
            await bus.process(ReserveInventory(order_id=message["order_id"]))

    await payment_subscriber({"order_id": "o-1", "correlation_id": "upstream-42"})
    await payment_subscriber({"order_id": "o-2"})

    bridged, fresh = dispatched.messages
    assert bridged.correlation_id == "upstream-42"
    assert isinstance(fresh.correlation_id, UUID)
    assert fresh.correlation_id != fresh.request_id  # generated by the scope, not the command


async def test_nested_command_preservation(bus: Mediator, dispatched):
    async def fulfillment_subscriber(event: OrderPlaced) -> None:
        # Both commands inherit the same correlation_id from the incoming message.
        await bus.process(ReserveInventory(order_id="o-1"))
        await bus.process(NotifyWarehouse(order_id="o-1"))

    async def noop(command: BaseCommand) -> None:
        return None

    bus.subscribe(OrderPlaced, fulfillment_subscriber)
    bus.register(ReserveInventory, noop)
    bus.register(NotifyWarehouse, noop)
    incoming = OrderPlaced(customer_id="c", correlation_id="from-broker")
    await bus.process(incoming)

    # Both caused by the incoming event, in the operation it brought.
    assert_chain(
        dispatched,
        """
        OrderPlaced
        ├── ReserveInventory
        └── NotifyWarehouse
        """,
        correlation_id="from-broker",
    )
    assert dispatched[0].message is incoming


# -- safe when no context is active ----------------------------------------------------------------


def test_reading_the_ids_is_safe_without_any_context():
    assert (current_message(), current_correlation_id(), current_causation_id()) == (
        None,
        None,
        None,
    )
