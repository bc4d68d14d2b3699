"""TracingMiddleware against the real OpenTelemetry SDK (in-memory exporter).

Every test passes its own TracerProvider: the global provider is never touched.
"""

from __future__ import annotations

import asyncio
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

from python_cqrs_core import PII, BaseCommand, BaseEvent, BaseQuery, Mediator
from python_cqrs_core.headers import trace_headers
from python_cqrs_core.integrations.otel import (
    TracingMiddleware,
    attach_cqrs_context,
    context_from_headers,
    instrument,
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


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    by_name = {span.name: span for span in spans}
    assert len(by_name) == len(spans), "span names are not unique in this test"
    return by_name


async def test_each_message_is_handled_in_one_span_on_the_tracer_of_its_kind(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = order_bus(provider)

    await bus.send(PlaceOrder(sku="A-1"))
    await bus.query(GetOrder(order_id=7))

    spans = spans_by_name(exporter)
    assert {name: span.instrumentation_scope.name for name, span in spans.items()} == {
        "process PlaceOrder": "cqrs.write",
        "process OrderPlaced": "cqrs.events",
        "process ReserveStock": "cqrs.write",
        "process GetOrder": "cqrs.read",
    }
    assert {span.kind for span in spans.values()} == {SpanKind.INTERNAL}


async def test_command_event_command_chain_is_a_tree_of_parent_and_child_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    await order_bus(provider).send(PlaceOrder(sku="A-1"))

    spans = spans_by_name(exporter)
    place, placed, reserve = (
        spans["process PlaceOrder"],
        spans["process OrderPlaced"],
        spans["process ReserveStock"],
    )
    assert place.parent is None
    assert placed.parent is not None and placed.parent.span_id == place.context.span_id
    assert reserve.parent is not None and reserve.parent.span_id == placed.context.span_id
    assert place.context.trace_id == placed.context.trace_id == reserve.context.trace_id


async def test_span_attributes_are_the_business_fields_and_messaging_conventions(
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
        "requested_by": "ada@example.com",
        "requested_at": command.requested_at.isoformat(),
        "cqrs.type": "command",
        "cqrs.name": "PlaceOrder",
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
        "requested_by": "ada@example.com",
        "requested_at": event.requested_at.isoformat(),
        "cqrs.type": "event",
        "cqrs.name": "OrderPlaced",
        "messaging.system": "python-cqrs-core",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "OrderPlaced",
        "messaging.message.id": str(event.request_id),
        "messaging.message.conversation_id": "checkout-42",
    }


async def test_root_message_without_correlation_id_is_correlated_by_its_own_request_id(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    command = PlaceOrder(sku="A-1")

    await order_bus(provider).send(command)

    attributes = spans_by_name(exporter)["process ReserveStock"].attributes or {}
    assert attributes["business.correlation_id"] == str(command.request_id)
    assert attributes["messaging.message.conversation_id"] == str(command.request_id)


async def test_failing_handler_marks_span_error_records_exception_and_reraises_it(
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
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "OutOfStock: sku A-1 is out of stock"
    (exception_event,) = span.events
    assert exception_event.name == "exception"
    assert (exception_event.attributes or {})["exception.type"].endswith("OutOfStock")
    assert (exception_event.attributes or {})["exception.message"] == "sku A-1 is out of stock"


async def test_successful_handler_leaves_span_status_unset(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    await order_bus(provider).send(PlaceOrder(sku="A-1"))

    assert {span.status.status_code for span in exporter.get_finished_spans()} == {StatusCode.UNSET}


async def test_correlation_baggage_is_set_while_handling_and_removed_afterwards(
    provider: TracerProvider,
) -> None:
    bus = Mediator()
    instrument(bus, provider)
    seen: list[object] = []

    async def place(command: PlaceOrder) -> None:
        seen.append(baggage.get_baggage("correlation.id"))
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


async def test_trace_headers_inside_a_handler_carry_the_traceparent_of_its_span(
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

    (span,) = exporter.get_finished_spans()
    context = span.context
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
    producing = spans_by_name(exporter)["process OrderPlaced"]
    exporter.clear()

    # Consumer: another bus (another process, later) handles the recorded event.
    consumer = order_bus(provider)
    event, headers = recorded[0]
    with TracingMiddleware.consume(headers):
        await consumer.publish(event)

    spans = spans_by_name(exporter)
    consumed, caused = spans["process OrderPlaced"], spans["process ReserveStock"]
    assert consumed.kind is SpanKind.CONSUMER
    assert consumed.context.trace_id == producing.context.trace_id
    assert consumed.parent is not None
    assert consumed.parent.span_id == producing.context.span_id
    assert consumed.parent.is_remote
    assert caused.kind is SpanKind.INTERNAL
    assert caused.parent is not None and caused.parent.span_id == consumed.context.span_id
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_consume_without_a_traceparent_starts_a_new_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = order_bus(provider)

    with TracingMiddleware.consume({}):
        await bus.send(ReserveStock(order_id=7))

    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.CONSUMER
    assert span.parent is None


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
    assert len(spans) == 150
    by_id = {span.context.span_id: span for span in spans}
    for span in spans:
        attributes = span.attributes or {}
        root = span
        while root.parent is not None:
            root = by_id[root.parent.span_id]
        root_sku = (root.attributes or {})["business.correlation_id"]
        assert attributes["business.correlation_id"] == root_sku
        assert attributes["messaging.message.conversation_id"] == root_sku
        assert span.context.trace_id == root.context.trace_id
    assert len({span.context.trace_id for span in spans}) == 50


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

    (span,) = exporter.get_finished_spans()
    payload = {
        key: value for key, value in (span.attributes or {}).items() if key.startswith("cqrs.")
    }
    assert payload == {
        "cqrs.type": "command",
        "cqrs.name": "CreateInvite",
        "cqrs.payload.email": "***",
        "cqrs.payload.expires_in_days": 7,
        "cqrs.payload.tags": json.dumps(["a", "b"], separators=(",", ":")),
    }
    assert "ada@example.com" not in repr(span.to_json())


async def test_payload_is_not_recorded_by_default(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    await order_bus(provider).send(PlaceOrder(sku="A-1"))

    keys = {key for span in exporter.get_finished_spans() for key in (span.attributes or {})}
    assert not [key for key in keys if key.startswith("cqrs.payload.")]


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


async def test_tracers_are_resolved_once_per_kind_not_per_dispatch(
    provider: TracerProvider,
) -> None:
    requested: list[tuple[Any, ...]] = []

    class CountingProvider(trace.TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
            requested.append(args)
            return provider.get_tracer(*args, **kwargs)

    bus = order_bus(CountingProvider())
    for _ in range(3):
        await bus.send(PlaceOrder(sku="A-1"))
        await bus.query(GetOrder(order_id=7))

    assert sorted(name for name, *_ in requested) == ["cqrs.events", "cqrs.read", "cqrs.write"]


async def test_instrument_adds_the_middleware_to_the_bus_and_returns_it(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    middleware = instrument(bus, provider)

    async def get_order(query: GetOrder) -> int:
        return query.order_id

    bus.register(GetOrder, get_order)
    await bus.query(GetOrder(order_id=7))

    assert isinstance(middleware, TracingMiddleware)
    assert [span.name for span in exporter.get_finished_spans()] == ["process GetOrder"]


def test_attach_cqrs_context_sets_the_business_attributes_on_any_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    parent = PlaceOrder(sku="A-1", correlation_id="checkout-42")
    event = OrderPlaced(
        order_id=7,
        correlation_id=parent.correlation_id,
        causation_id=parent.request_id,
    )

    with provider.get_tracer("test").start_as_current_span("work") as span:
        attach_cqrs_context(span, event)

    (finished,) = exporter.get_finished_spans()
    assert dict(finished.attributes or {}) == {
        "business.request_id": str(event.request_id),
        "business.correlation_id": "checkout-42",
        "business.causation_id": str(parent.request_id),
        "requested_at": event.requested_at.isoformat(),
        "cqrs.type": "event",
        "cqrs.name": "OrderPlaced",
    }
    assert UUID(str(finished.attributes["business.request_id"])) == event.request_id


async def test_cancelled_handler_ends_its_span_without_error_and_detaches_the_baggage(
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

    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()
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
            assert names == ["process Ping"], names
            print("ok")

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
