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

from collections.abc import Callable, Mapping, MutableMapping

__all__ = ["TRACEPARENT", "trace_headers"]

TRACEPARENT = "traceparent"

_Inject = Callable[[MutableMapping[str, str]], None]
_otel: tuple[_Inject, Callable[[], Mapping[str, object]]] | None = None
_resolved = False


def _resolve() -> tuple[_Inject, Callable[[], Mapping[str, object]]] | None:
    global _otel, _resolved
    if not _resolved:
        try:
            from opentelemetry.context import get_current
            from opentelemetry.propagate import inject
        except ImportError:  # the [otel] extra is not installed
            _otel = None
        else:
            _otel = (inject, get_current)
        _resolved = True
    return _otel


def trace_headers() -> dict[str, str]:
    """The W3C headers (``traceparent``, ``tracestate``, ``baggage``) of the current
    OpenTelemetry context, or ``{}`` without OpenTelemetry or an active span."""
    otel = _resolve()
    if otel is None:
        return {}
    inject, get_current = otel
    if not get_current():
        # An empty context holds no span and no baggage: nothing to propagate, and
        # running the propagators to find that out costs several microseconds.
        return {}
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier
