"""correlation_processor with real structlog loggers (structlog.testing.capture_logs)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from structlog.typing import EventDict

from python_cqrs_core import BaseCommand, BaseEvent, Mediator, correlation_scope
from python_cqrs_core.integrations.logging import CORRELATION_FIELDS
from python_cqrs_core.integrations.otel import instrument
from python_cqrs_core.integrations.structlog import correlation_processor

log = structlog.get_logger("tests.orders")
EMPTY = dict.fromkeys(CORRELATION_FIELDS, "")


class PlaceOrder(BaseCommand):
    sku: str


class OrderPlaced(BaseEvent):
    order_id: int


class ReserveStock(BaseCommand):
    order_id: int


@pytest.fixture
def events() -> Iterator[list[EventDict]]:
    with structlog.testing.capture_logs(processors=[correlation_processor]) as captured:
        yield captured


def ids(event: EventDict) -> dict[str, Any]:
    return {key: event[key] for key in CORRELATION_FIELDS}


def order_bus() -> Mediator:
    """PlaceOrder -> OrderPlaced -> ReserveStock, each handler logging one event."""
    bus = Mediator()

    async def place(command: PlaceOrder) -> None:
        log.info("placing_order", sku=command.sku)
        await asyncio.sleep(0)
        await bus.publish(OrderPlaced(order_id=7))

    async def on_placed(event: OrderPlaced) -> None:
        log.info("order_placed")
        await asyncio.sleep(0)
        await bus.send(ReserveStock(order_id=event.order_id))

    async def reserve(command: ReserveStock) -> None:
        log.info("reserving_stock")

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, on_placed)
    bus.register(ReserveStock, reserve)
    return bus


async def test_events_in_a_chain_carry_the_ids_of_the_message_being_handled(
    events: list[EventDict],
) -> None:
    command = PlaceOrder(sku="A-1", correlation_id="checkout-42", requested_by="ada")

    await order_bus().send(command)

    placing, placed, reserving = events
    assert ids(placing) == {
        **EMPTY,
        "correlation_id": "checkout-42",
        "request_id": str(command.request_id),
        "requested_by": "ada",
        "message_type": f"{__name__}.PlaceOrder",
    }
    assert placing["sku"] == "A-1"
    assert placed["message_type"] == f"{__name__}.OrderPlaced"
    assert placed["correlation_id"] == "checkout-42"
    assert placed["causation_id"] == str(command.request_id)
    assert placed["request_id"] not in {"", str(command.request_id)}
    assert reserving["message_type"] == f"{__name__}.ReserveStock"
    assert reserving["correlation_id"] == "checkout-42"
    assert reserving["causation_id"] == placed["request_id"]


def test_events_outside_any_context_have_every_id_empty(events: list[EventDict]) -> None:
    log.info("starting_up")

    assert ids(events[0]) == EMPTY


def test_events_in_a_correlation_scope_carry_its_correlation_id(
    events: list[EventDict],
) -> None:
    with correlation_scope("req-abc-123", requested_by="gateway"):
        log.info("request_received")

    assert ids(events[0]) == {**EMPTY, "correlation_id": "req-abc-123", "requested_by": "gateway"}


async def test_values_already_bound_are_kept(events: list[EventDict]) -> None:
    bus = Mediator()

    async def place(command: PlaceOrder) -> None:
        log.bind(request_id="bound-by-hand").info("placing_order")

    bus.register(PlaceOrder, place)
    command = PlaceOrder(sku="A-1")

    await bus.send(command)

    assert events[0]["request_id"] == "bound-by-hand"
    assert events[0]["cqrs_request_id"] == str(command.request_id)  # ours is not lost
    assert events[0]["correlation_id"] == str(command.request_id)
    assert "cqrs_correlation_id" not in events[0]  # no conflict, no second key


async def test_a_request_id_bound_in_contextvars_and_the_message_id_both_survive() -> None:
    """An application binds its HTTP request id as request_id in structlog's
    contextvars (the usual FastAPI setup); neither id overwrites the other."""
    bus = Mediator()

    async def place(command: PlaceOrder) -> None:
        log.info("placing_order")

    bus.register(PlaceOrder, place)
    command = PlaceOrder(sku="A-1")
    processors = [structlog.contextvars.merge_contextvars, correlation_processor]
    structlog.contextvars.bind_contextvars(request_id="http-req-42")
    try:
        with structlog.testing.capture_logs(processors=processors) as captured:
            await bus.send(command)
    finally:
        structlog.contextvars.clear_contextvars()
    assert captured[0]["request_id"] == "http-req-42"
    assert captured[0]["cqrs_request_id"] == str(command.request_id)


async def test_concurrent_chains_log_their_own_ids(events: list[EventDict]) -> None:
    commands = [PlaceOrder(sku=str(n), correlation_id=f"checkout-{n}") for n in range(30)]
    bus = order_bus()

    await asyncio.gather(*(bus.send(command) for command in commands))

    by_correlation: dict[str, list[str]] = {}
    for event in events:
        by_correlation.setdefault(event["correlation_id"], []).append(event["event"])
        if event["event"] == "placing_order":
            assert event["correlation_id"] == f"checkout-{event['sku']}"
    assert by_correlation == {
        f"checkout-{n}": ["placing_order", "order_placed", "reserving_stock"] for n in range(30)
    }


async def test_events_carry_the_trace_and_span_ids_of_the_recording_span(
    events: list[EventDict],
) -> None:
    bus = Mediator()
    instrument(bus, TracerProvider())
    spans: list[str] = []

    async def place(command: PlaceOrder) -> None:
        spans.append(f"{trace.get_current_span().get_span_context().span_id:016x}")
        log.info("placing_order")

    bus.register(PlaceOrder, place)

    await bus.send(PlaceOrder(sku="A-1"))

    assert events[0]["span_id"] == spans[0]
    assert len(events[0]["trace_id"]) == 32
    assert events[0]["trace_id"] != "0" * 32


def test_processor_is_a_plain_structlog_processor() -> None:
    event_dict: EventDict = {"event": "hello"}

    returned = correlation_processor(None, "info", event_dict)

    assert returned is event_dict
    assert ids(returned) == EMPTY
