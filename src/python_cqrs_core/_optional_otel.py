"""The few OpenTelemetry API functions that non-integration modules use, if installed.

:mod:`~python_cqrs_core.headers`, :mod:`~python_cqrs_core.integrations.logging` and
:mod:`~python_cqrs_core.integrations.audit` add trace context when ``opentelemetry-api`` (the
``[otel]`` extra) is installed and work without it.  They all ask here: the import is
attempted once, lazily, so importing them never imports OpenTelemetry, and a process
without it pays one failed import, once.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, NamedTuple

__all__ = ["OtelApi", "otel_api", "recording_span"]


class OtelApi(NamedTuple):
    get_current: Callable[[], Any]  # the current Context (a dict; empty = nothing attached)
    get_current_span: Callable[[], Any]
    inject: Callable[[MutableMapping[str, str]], None]


_api: OtelApi | None = None
_resolved = False


def otel_api() -> OtelApi | None:
    """The OpenTelemetry API functions, or ``None`` when it is not installed."""
    global _api, _resolved
    if not _resolved:
        try:
            from opentelemetry.context import get_current
            from opentelemetry.propagate import inject
            from opentelemetry.trace import get_current_span
        except ImportError:  # the [otel] extra is not installed
            _api = None
        else:
            _api = OtelApi(get_current, get_current_span, inject)
        _resolved = True
    return _api


def recording_span() -> Any | None:
    """The current span if one is recording, else ``None`` (also without OpenTelemetry).

    An empty context holds no span: checking that first is exact and much cheaper
    than asking for the current span.
    """
    api = otel_api()
    if api is None or not api.get_current():
        return None
    span = api.get_current_span()
    return span if span.is_recording() else None
