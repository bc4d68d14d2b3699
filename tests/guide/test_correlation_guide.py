"""The correlation and causation guide, expressed with our API.

``correlation-and-causation-guide.txt`` describes Protean's guarantees; each test
below restates one of them with :class:`~python_cqrs_core.Mediator`:
``domain.process(...)`` is ``bus.process(...)``, a message's ``headers.id`` is its
``request_id``, the HTTP middleware's ``g.request_correlation_id`` is a
``correlation_scope``, and ``g.message_in_context`` is ``current_message()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest

from python_cqrs_core import (
    BaseCommand,
    BaseEvent,
    BaseMessage,
    HandlerEvent,
    Mediator,
    correlation_scope,
    current_causation_id,
    current_correlation_id,
    current_message,
)


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
def recorded(bus: Mediator) -> list[BaseMessage]:
    """Every message whose handler started, in order (the guide's event store)."""
    messages: list[BaseMessage] = []

    def record(event: HandlerEvent) -> None:
        if event.phase == "started" and event.message not in messages:
            messages.append(event.message)

    bus.add_listener(record)
    return messages


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


def render_tree(messages: list[BaseMessage]) -> str:
    """Draw the causation tree the way the guide does, ids replaced by type names."""
    by_id = {m.request_id: m for m in messages}
    children: dict[object, list[BaseMessage]] = {}
    for m in messages:
        children.setdefault(m.causation_id, []).append(m)

    def label(m: BaseMessage) -> str:
        cause = "None" if m.causation_id is None else f"{type(by_id[m.causation_id]).__name__}.id"
        return f"{type(m).__name__} [corr={m.correlation_id}, cause={cause}]"

    def walk(m: BaseMessage, depth: int) -> Iterator[str]:
        yield "  " * depth + ("+-- " if depth else "") + label(m)
        for child in children.get(m.request_id, []):
            yield from walk(child, depth + 1)

    (root,) = children[None]
    return "\n".join(walk(root, 0))


# -- the out-of-the-box guarantee ----------------------------------------------------------


async def test_every_message_in_the_chain_carries_both_ids_without_wiring(order_flow, recorded):
    await order_flow.process(PlaceOrder(customer_id="cust-123"))

    assert len(recorded) == 6
    root = recorded[0]
    assert isinstance(root.correlation_id, UUID)  # auto-generated: never None
    for message in recorded:
        assert message.correlation_id == root.correlation_id
    assert [m.causation_id is None for m in recorded] == [True] + [False] * 5


# -- passing correlation ids from external callers -------------------------------------------


async def test_explicitly_via_process(order_flow, recorded):
    await order_flow.process(
        PlaceOrder(customer_id="cust-123"),
        correlation_id="req-abc-123-from-gateway",
    )
    assert {m.correlation_id for m in recorded} == {"req-abc-123-from-gateway"}


async def test_automatically_from_the_http_header_via_a_correlation_scope(order_flow, recorded):
    # What the HTTP middleware does with "X-Correlation-ID: ext-123".
    async with correlation_scope("ext-123") as scope:
        await order_flow.process(PlaceOrder(customer_id="cust-123"))
    assert {m.correlation_id for m in recorded} == {"ext-123"}
    assert scope.correlation_id == "ext-123"  # what the response header reflects


# -- priority of correlation id sources ----------------------------------------------------------


async def test_priority_1_explicit_parameter_beats_everything(bus: Mediator, recorded):
    async def on_placed(event: OrderPlaced) -> None:
        await bus.process(ReserveInventory(order_id="o-1"), correlation_id="explicit")

    async def reserve(command: ReserveInventory) -> None:
        return None

    bus.subscribe(OrderPlaced, on_placed)
    bus.register(ReserveInventory, reserve)
    async with correlation_scope("from-header"):
        await bus.process(OrderPlaced(customer_id="c"), correlation_id="explicit-root")
    event, command = recorded
    assert (event.correlation_id, command.correlation_id) == ("explicit-root", "explicit")
    assert command.causation_id == event.request_id


async def test_priority_2_the_parent_message_beats_the_http_header(bus: Mediator, recorded):
    async def on_placed(event: OrderPlaced) -> None:
        async with correlation_scope("other-header"):
            await bus.process(ReserveInventory(order_id="o-1"))

    async def reserve(command: ReserveInventory) -> None:
        return None

    bus.subscribe(OrderPlaced, on_placed)
    bus.register(ReserveInventory, reserve)
    async with correlation_scope("from-header"):
        await bus.process(OrderPlaced(customer_id="c", correlation_id="parent-corr"))
    event, command = recorded
    assert (command.correlation_id, command.causation_id) == ("parent-corr", event.request_id)


async def test_priority_3_the_http_header_beats_auto_generation(order_flow, recorded):
    async with correlation_scope("from-header"):
        await order_flow.process(PlaceOrder(customer_id="c"))
    assert recorded[0].correlation_id == "from-header"


async def test_priority_4_auto_generated_when_nothing_is_given(order_flow, recorded):
    await order_flow.process(PlaceOrder(customer_id="c"))
    root = recorded[0]
    assert root.correlation_id == root.request_id
    assert isinstance(root.correlation_id, UUID) and root.correlation_id.version == 4


# -- full propagation flow and the causation tree --------------------------------------------


async def test_full_propagation_flow_from_an_http_request(bus: Mediator, recorded):
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

    place, placed, reserve_cmd = recorded
    assert (place.correlation_id, place.causation_id) == ("ext-123", None)
    assert (placed.correlation_id, placed.causation_id) == ("ext-123", place.request_id)
    assert (reserve_cmd.correlation_id, reserve_cmd.causation_id) == ("ext-123", placed.request_id)
    assert seen_in_handler[0][:2] == (place, "ext-123")
    assert seen_in_handler[1] == (reserve_cmd, "ext-123", reserve_cmd.request_id)


async def test_causation_chain_forms_the_guides_tree(order_flow, recorded):
    await order_flow.process(PlaceOrder(customer_id="cust-123"), correlation_id="ext-123")

    assert render_tree(recorded) == "\n".join(
        [
            "PlaceOrder [corr=ext-123, cause=None]",
            "  +-- OrderPlaced [corr=ext-123, cause=PlaceOrder.id]",
            "    +-- ReserveInventory [corr=ext-123, cause=OrderPlaced.id]",
            "      +-- InventoryReserved [corr=ext-123, cause=ReserveInventory.id]",
            "    +-- NotifyCustomer [corr=ext-123, cause=OrderPlaced.id]",
            "      +-- NotificationSent [corr=ext-123, cause=NotifyCustomer.id]",
        ]
    )


# -- propagation rules table -------------------------------------------------------------------


async def test_propagation_rules_table(order_flow, recorded):
    # process(cmd): auto-generated correlation, no cause
    await order_flow.process(PlaceOrder(customer_id="c"))
    root, placed, reserve = recorded[0], recorded[1], recorded[2]
    assert (root.correlation_id, root.causation_id) == (root.request_id, None)
    # command handler raises event: inherited from the command, caused by it
    assert (placed.correlation_id, placed.causation_id) == (root.correlation_id, root.request_id)
    # event handler dispatches a new command: inherited from the event, caused by it
    assert (reserve.correlation_id, reserve.causation_id) == (
        placed.correlation_id,
        placed.request_id,
    )

    recorded.clear()
    # process(cmd, correlation_id="ext-123"): "ext-123", no cause
    await order_flow.process(PlaceOrder(customer_id="c"), correlation_id="ext-123")
    assert (recorded[0].correlation_id, recorded[0].causation_id) == ("ext-123", None)


# -- service boundary handling -------------------------------------------------------------------


async def test_a_subscriber_bridges_the_correlation_of_a_broker_message(bus: Mediator, recorded):
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

    bridged, fresh = recorded
    assert bridged.correlation_id == "upstream-42"
    assert isinstance(fresh.correlation_id, UUID)
    assert fresh.correlation_id != fresh.request_id  # generated by the scope, not the command


async def test_nested_command_preservation(bus: Mediator, recorded):
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

    _, reserve, warehouse = recorded
    assert (reserve.correlation_id, reserve.causation_id) == ("from-broker", incoming.request_id)
    assert (warehouse.correlation_id, warehouse.causation_id) == (
        "from-broker",
        incoming.request_id,
    )


# -- safe when no context is active ----------------------------------------------------------------


def test_reading_the_ids_is_safe_without_any_context():
    assert (current_message(), current_correlation_id(), current_causation_id()) == (
        None,
        None,
        None,
    )
