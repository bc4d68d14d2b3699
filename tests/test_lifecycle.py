"""Lifecycle notifications: a HandlerEvent when a handler starts, completes or fails."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from python_cqrs_core import (
    BaseCommand,
    BaseEvent,
    BaseMessage,
    CallNext,
    HandlerEvent,
    Mediator,
    correlation_scope,
    current_message,
    message_type_name,
)


class PlaceOrder(BaseCommand):
    order_id: str


class OrderPlaced(BaseEvent):
    order_id: str


class OrderRejected(Exception):
    pass


@pytest.fixture
def events(bus: Mediator) -> list[HandlerEvent]:
    received: list[HandlerEvent] = []
    bus.add_listener(received.append)
    return received


async def test_a_successful_command_emits_started_then_completed(
    bus: Mediator, events: list[HandlerEvent]
):
    async def place_order(command: PlaceOrder) -> str:
        await asyncio.sleep(0.01)
        return "placed"

    bus.register(PlaceOrder, place_order)
    cmd = PlaceOrder(order_id="o-1", requested_by="ann")
    with correlation_scope("ext-1"):
        assert await bus.send(cmd) == "placed"

    started, completed = events
    for event in events:
        assert event.message is cmd
        assert event.message_id == cmd.request_id
        assert event.message_type == message_type_name(PlaceOrder)
        assert event.kind == "command"
        assert event.handler == place_order.__qualname__
        assert (event.correlation_id, event.causation_id) == ("ext-1", None)
        assert event.error is None
    assert (started.phase, started.duration_ns) == ("started", None)
    assert completed.phase == "completed"
    assert completed.duration_ns is not None
    assert completed.duration_ns >= 5_000_000  # the handler slept 10 ms
    assert started.timestamp <= completed.timestamp


async def test_a_failing_handler_emits_failed_with_the_error_before_it_reaches_the_caller(
    bus: Mediator, events: list[HandlerEvent]
):
    error = OrderRejected("out of stock")
    phases_when_caught: list[list[str]] = []

    class PlaceOrderHandler:
        async def handle(self, command: PlaceOrder) -> None:
            raise error

    bus.register(PlaceOrder, PlaceOrderHandler())
    with pytest.raises(OrderRejected) as exc_info:
        try:
            await bus.send(PlaceOrder(order_id="o-1"))
        finally:
            phases_when_caught.append([e.phase for e in events])
    assert exc_info.value is error
    assert phases_when_caught == [["started", "failed"]]
    failed = events[1]
    assert failed.error is error
    assert failed.handler == PlaceOrderHandler.__qualname__
    assert (failed.error_type, failed.error_message) == ("OrderRejected", "out of stock")
    assert failed.duration_ns is not None and failed.duration_ns >= 0


async def test_a_cancelled_handler_is_reported_as_failed(bus: Mediator, events):
    async def cancelled(command: PlaceOrder) -> None:
        raise asyncio.CancelledError

    bus.register(PlaceOrder, cancelled)
    with pytest.raises(asyncio.CancelledError):
        await bus.send(PlaceOrder(order_id="o-1"))
    assert [(e.phase, e.error_type) for e in events] == [
        ("started", None),
        ("failed", "CancelledError"),
    ]


async def test_an_event_emits_one_pair_per_subscriber_in_delivery_order(bus: Mediator, events):
    async def reserve_stock(event: OrderPlaced) -> None: ...

    async def email_customer(event: OrderPlaced) -> None:
        raise OrderRejected("smtp down")

    async def update_dashboard(event: OrderPlaced) -> None: ...

    for subscriber in (reserve_stock, email_customer, update_dashboard):
        bus.subscribe(OrderPlaced, subscriber)
    event = OrderPlaced(order_id="o-1")
    with pytest.raises(OrderRejected):
        await bus.publish(event)
    assert [(e.handler.rsplit(".", 1)[-1], e.phase, e.kind) for e in events] == [
        ("reserve_stock", "started", "event"),
        ("reserve_stock", "completed", "event"),
        ("email_customer", "started", "event"),
        ("email_customer", "failed", "event"),
        ("update_dashboard", "started", "event"),
        ("update_dashboard", "completed", "event"),
    ]
    assert all(e.message is event for e in events)


async def test_a_child_event_carries_its_parents_ids(bus: Mediator, events):
    async def place(command: PlaceOrder) -> None:
        await bus.publish(OrderPlaced(order_id=command.order_id))

    async def noop(event: OrderPlaced) -> None: ...

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, noop)
    cmd = PlaceOrder(order_id="o-1")
    await bus.send(cmd)
    assert [(e.message_type.rsplit(".", 1)[-1], e.phase) for e in events] == [
        ("PlaceOrder", "started"),
        ("OrderPlaced", "started"),
        ("OrderPlaced", "completed"),
        ("PlaceOrder", "completed"),
    ]
    child = events[1]
    assert (child.correlation_id, child.causation_id) == (cmd.request_id, cmd.request_id)


async def test_listeners_run_inside_the_dispatch_context(bus: Mediator):
    contexts: list[object] = []
    bus.add_listener(lambda event: contexts.append(current_message() is event.message))

    async def handle(command: PlaceOrder) -> None: ...

    bus.register(PlaceOrder, handle)
    await bus.send(PlaceOrder(order_id="o-1"))
    assert contexts == [True, True]


async def test_a_raising_listener_is_logged_and_does_not_break_dispatch(
    bus: Mediator, caplog: pytest.LogCaptureFixture
):
    received: list[str] = []

    def broken(event: HandlerEvent) -> None:
        raise RuntimeError("listener bug")

    bus.add_listener(broken)
    bus.add_listener(lambda event: received.append(event.phase))

    async def handle(command: PlaceOrder) -> str:
        return "done"

    bus.register(PlaceOrder, handle)
    with caplog.at_level(logging.ERROR, logger="python_cqrs_core"):
        assert await bus.send(PlaceOrder(order_id="o-1")) == "done"
    assert received == ["started", "completed"]
    failures = [r for r in caplog.records if r.name == "python_cqrs_core"]
    assert [r.getMessage().rsplit(" ", 1)[-1] for r in failures] == ["started", "completed"]
    assert all(r.exc_info and r.exc_info[0] is RuntimeError for r in failures)


async def test_a_raising_listener_does_not_mask_the_handlers_error(bus: Mediator):
    def broken(event: HandlerEvent) -> None:
        raise RuntimeError("listener bug")

    async def failing(command: PlaceOrder) -> None:
        raise OrderRejected("real error")

    bus.add_listener(broken)
    bus.register(PlaceOrder, failing)
    with pytest.raises(OrderRejected, match="real error"):
        await bus.send(PlaceOrder(order_id="o-1"))


async def test_no_listener_means_nothing_is_emitted(bus: Mediator, monkeypatch):
    built: list[HandlerEvent] = []
    original_init = HandlerEvent.__init__

    def spy(self: HandlerEvent, *args: object, **kwargs: object) -> None:
        built.append(self)
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(HandlerEvent, "__init__", spy)

    async def handle(command: PlaceOrder) -> str:
        return "ok"

    bus.register(PlaceOrder, handle)
    assert await bus.send(PlaceOrder(order_id="o-1")) == "ok"
    assert built == []


async def test_a_listener_added_after_a_dispatch_and_removed_again(bus: Mediator):
    received: list[str] = []

    def listener(event: HandlerEvent) -> None:
        received.append(event.phase)

    async def handle(command: PlaceOrder) -> None: ...

    bus.register(PlaceOrder, handle)
    await bus.send(PlaceOrder(order_id="o-1"))
    bus.add_listener(listener)
    await bus.send(PlaceOrder(order_id="o-2"))
    bus.remove_listener(listener)
    await bus.send(PlaceOrder(order_id="o-3"))
    assert received == ["started", "completed"]
    with pytest.raises(ValueError):
        bus.remove_listener(listener)


async def test_middleware_short_circuit_emits_nothing(bus: Mediator, events):
    async def deny(message: BaseMessage, call_next: CallNext) -> str:
        return "denied"

    async def handle(command: PlaceOrder) -> None: ...

    bus.register(PlaceOrder, handle)
    bus.add_middleware(deny)
    assert await bus.send(PlaceOrder(order_id="o-1")) == "denied"
    assert events == []


async def test_to_dict_is_json_serialisable_with_ids_as_strings(bus: Mediator, events):
    async def failing(command: PlaceOrder) -> None:
        raise OrderRejected("no stock")

    bus.register(PlaceOrder, failing)
    cmd = PlaceOrder(order_id="o-1", correlation_id="ext-1", requested_by="ann")
    with pytest.raises(OrderRejected):
        await bus.send(cmd)
    started, failed = (json.loads(json.dumps(e.to_dict())) for e in events)
    assert started == {
        "event": "handler.started",
        "message_id": str(cmd.request_id),
        "message_type": message_type_name(PlaceOrder),
        "kind": "command",
        "handler": failing.__qualname__,
        "correlation_id": "ext-1",
        "causation_id": None,
        "requested_by": "ann",
        "duration_ms": None,
        "error_type": None,
        "error_message": None,
        "timestamp": events[0].timestamp,
    }
    assert failed["event"] == "handler.failed"
    assert failed["duration_ms"] == events[1].duration_ns / 1e6
    assert (failed["error_type"], failed["error_message"]) == ("OrderRejected", "no stock")


def test_to_dict_of_a_uuid_causation_is_its_string():
    parent = PlaceOrder(order_id="o-1")
    child = OrderPlaced(
        order_id="o-1", correlation_id=parent.request_id, causation_id=parent.request_id
    )
    data = HandlerEvent("completed", child, "event", "h", duration_ns=1_500_000).to_dict()
    assert data["correlation_id"] == data["causation_id"] == str(parent.request_id)
    assert data["duration_ms"] == 1.5
    json.dumps(data)


def test_a_handler_event_is_immutable():
    event = HandlerEvent("started", PlaceOrder(order_id="o-1"), "command", "h")
    with pytest.raises(AttributeError):
        event.phase = "failed"  # type: ignore[misc]


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


async def test_an_exception_whose_str_raises_reaches_the_caller_and_listeners_unchanged(
    bus: Mediator,
):
    error = UnprintableError()
    events: list[HandlerEvent] = []

    async def place(command: PlaceOrder) -> None:
        raise error

    bus.register(PlaceOrder, place)
    bus.add_listener(events.append)
    with pytest.raises(UnprintableError) as raised:
        await bus.send(PlaceOrder(order_id="o-1"))
    assert raised.value is error
    failed = events[-1]
    assert failed.phase == "failed" and failed.error is error
    assert failed.error_message == (
        "<unprintable UnprintableError: its __str__ raised RuntimeError>"
    )
    assert failed.to_dict()["error_message"] == failed.error_message
