"""Wire headers of a dispatch: the W3C trace context that travels with a message.

A message recorded in a store, or sent through a broker, carries the trace context
of the span that dispatched it (``traceparent``, and ``baggage`` when set), so that
whoever handles it later or in another process continues the same trace.

:func:`trace_headers` reads that context from OpenTelemetry when ``opentelemetry-api``
is installed (the ``[otel]`` extra) and returns ``{}`` otherwise, or when no span is
recording.  The core never needs OpenTelemetry: the import is attempted once, lazily.

>>> isinstance(trace_headers(), dict)
True
"""

from __future__ import annotations

from ._optional_otel import otel_api

__all__ = ["TRACEPARENT", "trace_headers"]

TRACEPARENT = "traceparent"


def trace_headers() -> dict[str, str]:
    """The W3C headers (``traceparent``, ``tracestate``, ``baggage``) of the current
    OpenTelemetry context, or ``{}`` without OpenTelemetry or an active span."""
    api = otel_api()
    if api is None or not api.get_current():
        # An empty context holds no span and no baggage: nothing to propagate, and
        # running the propagators to find that out costs several microseconds.
        return {}
    carrier: dict[str, str] = {}
    api.inject(carrier)
    return carrier
