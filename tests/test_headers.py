"""Trace headers: the W3C trace context that travels with a dispatched message."""

from __future__ import annotations

import re
import sys

import pytest
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import TracerProvider

from python_cqrs_core import _optional_otel
from python_cqrs_core.headers import TRACEPARENT, trace_headers

TRACEPARENT_FORMAT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@pytest.fixture
def tracer():
    # A private provider: the global one belongs to whoever configures the process.
    return TracerProvider().get_tracer("tests.headers")


def test_no_active_span_gives_no_headers():
    assert trace_headers() == {}


def test_an_active_span_gives_its_traceparent(tracer):
    with tracer.start_as_current_span("dispatch") as span:
        found = trace_headers()
    match = TRACEPARENT_FORMAT.fullmatch(found[TRACEPARENT])
    assert match is not None
    span_context = span.get_span_context()
    assert match.group(1) == format(span_context.trace_id, "032x")
    assert match.group(2) == format(span_context.span_id, "016x")
    assert int(match.group(3), 16) & 0x01  # sampled


def test_baggage_travels_with_the_trace(tracer):
    token = context.attach(baggage.set_baggage("correlation.id", "ext-123"))
    try:
        with tracer.start_as_current_span("dispatch"):
            found = trace_headers()
    finally:
        context.detach(token)
    assert TRACEPARENT in found
    assert found["baggage"] == "correlation.id=ext-123"


def test_each_call_returns_a_fresh_dict(tracer):
    with tracer.start_as_current_span("dispatch"):
        first = trace_headers()
        first["x"] = "y"
        assert "x" not in trace_headers()


def test_without_opentelemetry_installed_the_headers_are_empty(monkeypatch, tracer):
    monkeypatch.setattr(_optional_otel, "_resolved", False)
    monkeypatch.setattr(_optional_otel, "_api", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.propagate", None)  # import fails
    with tracer.start_as_current_span("dispatch"):
        assert trace_headers() == {}
        assert trace_headers() == {}  # resolved once, still empty
        assert _optional_otel.recording_span() is None
    assert _optional_otel._resolved is True
    assert _optional_otel.otel_api() is None


def test_baggage_alone_is_propagated_without_a_span():
    from opentelemetry import baggage, context

    token = context.attach(baggage.set_baggage("correlation.id", "req-1"))
    try:
        assert trace_headers() == {"baggage": "correlation.id=req-1"}
    finally:
        context.detach(token)
    assert trace_headers() == {}
