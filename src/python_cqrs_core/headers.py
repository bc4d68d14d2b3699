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

from collections.abc import Callable, MutableMapping

__all__ = ["TRACEPARENT", "trace_headers"]

TRACEPARENT = "traceparent"

_inject: Callable[[MutableMapping[str, str]], None] | None = None
_resolved = False


def _resolve() -> Callable[[MutableMapping[str, str]], None] | None:
    global _inject, _resolved
    if not _resolved:
        try:
            from opentelemetry.propagate import inject
        except ImportError:  # the [otel] extra is not installed
            _inject = None
        else:
            _inject = inject
        _resolved = True
    return _inject


def trace_headers() -> dict[str, str]:
    """The W3C headers (``traceparent``, ``tracestate``, ``baggage``) of the current
    OpenTelemetry context, or ``{}`` without OpenTelemetry or an active span."""
    inject = _resolve()
    if inject is None:
        return {}
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier
