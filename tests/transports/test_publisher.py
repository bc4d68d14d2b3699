"""Direct publishing and the spans around a message's trip: PRODUCER on publish,
CONSUMER on process, and every tracing field intact across Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from uuid import uuid4

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from transport_testing import OrderPlaced, ReserveStock, StockReserved, make_codec

from python_cqrs_core import Mediator
from python_cqrs_core.integrations.otel import instrument
from python_cqrs_core.transports import (
    Consumer,
    DirectPublisher,
    MemoryTransport,
    Routes,
    Transport,
    TransportError,
)
from python_cqrs_core.transports.redis import RedisTransport

CODEC = make_codec()
ROUTES = Routes({OrderPlaced: "orders", StockReserved: "stock"})


async def take_all(transport: Transport, destination: str) -> list[object]:
    """Every message of ``destination`` published so far, decoded."""
    await transport.ensure_group(destination, "probe")
    deliveries = await transport.receive(destination, "probe", "p", count=100, wait=0.2)
    return [CODEC.decode(d.headers, d.body).message for d in deliveries]


async def test_a_routed_message_is_published_after_its_local_handlers_with_its_ids():
    transport = MemoryTransport()
    await transport.ensure_group("orders", "probe")
    bus = Mediator()
    publisher = DirectPublisher(transport, CODEC, ROUTES)
    publisher.install(bus)
    handled: list[int] = []

    async def on_placed(event: OrderPlaced) -> None:
        assert await transport.lag("orders", "probe") == 0  # not published yet
        handled.append(event.order_id)

    async def place(command: ReserveStock) -> None:
        await bus.publish(OrderPlaced(order_id=command.order_id))

    bus.subscribe(OrderPlaced, on_placed)
    bus.register(ReserveStock, place)
    command = ReserveStock(order_id=4, correlation_id="req-4", requested_by="ada")
    await bus.send(command)

    [published] = await take_all(transport, "orders")
    assert handled == [4]
    assert isinstance(published, OrderPlaced)
    assert published.correlation_id == "req-4"
    assert published.causation_id == command.request_id
    assert published.requested_by == "ada"
    assert await take_all(transport, "stock") == []  # nothing else was routed


async def test_a_message_whose_local_handler_failed_is_not_published():
    transport = MemoryTransport()
    await transport.ensure_group("orders", "probe")
    bus = Mediator()
    DirectPublisher(transport, CODEC, ROUTES).install(bus)

    async def on_placed(event: OrderPlaced) -> None:
        raise ValueError("local failure")

    bus.subscribe(OrderPlaced, on_placed)
    with pytest.raises(ValueError, match="local failure"):
        await bus.publish(OrderPlaced(order_id=1))
    assert await transport.lag("orders", "probe") == 0


async def test_a_broker_that_refuses_the_message_fails_the_dispatch():
    transport = MemoryTransport()
    await transport.close()
    bus = Mediator()
    DirectPublisher(transport, CODEC, ROUTES).install(bus)
    with pytest.raises(TransportError):
        await bus.publish(OrderPlaced(order_id=1))


async def test_a_consumed_message_is_not_published_back_but_what_it_causes_is():
    transport = MemoryTransport()
    for destination in ("orders", "stock"):
        await transport.ensure_group(destination, "probe")
    bus = Mediator()
    DirectPublisher(transport, CODEC, ROUTES).install(bus)

    async def on_placed(event: OrderPlaced) -> None:
        await bus.publish(StockReserved(order_id=event.order_id))

    bus.subscribe(OrderPlaced, on_placed)
    consumer = Consumer(bus, transport, CODEC, "orders", "inventory", wait=0.05)
    await transport.ensure_group("orders", "inventory")
    event = OrderPlaced(order_id=8, correlation_id="req-8")
    headers, body = CODEC.encode(event, trace_context={})
    await transport.publish("orders", headers, body)
    await consumer.process_batch()

    assert [m.request_id for m in await take_all(transport, "orders")] == [event.request_id]
    [reserved] = await take_all(transport, "stock")
    assert isinstance(reserved, StockReserved)
    assert (reserved.correlation_id, reserved.causation_id) == ("req-8", event.request_id)


async def test_publish_of_a_message_that_is_not_routed_is_an_error():
    publisher = DirectPublisher(MemoryTransport(), CODEC, Routes())
    with pytest.raises(LookupError, match="not routed"):
        await publisher.publish(OrderPlaced(order_id=1))


# -- spans ----------------------------------------------------------------------------------


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider
    tracer_provider.shutdown()


async def test_publish_is_a_producer_span_and_processing_a_consumer_span_its_child(
    provider: TracerProvider, exporter: InMemorySpanExporter
):
    transport = MemoryTransport()
    producer = Mediator()
    instrument(producer, provider)
    DirectPublisher(transport, CODEC, ROUTES, tracer_provider=provider).install(producer)
    consumer_bus = Mediator()
    instrument(consumer_bus, provider)
    consumed: list[OrderPlaced] = []

    async def on_placed(event: OrderPlaced) -> None:
        consumed.append(event)

    consumer_bus.subscribe(OrderPlaced, on_placed)
    consumer = Consumer(
        consumer_bus, transport, CODEC, "orders", "billing", name="billing-1", wait=0.05
    )
    await transport.ensure_group("orders", "billing")
    event = OrderPlaced(order_id=1, correlation_id="req-1")
    await producer.publish(event)
    await consumer.process_batch()
    assert len(consumed) == 1

    [dispatched, processed] = [
        s for s in exporter.get_finished_spans() if s.name == "process OrderPlaced"
    ]
    [published] = [s for s in exporter.get_finished_spans() if s.name == "publish orders"]
    assert published.kind is SpanKind.PRODUCER
    assert published.parent is not None
    assert published.parent.span_id == dispatched.context.span_id
    attributes = dict(published.attributes or {})
    assert attributes["messaging.system"] == "memory"
    assert attributes["messaging.destination.name"] == "orders"
    assert attributes["messaging.operation.type"] == "publish"
    assert attributes["messaging.message.id"] == str(event.request_id)
    assert attributes["messaging.message.conversation_id"] == "req-1"

    assert processed.kind is SpanKind.CONSUMER
    assert processed.context.trace_id == published.context.trace_id
    assert processed.parent is not None and processed.parent.is_remote
    assert processed.parent.span_id == published.context.span_id
    consumer_attributes = dict(processed.attributes or {})
    assert consumer_attributes["messaging.system"] == "memory"
    assert consumer_attributes["messaging.destination.name"] == "orders"
    assert consumer_attributes["messaging.consumer.group.name"] == "billing"
    assert consumer_attributes["messaging.client.id"] == "billing-1"
    assert consumer_attributes["messaging.operation.type"] == "process"
    assert consumer_attributes["messaging.message.id"] == str(event.request_id)
    assert consumer_attributes["messaging.message.conversation_id"] == "req-1"
    [handler] = [s for s in exporter.get_finished_spans() if s.name.endswith("on_placed")]
    assert handler.parent is not None and handler.parent.span_id == processed.context.span_id


async def test_a_failed_publish_marks_its_producer_span_as_an_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
):
    transport = MemoryTransport()
    await transport.close()
    publisher = DirectPublisher(transport, CODEC, ROUTES, tracer_provider=provider)
    with pytest.raises(TransportError):
        await publisher.publish(OrderPlaced(order_id=1))
    [span] = exporter.get_finished_spans()
    assert span.name == "publish orders"
    assert span.status.status_code is trace.StatusCode.ERROR


# -- every tracing field through Redis --------------------------------------------------------


async def test_every_tracing_field_survives_the_trip_through_redis(
    make_redis_transport: Callable[..., RedisTransport],
):
    transport = make_redis_transport()
    await transport.ensure_group("orders", "billing")
    bus = Mediator()
    received: list[OrderPlaced] = []

    async def on_placed(event: OrderPlaced) -> None:
        received.append(event)

    bus.subscribe(OrderPlaced, on_placed)
    cause = uuid4()
    originals = [
        OrderPlaced(
            order_id=1,
            note='ünïcode ✓ "quoted" \n newline',
            correlation_id="gw-req-123/abc?x=1",
            causation_id=cause,
            requested_by="José Ñandú <jose@example.com> 100%",
        ),
        OrderPlaced(order_id=2, correlation_id=uuid4(), causation_id="opaque-cause"),
        OrderPlaced(order_id=3),
    ]
    trace_context = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=value,other=1",
        "baggage": "tenant=acme,region=eu",
    }
    sent = []
    for original in originals:
        headers, body = CODEC.encode(original, trace_context=trace_context)
        sent.append(headers)
        await transport.publish("orders", headers, body)
    deliveries = await transport.receive("orders", "billing", "b-1", count=10, wait=1)
    assert [dict(d.headers) for d in deliveries] == sent
    decoded = [CODEC.decode(d.headers, d.body) for d in deliveries]
    assert [d.trace_context for d in decoded] == [trace_context] * 3
    # and decoded by a consumer, into the very messages that were published
    await transport.ensure_group("orders", "other")
    for original in originals:
        headers, body = CODEC.encode(original, trace_context=trace_context)
        await transport.publish("orders", headers, body)
    consumer = Consumer(bus, transport, CODEC, "orders", "other", wait=0.1)
    while len(received) < 3:
        await consumer.process_batch()
    for original, message in zip(originals, received, strict=True):
        # the business fields, and the tracing fields one by one (the third message
        # was never dispatched: its correlation id is its own id, as its dispatch would say)
        assert message.model_dump(exclude={"correlation_id"}) == original.model_dump(
            exclude={"correlation_id"}
        )
        assert message.request_id == original.request_id
        assert message.correlation_id == original.effective_correlation_id
        assert message.causation_id == original.causation_id
        assert message.requested_by == original.requested_by
        assert message.requested_at == original.requested_at
