"""TracingMiddleware against the real OpenTelemetry SDK (in-memory exporter).

Every test passes its own TracerProvider: the global provider is never touched.
"""

from __future__ import annotations

import asyncio
import doctest
import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Annotated, Any
from uuid import UUID

import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from python_cqrs_core import (
    PII,
    BaseCommand,
    BaseEvent,
    BaseQuery,
    EventHandlersFailed,
    Mediator,
    message_type_name,
    names,
)
from python_cqrs_core._version import __version__
from python_cqrs_core.headers import trace_headers
from python_cqrs_core.integrations import otel
from python_cqrs_core.integrations.otel import (
    AlreadyInstrumentedError,
    TracingMiddleware,
    attach_cqrs_context,
    context_from_headers,
    error_type,
    instrument,
    uninstrument,
)


class PlaceOrder(BaseCommand):
    sku: str


class OrderPlaced(BaseEvent):
    order_id: int


class ReserveStock(BaseCommand):
    order_id: int


class GetOrder(BaseQuery):
    order_id: int


class OutOfStock(Exception):
    pass


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider
    tracer_provider.shutdown()


def order_bus(provider: trace.TracerProvider) -> Mediator:
    """PlaceOrder -> OrderPlaced -> ReserveStock, plus a GetOrder query."""
    bus = Mediator()
    instrument(bus, provider)

    async def place(command: PlaceOrder) -> int:
        await bus.publish(OrderPlaced(order_id=7))
        return 7

    async def reserve_on_placed(event: OrderPlaced) -> None:
        await bus.send(ReserveStock(order_id=event.order_id))

    async def reserve(command: ReserveStock) -> None:
        return None

    async def get_order(query: GetOrder) -> dict[str, int]:
        return {"order_id": query.order_id}

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, reserve_on_placed)
    bus.register(ReserveStock, reserve)
    bus.register(GetOrder, get_order)
    return bus


def handling(handler: str) -> str:
    """The span name of one of order_bus()'s handlers."""
    return f"handle order_bus.<locals>.{handler}"


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    by_name = {span.name: span for span in spans}
    assert len(by_name) == len(spans), "span names are not unique in this test"
    return by_name


def is_child(child: ReadableSpan, parent: ReadableSpan) -> bool:
    return child.parent is not None and child.parent.span_id == parent.context.span_id


# -- one instrumentation scope ----------------------------------------------------------


