"""OpenTelemetry spans of consumers and publishers, when ``opentelemetry-api`` is there.

The consumer and the direct publisher work without the ``[otel]`` extra; with it, they
open their spans through :mod:`python_cqrs_core.integrations.otel`.  That module is
imported here once, lazily, the first time a span could be opened, so importing a
transport never imports OpenTelemetry (``tests/test_layout.py`` checks it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

from ..messages import BaseMessage
from ..names import SPAN_PROCESS

_otel: ModuleType | None = None
_resolved = False


def _integration() -> ModuleType | None:
    global _otel, _resolved
    if not _resolved:
        try:
            from ..integrations import otel
        except ImportError:  # the [otel] extra is not installed
            _otel = None
        else:
            _otel = otel
        _resolved = True
    return _otel


def consuming(
    trace_context: Mapping[str, str],
    message: BaseMessage,
    *,
    system: str,
    destination: str,
    group: str,
    consumer: str,
) -> AbstractContextManager[Any]:
    """The block in which a consumer dispatches ``message``: with OpenTelemetry, the
    bus's tracing middleware (if the bus is instrumented) opens the message's span as a
    ``CONSUMER`` child of the producer's context ``trace_context``, with the messaging
    attributes of this delivery."""
    otel = _integration()
    if otel is None:
        return contextlib.nullcontext()
    attributes = otel.messaging_attributes(
        system=system,
        destination=destination,
        operation=SPAN_PROCESS,
        message=message,
        consumer_group=group,
        client_id=consumer,
    )
    manager: AbstractContextManager[Any] = otel.TracingMiddleware.consume(
        trace_context, attributes=attributes
    )
    return manager


def publishing(
    message: BaseMessage, *, system: str, destination: str, tracer_provider: object | None
) -> AbstractContextManager[Any]:
    """The block in which ``message`` is encoded and published: with OpenTelemetry, a
    ``PRODUCER`` span whose context the codec writes into the headers."""
    otel = _integration()
    if otel is None:
        return contextlib.nullcontext()
    manager: AbstractContextManager[Any] = otel.publishing(
        message, system=system, destination=destination, tracer_provider=tracer_provider
    )
    return manager
