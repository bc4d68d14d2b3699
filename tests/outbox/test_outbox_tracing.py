"""The relay's spans: ``outbox.process`` per round (ids "when uniform"), and an
``outbox.publish`` PRODUCER span per entry, child of the span that dispatched the
message and linked to its round; the published traceparent is the producer span's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from outbox_testing import RecordingTransport, SQLiteBackend, StockReserved

from python_cqrs_core.names import (
    ATTR_CAUSATION_ID,
    ATTR_CORRELATION_ID,
    ATTR_MESSAGING_BATCH_COUNT,
    ATTR_MESSAGING_DESTINATION_NAME,
    ATTR_MESSAGING_SYSTEM,
    SPAN_OUTBOX_PROCESS,
    SPAN_OUTBOX_PUBLISH,
)
from python_cqrs_core.outbox import OutboxRelay


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider
    tracer_provider.shutdown()


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_each_publish_is_a_producer_span_under_the_dispatching_span_and_its_round(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
):
    backend = await SQLiteBackend.open(tmp_path / "cqrs.db")
    transport = RecordingTransport()
    try:
        tracer = provider.get_tracer("the application")
        with tracer.start_as_current_span("POST /orders") as request_span:
            await backend.bus.publish(StockReserved(order_id=1, correlation_id="op-1"))
        relay = OutboxRelay(backend.storage, transport, tracer_provider=provider)
        assert await relay.run_once() == 1
    finally:
        await backend.close()

    spans = exporter.get_finished_spans()
    [round_span] = named(spans, SPAN_OUTBOX_PROCESS)
    [publish] = named(spans, SPAN_OUTBOX_PUBLISH)
    assert round_span.kind is SpanKind.INTERNAL
    assert round_span.attributes[ATTR_MESSAGING_BATCH_COUNT] == 1
    assert round_span.attributes[ATTR_CORRELATION_ID] == "op-1"  # uniform: one entry
    assert ATTR_CAUSATION_ID not in round_span.attributes  # a root has no cause

    assert publish.kind is SpanKind.PRODUCER
    request = request_span.get_span_context()
    assert publish.parent is not None and publish.parent.span_id == request.span_id
    assert publish.context.trace_id == request.trace_id
    assert [link.context.span_id for link in publish.links] == [round_span.context.span_id]
    assert publish.attributes[ATTR_MESSAGING_DESTINATION_NAME] == "inventory.events"
    assert publish.attributes[ATTR_MESSAGING_SYSTEM] == "memory"
    assert publish.attributes[ATTR_CORRELATION_ID] == "op-1"

    traceparent = transport.published[0].headers["traceparent"]
    assert traceparent.split("-")[1:3] == [
        f"{publish.context.trace_id:032x}",
        f"{publish.context.span_id:016x}",
    ]


async def test_a_round_over_several_correlations_leaves_the_correlation_attribute_out(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
):
    backend = await SQLiteBackend.open(tmp_path / "cqrs.db")
    try:
        for correlation in ("op-1", "op-2"):
            await backend.bus.publish(StockReserved(order_id=1, correlation_id=correlation))
        relay = OutboxRelay(backend.storage, RecordingTransport(), tracer_provider=provider)
        assert await relay.run_once() == 2
    finally:
        await backend.close()

    [round_span] = named(exporter.get_finished_spans(), SPAN_OUTBOX_PROCESS)
    assert round_span.attributes[ATTR_MESSAGING_BATCH_COUNT] == 2
    assert ATTR_CORRELATION_ID not in round_span.attributes
    assert {
        s.attributes[ATTR_CORRELATION_ID]
        for s in named(exporter.get_finished_spans(), SPAN_OUTBOX_PUBLISH)
    } == {"op-1", "op-2"}


async def test_a_failed_publish_marks_its_span_as_an_error(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
):
    backend = await SQLiteBackend.open(tmp_path / "cqrs.db")
    transport = RecordingTransport()
    transport.down = True
    try:
        await backend.bus.publish(StockReserved(order_id=1))
        relay = OutboxRelay(backend.storage, transport, tracer_provider=provider)
        assert await relay.run_once() == 0
    finally:
        await backend.close()
    [publish] = named(exporter.get_finished_spans(), SPAN_OUTBOX_PUBLISH)
    assert not publish.status.is_ok
    assert publish.attributes["error.type"] == "python_cqrs_core.transports.base.TransportError"