async def test_every_span_comes_from_the_one_scope_with_the_library_version_and_schema_url(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = order_bus(provider)

    await bus.send(PlaceOrder(sku="A-1"))
    await bus.query(GetOrder(order_id=7))

    spans = exporter.get_finished_spans()
    assert len(spans) == 8  # four messages, four handlers
    assert {
        (span.instrumentation_scope.name, span.instrumentation_scope.version) for span in spans
    } == {("python_cqrs_core", __version__)}
    assert {span.instrumentation_scope.schema_url for span in spans} == {
        "https://opentelemetry.io/schemas/1.26.0"
    }
    assert {span.kind for span in spans} == {SpanKind.INTERNAL}


async def test_the_kind_of_message_is_the_cqrs_type_attribute_of_its_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = order_bus(provider)

    await bus.send(PlaceOrder(sku="A-1"))
    await bus.query(GetOrder(order_id=7))

    kinds = {
        name: (span.attributes or {})["cqrs.type"] for name, span in spans_by_name(exporter).items()
    }
    assert kinds == {
        "process PlaceOrder": "command",
        handling("place"): "command",
        "process OrderPlaced": "event",
        handling("reserve_on_placed"): "event",
        "process ReserveStock": "command",
        handling("reserve"): "command",
        "process GetOrder": "query",
        handling("get_order"): "query",
    }


async def test_the_tracer_is_resolved_once_per_middleware_never_per_dispatch(
    provider: TracerProvider,
) -> None:
    requested: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    class CountingProvider(trace.TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
            requested.append((args, kwargs))
            return provider.get_tracer(*args, **kwargs)

    bus = order_bus(CountingProvider())
    for _ in range(3):
        await bus.send(PlaceOrder(sku="A-1"))
        await bus.query(GetOrder(order_id=7))

    assert requested == [
        (
            ("python_cqrs_core", __version__),
            {"schema_url": "https://opentelemetry.io/schemas/1.26.0"},
        )
    ]


# -- message spans ------------------------------------------------------------------------


async def test_command_event_command_chain_is_one_trace_of_nested_message_and_handler_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    await order_bus(provider).send(PlaceOrder(sku="A-1"))

    spans = spans_by_name(exporter)
    chain = [
        spans["process PlaceOrder"],
        spans[handling("place")],
        spans["process OrderPlaced"],
        spans[handling("reserve_on_placed")],
        spans["process ReserveStock"],
        spans[handling("reserve")],
    ]
    assert chain[0].parent is None
    for parent, child in itertools.pairwise(chain):
        assert is_child(child, parent), (child.name, parent.name)
    assert len({span.context.trace_id for span in chain}) == 1


async def test_message_span_attributes_are_the_ids_the_type_and_the_messaging_conventions(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider)
    handled: list[OrderPlaced] = []

    async def place(command: PlaceOrder) -> None:
        await bus.publish(OrderPlaced(order_id=7))

    async def on_placed(event: OrderPlaced) -> None:
        handled.append(event)

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, on_placed)
    command = PlaceOrder(sku="A-1", correlation_id="checkout-42", requested_by="ada@example.com")

    await bus.send(command)

    event = handled[0]
    spans = spans_by_name(exporter)
    assert dict(spans["process PlaceOrder"].attributes or {}) == {
        "business.request_id": str(command.request_id),
        "business.correlation_id": "checkout-42",
        "requested_at": command.requested_at.isoformat(),
        "cqrs.type": "command",
        "cqrs.name": "PlaceOrder",
        "cqrs.message_type": message_type_name(PlaceOrder),
        "messaging.system": "python-cqrs-core",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "PlaceOrder",
        "messaging.message.id": str(command.request_id),
        "messaging.message.conversation_id": "checkout-42",
    }
    assert dict(spans["process OrderPlaced"].attributes or {}) == {
        "business.request_id": str(event.request_id),
        "business.correlation_id": "checkout-42",
        "business.causation_id": str(command.request_id),
        "requested_at": event.requested_at.isoformat(),
        "cqrs.type": "event",
        "cqrs.name": "OrderPlaced",
        "cqrs.message_type": message_type_name(OrderPlaced),
        "messaging.system": "python-cqrs-core",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "OrderPlaced",
        "messaging.message.id": str(event.request_id),
        "messaging.message.conversation_id": "checkout-42",
    }


async def test_the_stable_type_name_is_the_cqrs_message_type_attribute(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    class Renamed(BaseCommand):
        __message_type__ = "orders.Renamed"

    bus = Mediator()
    instrument(bus, provider)

    async def renamed(command: Renamed) -> None:
        return None

    bus.register(Renamed, renamed)
    await bus.send(Renamed())

    assert {
        span.name: (span.attributes or {})["cqrs.message_type"]
        for span in exporter.get_finished_spans()
    } == {"process Renamed": "orders.Renamed", f"handle {renamed.__qualname__}": "orders.Renamed"}


async def test_root_message_without_correlation_id_is_correlated_by_its_own_request_id(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    command = PlaceOrder(sku="A-1")

    await order_bus(provider).send(command)

    spans = spans_by_name(exporter)
    attributes = spans["process ReserveStock"].attributes or {}
    assert attributes["business.correlation_id"] == str(command.request_id)
    assert attributes["messaging.message.conversation_id"] == str(command.request_id)
    handler_attributes = spans[handling("reserve")].attributes or {}
    assert handler_attributes["business.correlation_id"] == str(command.request_id)


# -- requested_by is personal data ------------------------------------------------------


async def test_requested_by_is_on_no_automatic_span_by_default(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    await order_bus(provider).send(PlaceOrder(sku="A-1", requested_by="ada@example.com"))

    spans = exporter.get_finished_spans()
    assert len(spans) == 6
    for span in spans:
        attributes = span.attributes or {}
        assert "enduser.id" not in attributes
        assert "requested_by" not in attributes
        assert "ada@example.com" not in attributes.values()


async def test_record_enduser_puts_requested_by_on_message_spans_as_enduser_id(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider, record_enduser=True)

    async def place(command: PlaceOrder) -> None:
        await bus.publish(OrderPlaced(order_id=7))

    async def on_placed(event: OrderPlaced) -> None:
        return None

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, on_placed)

    await bus.send(PlaceOrder(sku="A-1", requested_by="ada@example.com"))
    await bus.send(PlaceOrder(sku="A-2"))  # nobody asked: no enduser.id

    enduser = [
        (span.name, (span.attributes or {}).get("enduser.id"))
        for span in exporter.get_finished_spans()
        if span.name.startswith("process ")
    ]
    assert enduser == [
        ("process OrderPlaced", "ada@example.com"),  # inherited by what it caused
        ("process PlaceOrder", "ada@example.com"),
        ("process OrderPlaced", None),
        ("process PlaceOrder", None),
    ]
    assert not [
        span for span in exporter.get_finished_spans() if "requested_by" in (span.attributes or {})
    ]


# -- handler spans ----------------------------------------------------------------------


async def test_each_handler_runs_in_its_own_span_under_the_message_span_with_both_ids(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider)
    handled: list[OrderPlaced] = []

    async def place(command: PlaceOrder) -> None:
        await bus.publish(OrderPlaced(order_id=7))

    async def on_placed(event: OrderPlaced) -> None:
        handled.append(event)

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, on_placed)
    command = PlaceOrder(sku="A-1", correlation_id="checkout-42")

    await bus.send(command)

    event = handled[0]
    spans = spans_by_name(exporter)
    handler_span = spans[f"handle {on_placed.__qualname__}"]
    assert handler_span.kind is SpanKind.INTERNAL
    assert is_child(handler_span, spans["process OrderPlaced"])
    assert dict(handler_span.attributes or {}) == {
        "cqrs.handler": on_placed.__qualname__,
        "cqrs.type": "event",
        "cqrs.message_type": message_type_name(OrderPlaced),
        "business.request_id": str(event.request_id),
        "business.correlation_id": "checkout-42",
        "business.causation_id": str(command.request_id),
    }
    root_handler = spans[f"handle {place.__qualname__}"]
    assert "business.causation_id" not in (root_handler.attributes or {})  # a root has none
    assert (root_handler.attributes or {})["business.correlation_id"] == "checkout-42"


async def test_each_subscriber_of_an_event_gets_its_own_span_and_its_own_failure(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider)
    delivered: list[str] = []

    async def send_confirmation(event: OrderPlaced) -> None:
        raise OutOfStock("no paper left")

    async def update_stock(event: OrderPlaced) -> None:
        delivered.append("update_stock")

    bus.subscribe(OrderPlaced, send_confirmation)
    bus.subscribe(OrderPlaced, update_stock)

    with pytest.raises(OutOfStock):
        await bus.publish(OrderPlaced(order_id=7))

    spans = spans_by_name(exporter)
    event_span = spans["process OrderPlaced"]
    failed = spans[f"handle {send_confirmation.__qualname__}"]
    succeeded = spans[f"handle {update_stock.__qualname__}"]
    assert delivered == ["update_stock"]  # the other subscriber still ran
    assert is_child(failed, event_span) and is_child(succeeded, event_span)
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == error_type(OutOfStock())
    assert [event.name for event in failed.events] == ["exception"]
    assert succeeded.status.status_code is StatusCode.UNSET
    assert "error.type" not in (succeeded.attributes or {})
    assert succeeded.events == ()
    assert event_span.status.status_code is StatusCode.ERROR
    assert (event_span.attributes or {})["error.type"] == error_type(OutOfStock())


async def test_several_failing_subscribers_fail_the_event_span_with_the_group_type(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider)

    async def first(event: OrderPlaced) -> None:
        raise OutOfStock("first")

    async def second(event: OrderPlaced) -> None:
        raise ValueError("second")

    bus.subscribe(OrderPlaced, first)
    bus.subscribe(OrderPlaced, second)

    with pytest.raises(EventHandlersFailed):
        await bus.publish(OrderPlaced(order_id=7))

    error_types = {
        span.name: (span.attributes or {})["error.type"] for span in exporter.get_finished_spans()
    }
    assert error_types == {
        f"handle {first.__qualname__}": f"{__name__}.OutOfStock",
        f"handle {second.__qualname__}": "ValueError",
        "process OrderPlaced": "python_cqrs_core.errors.EventHandlersFailed",
    }


async def test_handler_spans_are_not_made_while_the_span_is_sampled_out() -> None:
    exporter = InMemorySpanExporter()
    sampled_out = TracerProvider(sampler=ALWAYS_OFF)
    sampled_out.add_span_processor(SimpleSpanProcessor(exporter))
    bus = order_bus(sampled_out)

    assert await bus.send(PlaceOrder(sku="A-1")) == 7
    assert exporter.get_finished_spans() == ()


async def test_a_hand_added_middleware_can_trace_handlers_of_some_kinds_only(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    tracing = TracingMiddleware(provider)
    bus.add_middleware(tracing)
    bus.add_handler_middleware(tracing.handler_middleware, kinds=["command"])

    async def get_order(query: GetOrder) -> int:
        return query.order_id

    async def reserve(command: ReserveStock) -> None:
        return None

    bus.register(GetOrder, get_order)
    bus.register(ReserveStock, reserve)
    await bus.query(GetOrder(order_id=7))
    await bus.send(ReserveStock(order_id=7))

    assert [span.name for span in exporter.get_finished_spans()] == [
        "process GetOrder",
        f"handle {reserve.__qualname__}",
        "process ReserveStock",
    ]


# -- failures ---------------------------------------------------------------------------


async def test_failing_handler_marks_both_spans_error_with_error_type_and_reraises(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider)
    raised = OutOfStock("sku A-1 is out of stock")

    async def place(command: PlaceOrder) -> None:
        raise raised

    bus.register(PlaceOrder, place)

    with pytest.raises(OutOfStock) as caught:
        await bus.send(PlaceOrder(sku="A-1"))

    assert caught.value is raised
    spans = spans_by_name(exporter)
    for span in (spans["process PlaceOrder"], spans[f"handle {place.__qualname__}"]):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "OutOfStock: sku A-1 is out of stock"
        assert (span.attributes or {})["error.type"] == f"{__name__}.OutOfStock"
        (exception_event,) = span.events
        assert exception_event.name == "exception"
        assert (exception_event.attributes or {})["exception.type"].endswith("OutOfStock")
        assert (exception_event.attributes or {})["exception.message"] == "sku A-1 is out of stock"


def test_error_type_is_the_fully_qualified_class_name_and_builtins_their_own_name() -> None:
    class Nested:
        class Rejected(Exception):
            pass

    assert error_type(OutOfStock()) == f"{__name__}.OutOfStock"
    assert error_type(Nested.Rejected()) == f"{__name__}.{Nested.Rejected.__qualname__}"
    assert error_type(TimeoutError()) == "TimeoutError"
    assert error_type(EventHandlersFailed("x", [ValueError()])) == (
        "python_cqrs_core.errors.EventHandlersFailed"
    )


def test_the_module_docstring_examples_run() -> None:
    result = doctest.testmod(otel, verbose=False)

    assert result.attempted >= 2
    assert result.failed == 0


async def test_successful_handler_leaves_span_status_unset(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    await order_bus(provider).send(PlaceOrder(sku="A-1"))

    spans = exporter.get_finished_spans()
    assert {span.status.status_code for span in spans} == {StatusCode.UNSET}
    assert not [span for span in spans if "error.type" in (span.attributes or {})]


# -- instrument / uninstrument ----------------------------------------------------------


async def test_instrument_installs_message_and_handler_spans_and_returns_the_middleware(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    middleware = instrument(bus, provider)

    async def get_order(query: GetOrder) -> int:
        return query.order_id

    bus.register(GetOrder, get_order)
    await bus.query(GetOrder(order_id=7))

    assert isinstance(middleware, TracingMiddleware)
    assert [span.name for span in exporter.get_finished_spans()] == [
        f"handle {get_order.__qualname__}",
        "process GetOrder",
    ]


async def test_uninstrument_stops_the_spans_and_the_handlers_still_run(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = order_bus(provider)
    await bus.send(PlaceOrder(sku="A-1"))
    traced = len(exporter.get_finished_spans())
    exporter.clear()

    uninstrument(bus)
    result = await bus.send(PlaceOrder(sku="A-2"))

    assert traced == 6
    assert result == 7
    assert exporter.get_finished_spans() == ()


async def test_a_bus_can_be_instrumented_again_after_uninstrument(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider)
    uninstrument(bus)
    instrument(bus, provider, record_enduser=True)

    async def reserve(command: ReserveStock) -> None:
        return None

    bus.register(ReserveStock, reserve)
    await bus.send(ReserveStock(order_id=7, requested_by="ada"))

    spans = spans_by_name(exporter)
    assert sorted(spans) == [f"handle {reserve.__qualname__}", "process ReserveStock"]
    assert (spans["process ReserveStock"].attributes or {})["enduser.id"] == "ada"


async def test_instrumenting_a_bus_twice_is_refused_and_it_stays_traced_once(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = order_bus(provider)

    with pytest.raises(AlreadyInstrumentedError, match=r"already instrumented.*uninstrument"):
        instrument(bus, provider, record_payload=True)
    await bus.send(ReserveStock(order_id=7))

    assert sorted(span.name for span in exporter.get_finished_spans()) == [
        handling("reserve"),
        "process ReserveStock",
    ]
    assert issubclass(AlreadyInstrumentedError, ValueError)


def test_uninstrumenting_a_bus_that_was_not_instrumented_is_an_error() -> None:
    bus = Mediator()

    with pytest.raises(ValueError, match="not instrumented"):
        uninstrument(bus)
    instrument(bus)
    uninstrument(bus)
    with pytest.raises(ValueError, match="not instrumented"):
        uninstrument(bus)


async def test_instrumenting_one_bus_leaves_another_untraced(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    traced, plain = Mediator(), Mediator()
    instrument(traced, provider)
    instrument(plain, provider)
    uninstrument(plain)

    async def reserve(command: ReserveStock) -> None:
        return None

    traced.register(ReserveStock, reserve)
    plain.register(ReserveStock, reserve)
    untraced_command, traced_command = ReserveStock(order_id=1), ReserveStock(order_id=2)
    await plain.send(untraced_command)
    await traced.send(traced_command)

    spans = spans_by_name(exporter)
    assert sorted(spans) == [f"handle {reserve.__qualname__}", "process ReserveStock"]
    message_id = (spans["process ReserveStock"].attributes or {})["messaging.message.id"]
    assert message_id == str(traced_command.request_id)


# -- context: baggage, trace headers, consumers --------------------------------------------


async def test_correlation_baggage_is_set_while_handling_and_removed_afterwards(
    provider: TracerProvider,
) -> None:
    bus = Mediator()
    instrument(bus, provider)
    seen: list[object] = []

    async def place(command: PlaceOrder) -> None:
        seen.append(baggage.get_baggage(names.BAGGAGE_CORRELATION_ID))
        if command.sku == "broken":
            raise OutOfStock(command.sku)

    bus.register(PlaceOrder, place)

    await bus.send(PlaceOrder(sku="A-1", correlation_id="checkout-42"))
    after_success = baggage.get_baggage("correlation.id")
    with pytest.raises(OutOfStock):
        await bus.send(PlaceOrder(sku="broken", correlation_id="checkout-43"))
    after_failure = baggage.get_baggage("correlation.id")

    assert seen == ["checkout-42", "checkout-43"]
    assert after_success is None
    assert after_failure is None
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_trace_headers_inside_a_handler_carry_the_traceparent_of_its_handler_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider)
    headers: list[dict[str, str]] = []

    async def place(command: PlaceOrder) -> None:
        headers.append(trace_headers())

    bus.register(PlaceOrder, place)
    command = PlaceOrder(sku="A-1", correlation_id="checkout-42")

    await bus.send(command)

    context = spans_by_name(exporter)[f"handle {place.__qualname__}"].context
    assert headers[0]["traceparent"] == (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )
    assert headers[0]["baggage"] == "correlation.id=checkout-42"


async def test_consume_continues_the_trace_of_the_dispatching_span_as_a_consumer_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # Producer: a handler records the trace headers of the event it publishes, the way
    # the message store records them.
    producer = Mediator()
    instrument(producer, provider)
    recorded: list[tuple[OrderPlaced, dict[str, str]]] = []

    async def record(event: OrderPlaced) -> None:
        recorded.append((event, trace_headers()))

    async def place(command: PlaceOrder) -> None:
        await producer.publish(OrderPlaced(order_id=7))

    producer.register(PlaceOrder, place)
    producer.subscribe(OrderPlaced, record)
    await producer.send(PlaceOrder(sku="A-1"))
    producing = spans_by_name(exporter)[f"handle {record.__qualname__}"]
    exporter.clear()

    # Consumer: another bus (another process, later) handles the recorded event.
    consumer = order_bus(provider)
    event, headers = recorded[0]
    with TracingMiddleware.consume(headers):
        await consumer.publish(event)

    spans = spans_by_name(exporter)
    consumed = spans["process OrderPlaced"]
    consumed_handler = spans[handling("reserve_on_placed")]
    caused = spans["process ReserveStock"]
    assert consumed.kind is SpanKind.CONSUMER
    assert consumed.context.trace_id == producing.context.trace_id
    assert consumed.parent is not None
    assert consumed.parent.span_id == producing.context.span_id
    assert consumed.parent.is_remote
    assert consumed_handler.kind is SpanKind.INTERNAL and is_child(consumed_handler, consumed)
    assert caused.kind is SpanKind.INTERNAL and is_child(caused, consumed_handler)
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_consume_without_a_traceparent_starts_a_new_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = order_bus(provider)

    with TracingMiddleware.consume({}):
        await bus.send(ReserveStock(order_id=7))

    spans = spans_by_name(exporter)
    consumed = spans["process ReserveStock"]
    assert consumed.kind is SpanKind.CONSUMER
    assert consumed.parent is None
    assert spans[handling("reserve")].kind is SpanKind.INTERNAL


def test_context_from_headers_extracts_the_remote_span_and_baggage() -> None:
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"

    context = context_from_headers(
        {"traceparent": f"00-{trace_id}-{span_id}-01", "baggage": "correlation.id=checkout-42"}
    )

    remote = trace.get_current_span(context).get_span_context()
    assert (f"{remote.trace_id:032x}", f"{remote.span_id:016x}") == (trace_id, span_id)
    assert remote.is_remote
    assert baggage.get_baggage("correlation.id", context) == "checkout-42"


async def test_concurrent_chains_never_mix_their_correlation_ids(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider)

    async def place(command: PlaceOrder) -> None:
        await asyncio.sleep(0)
        await bus.publish(OrderPlaced(order_id=int(command.sku)))

    async def reserve_on_placed(event: OrderPlaced) -> None:
        await asyncio.sleep(0)
        await bus.send(ReserveStock(order_id=event.order_id))

    async def reserve(command: ReserveStock) -> None:
        await asyncio.sleep(0)

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, reserve_on_placed)
    bus.register(ReserveStock, reserve)
    commands = [PlaceOrder(sku=str(n), correlation_id=f"chain-{n}") for n in range(50)]

    await asyncio.gather(*(bus.send(command) for command in commands))

    spans = exporter.get_finished_spans()
    assert len(spans) == 300  # 50 chains of three messages and three handlers
    by_id = {span.context.span_id: span for span in spans}
    for span in spans:
        attributes = span.attributes or {}
        root = span
        while root.parent is not None:
            root = by_id[root.parent.span_id]
        root_correlation = (root.attributes or {})["business.correlation_id"]
        assert attributes["business.correlation_id"] == root_correlation
        if span.name.startswith("process "):
            assert attributes["messaging.message.conversation_id"] == root_correlation
        assert span.context.trace_id == root.context.trace_id
    assert len({span.context.trace_id for span in spans}) == 50


# -- payload ----------------------------------------------------------------------------


class CreateInvite(BaseCommand):
    email: Annotated[str, PII]
    expires_in_days: int
    tags: list[str]
    note: str | None = None


async def test_record_payload_adds_the_fields_with_personal_data_redacted(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider, record_payload=True)

    async def create(command: CreateInvite) -> None:
        return None

    bus.register(CreateInvite, create)

    await bus.send(CreateInvite(email="ada@example.com", expires_in_days=7, tags=["a", "b"]))

    span = spans_by_name(exporter)["process CreateInvite"]
    payload = {
        key: value
        for key, value in (span.attributes or {}).items()
        if key.startswith("cqrs.payload.")
    }
    assert payload == {
        "cqrs.payload.email": "***",
        "cqrs.payload.expires_in_days": 7,
        "cqrs.payload.tags": json.dumps(["a", "b"], separators=(",", ":")),
    }
    for finished in exporter.get_finished_spans():
        assert "ada@example.com" not in repr(finished.to_json())


async def test_payload_is_not_recorded_by_default(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    await order_bus(provider).send(PlaceOrder(sku="A-1"))

    keys = {key for span in exporter.get_finished_spans() for key in (span.attributes or {})}
    assert not [key for key in keys if key.startswith("cqrs.payload.")]


# -- no SDK, no-op provider, sampling, cancellation ------------------------------------------


async def test_with_the_no_op_provider_handlers_run_and_nothing_is_propagated() -> None:
    seen: list[tuple[dict[str, str], object]] = []

    async def get_order(query: GetOrder) -> int:
        seen.append((trace_headers(), baggage.get_baggage("correlation.id")))
        return query.order_id

    bus = Mediator()
    instrument(bus, trace.NoOpTracerProvider())
    bus.register(GetOrder, get_order)

    assert await bus.query(GetOrder(order_id=7)) == 7
    assert seen == [({}, None)]
    uninstrument(bus)  # what instrument installed for a no-op provider comes off too
    assert await bus.query(GetOrder(order_id=8)) == 8


async def test_a_sampled_out_span_still_carries_the_trace_to_the_messages_it_causes() -> None:
    bus = Mediator()
    instrument(bus, TracerProvider(sampler=ALWAYS_OFF))
    traceparents: list[str] = []

    async def place(command: PlaceOrder) -> None:
        traceparents.append(trace_headers()["traceparent"])
        await bus.send(ReserveStock(order_id=7))

    async def reserve(command: ReserveStock) -> None:
        traceparents.append(trace_headers()["traceparent"])

    bus.register(PlaceOrder, place)
    bus.register(ReserveStock, reserve)

    await bus.send(PlaceOrder(sku="A-1"))

    (_, outer_trace, outer_span, outer_flags), (_, inner_trace, inner_span, inner_flags) = (
        header.split("-") for header in traceparents
    )
    assert outer_trace == inner_trace
    assert outer_span != inner_span
    assert outer_flags == inner_flags
    assert int(outer_flags, 16) & 0x01 == 0  # not sampled, and still one trace


def test_attach_cqrs_context_sets_the_business_attributes_on_any_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    parent = PlaceOrder(sku="A-1", correlation_id="checkout-42")
    event = OrderPlaced(
        order_id=7,
        correlation_id=parent.correlation_id,
        causation_id=parent.request_id,
        requested_by="ada@example.com",
    )

    with provider.get_tracer("test").start_as_current_span("work") as span:
        attach_cqrs_context(span, event)

    (finished,) = exporter.get_finished_spans()
    assert dict(finished.attributes or {}) == {
        "business.request_id": str(event.request_id),
        "business.correlation_id": "checkout-42",
        "business.causation_id": str(parent.request_id),
        "requested_by": "ada@example.com",  # calling the helper is the opt-in
        "requested_at": event.requested_at.isoformat(),
        "cqrs.type": "event",
        "cqrs.name": "OrderPlaced",
    }
    assert UUID(str(finished.attributes["business.request_id"])) == event.request_id


async def test_cancelled_handler_ends_its_spans_without_error_and_detaches_the_baggage(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider)
    started = asyncio.Event()

    async def place(command: PlaceOrder) -> None:
        started.set()
        await asyncio.Event().wait()  # never set: only cancellation ends it

    bus.register(PlaceOrder, place)
    task = asyncio.create_task(bus.send(PlaceOrder(sku="A-1")))
    await started.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    for span in spans:
        assert span.status.status_code is StatusCode.UNSET
        assert span.events == ()
        assert "error.type" not in (span.attributes or {})
    assert baggage.get_baggage("correlation.id") is None


def test_the_no_sdk_shortcut_records_spans_once_a_global_provider_is_set_later():
    # A global provider can be set once per process: run the scenario in a child.
    script = textwrap.dedent(
        """
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from python_cqrs_core import BaseCommand, Mediator
        from python_cqrs_core.integrations.otel import instrument

        class Ping(BaseCommand):
            n: int

        async def main():
            bus = Mediator()
            async def pong(command):
                return trace.get_current_span().get_span_context().is_valid
            bus.register(Ping, pong)
            instrument(bus)  # before any SDK: the global proxy tracer
            assert await bus.send(Ping(n=1)) is False
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            assert await bus.send(Ping(n=2)) is True
            names = [span.name for span in exporter.get_finished_spans()]
            assert names == ["handle main.<locals>.pong", "process Ping"], names
            print("ok")

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


async def test_an_exception_whose_str_raises_reaches_the_caller_unchanged_and_is_recorded(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider)
    error = UnprintableError()

    async def place(command: PlaceOrder) -> int:
        raise error

    bus.register(PlaceOrder, place)
    with pytest.raises(UnprintableError) as raised:
        await bus.send(PlaceOrder(sku="A-1"))
    assert raised.value is error
    spans = exporter.get_finished_spans()
    assert len(spans) == 2  # the message span and its handler span, both ended
    placeholder = "<unprintable UnprintableError: its __str__ raised RuntimeError>"
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == f"UnprintableError: {placeholder}"
        [event] = [e for e in span.events if e.name == "exception"]
        assert event.attributes is not None
        assert event.attributes["exception.message"] == placeholder
        assert span.attributes is not None and span.attributes["error.type"].endswith(
            "UnprintableError"
        )
