"""OpenTelemetry tracing for the mediator: one span per handled message.

Install the ``[otel]`` extra (``opentelemetry-api``; add ``opentelemetry-sdk`` and an
exporter in the application) and instrument the bus once, before other middleware so
that their work happens inside the span::

    from python_cqrs_core.integrations.otel import instrument

    bus = Mediator()
    instrument(bus)                    # the global tracer provider
    instrument(bus, tracer_provider)   # or an explicit one

Every command, query and event dispatched through the bus is then handled inside a
span named ``process <MessageType>`` on the tracer ``cqrs.write`` (commands),
``cqrs.read`` (queries) or ``cqrs.events`` (events).  The span carries the message's
business fields (:func:`attach_cqrs_context`, the guide's Pattern 1) and the OTel
messaging conventions; while the handler runs the span is current and the baggage
entry ``correlation.id`` is set, so a command sent from an event handler gets a
child span, and outgoing HTTP calls carry both the ``traceparent`` and the
correlation id (the guide's Patterns 3 and 4, with no code in the handler).

A message handled later or in another process continues the trace: while its span is
current, :func:`python_cqrs_core.headers.trace_headers` returns the span's
``traceparent``, which the message store records with the message; the consumer
handles it inside :meth:`TracingMiddleware.consume`, which makes the new handler span
a ``CONSUMER`` child of the recorded one::

    with TracingMiddleware.consume(record.headers):
        await bus.process(record.message)

With no SDK configured, OpenTelemetry hands out a no-op span: the middleware sees that
it records nothing and continues no trace, and calls the next step directly, with no
attributes, baggage or context switch (about a microsecond per dispatch; with an
explicit ``NoOpTracerProvider`` it does not even start the span; measured in
``docs/observability/opentelemetry.md``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Final, NamedTuple

from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.propagate import extract
from opentelemetry.trace import (
    INVALID_SPAN,
    NoOpTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
    get_tracer_provider,
)
from opentelemetry.util.types import AttributeValue

from .._version import __version__
from ..mediator import CallNext, Mediator
from ..messages import BaseMessage, MessageKind
from ..pii import redacted_payload

__all__ = [
    "BAGGAGE_CORRELATION_ID",
    "BUSINESS_CAUSATION_ID",
    "BUSINESS_CORRELATION_ID",
    "BUSINESS_REQUEST_ID",
    "CQRS_NAME",
    "CQRS_PAYLOAD_PREFIX",
    "CQRS_TYPE",
    "MESSAGING_CONVERSATION_ID",
    "MESSAGING_DESTINATION_NAME",
    "MESSAGING_MESSAGE_ID",
    "MESSAGING_OPERATION_NAME",
    "MESSAGING_OPERATION_TYPE",
    "MESSAGING_SYSTEM",
    "MESSAGING_SYSTEM_VALUE",
    "PROCESS",
    "REQUESTED_AT",
    "REQUESTED_BY",
    "TRACER_NAMES",
    "TracingMiddleware",
    "attach_cqrs_context",
    "context_from_headers",
    "instrument",
]

# -- names: every attribute, tracer and baggage key the module emits -------------------

# The guide's business attributes (Pattern 1), plus causation.
BUSINESS_REQUEST_ID: Final = "business.request_id"
BUSINESS_CORRELATION_ID: Final = "business.correlation_id"
BUSINESS_CAUSATION_ID: Final = "business.causation_id"
REQUESTED_BY: Final = "requested_by"
REQUESTED_AT: Final = "requested_at"
CQRS_TYPE: Final = "cqrs.type"
CQRS_NAME: Final = "cqrs.name"
CQRS_PAYLOAD_PREFIX: Final = "cqrs.payload."

# OpenTelemetry messaging semantic conventions.
MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
MESSAGING_CONVERSATION_ID: Final = "messaging.message.conversation_id"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"

MESSAGING_SYSTEM_VALUE: Final = "python-cqrs-core"
PROCESS: Final = "process"

BAGGAGE_CORRELATION_ID: Final = "correlation.id"
"""The baggage entry holding the correlation id while a message is handled."""

TRACER_NAMES: Final[Mapping[MessageKind, str]] = {
    "command": "cqrs.write",
    "query": "cqrs.read",
    "event": "cqrs.events",
}
"""The tracer (instrumentation scope) of each kind of message: the guide's separate
write and read tracers, and one for events."""

# The tracing fields of every message: attributes of their own, never payload.
_TRACING_FIELDS: Final = frozenset(BaseMessage.model_fields)

# Set by TracingMiddleware.consume: the next message handled here came from a store
# or broker, so its span is a CONSUMER span.
_consuming: ContextVar[bool] = ContextVar("cqrs_otel_consuming", default=False)


def attach_cqrs_context(span: Span, message: BaseMessage) -> None:
    """Attach a message's business fields to ``span``: the guide's Pattern 1.

    Sets ``business.request_id``, ``business.correlation_id`` and ``requested_by``
    (when set), ``requested_at`` (ISO 8601), ``cqrs.type`` (``"command"``,
    ``"query"`` or ``"event"``) and ``cqrs.name`` (the class name), plus
    ``business.causation_id`` when the message has a cause::

        with tracer.start_as_current_span("CreateInvite") as span:
            attach_cqrs_context(span, command)
    """
    span.set_attributes(_business_attributes(message))


def _business_attributes(message: BaseMessage) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {BUSINESS_REQUEST_ID: str(message.request_id)}
    if message.correlation_id is not None:
        attributes[BUSINESS_CORRELATION_ID] = str(message.correlation_id)
    if message.causation_id is not None:
        attributes[BUSINESS_CAUSATION_ID] = str(message.causation_id)
    if message.requested_by:
        attributes[REQUESTED_BY] = message.requested_by
    attributes[REQUESTED_AT] = message.requested_at.isoformat()
    attributes[CQRS_TYPE] = message.message_kind
    attributes[CQRS_NAME] = type(message).__name__
    return attributes


def context_from_headers(headers: Mapping[str, str]) -> Context:
    """The OpenTelemetry context carried by a message's wire headers.

    ``headers`` are what :func:`python_cqrs_core.headers.trace_headers` returned when
    the message was dispatched (``traceparent``, ``tracestate``, ``baggage``, lower
    case).  Extraction uses the globally configured propagator (W3C trace context and
    baggage by default) and starts from an empty context, so nothing of the
    consumer's own context leaks in.  Missing or malformed headers give a context
    with no parent span: the handler span then starts a new trace.
    """
    return extract(headers)


class _Route(NamedTuple):
    tracer: Tracer
    span_name: str
    # Returns True while no SDK is configured for this tracer (None: cannot tell).
    unconfigured: Callable[[], bool] | None


def _unconfigured_check(tracer: Tracer) -> Callable[[], bool] | None:
    """A cheap test for "no SDK is configured yet" on the global proxy tracer.

    Until an SDK provider is set, ``get_tracer`` hands out a ``ProxyTracer`` whose
    spans are no-ops; asking the public API (``get_tracer_provider()``) costs about
    a microsecond per dispatch because it consults the environment.  The proxy
    keeps its real tracer and the global provider in two attributes; reading them
    costs tens of nanoseconds.  They are OpenTelemetry internals, so this only
    applies when they look as expected, and otherwise (``None``) the middleware
    starts a span and checks it, which is always correct.  As soon as a provider is
    set, the check turns False for good and spans are recorded.
    """
    if type(tracer) is not trace.ProxyTracer or not hasattr(tracer, "_real_tracer"):
        return None
    if not hasattr(trace, "_TRACER_PROVIDER"):
        return None
    module = trace

    def unconfigured() -> bool:
        return tracer._real_tracer is None and module._TRACER_PROVIDER is None

    return unconfigured


class TracingMiddleware:
    """Mediator middleware that handles every message inside its own span.

    ``tracer_provider`` defaults to the global one (OpenTelemetry resolves it lazily,
    so instrumenting before the SDK is configured is fine).  With an explicit
    ``NoOpTracerProvider`` the middleware only calls the next step.  With
    ``record_payload=True`` the message's own fields are added as
    ``cqrs.payload.<field>`` attributes, with fields declared
    :data:`~python_cqrs_core.PII` replaced by ``"***"``.

    A failing handler sets the span status to ``ERROR`` and records the exception;
    the exception reaches the caller unchanged.  Cancellation (``BaseException``)
    ends the span without marking it as an error, as OpenTelemetry itself does.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, record_payload: bool = False
    ) -> None:
        self.record_payload = record_payload
        self._noop = isinstance(tracer_provider, NoOpTracerProvider)
        provider = get_tracer_provider() if tracer_provider is None else tracer_provider
        self._tracers: dict[MessageKind, Tracer] = {
            kind: provider.get_tracer(name, __version__) for kind, name in TRACER_NAMES.items()
        }
        self._routes: dict[type, _Route] = {}

    async def __call__(self, message: BaseMessage, call_next: CallNext) -> Any:
        if self._noop:
            return await call_next(message)
        route = self._routes.get(message.__class__)
        if route is None:
            route = self._route(message)
        if route.unconfigured is not None and route.unconfigured():
            return await call_next(message)
        if _consuming.get():
            return await self._consume(message, call_next, route)
        span = route.tracer.start_span(route.span_name, kind=SpanKind.INTERNAL)
        if span is INVALID_SPAN or (
            not span.is_recording() and not span.get_span_context().is_valid
        ):
            # No SDK and no trace to continue: nothing to record or to propagate.
            return await call_next(message)
        return await self._handle_in(span, message, call_next)

    @staticmethod
    @contextlib.contextmanager
    def consume(headers: Mapping[str, str]) -> Iterator[None]:
        """Handle the next message as one received from a store or broker.

        Inside the block, the current context is the one carried by ``headers`` (see
        :func:`context_from_headers`), and a message dispatched there gets a
        ``CONSUMER`` span, child of the span whose ``traceparent`` the headers carry
        (same trace id, remote parent).  Messages it causes are handled in-process,
        as ``INTERNAL`` spans below it.  A plain (synchronous) context manager: use
        ``with`` in async code too.
        """
        token = otel_context.attach(context_from_headers(headers))
        flag = _consuming.set(True)
        try:
            yield
        finally:
            _consuming.reset(flag)
            otel_context.detach(token)

    async def _consume(self, message: BaseMessage, call_next: CallNext, route: _Route) -> Any:
        flag = _consuming.set(False)  # what it causes is dispatched in-process
        try:
            span = route.tracer.start_span(route.span_name, kind=SpanKind.CONSUMER)
            return await self._handle_in(span, message, call_next)
        finally:
            _consuming.reset(flag)

    async def _handle_in(self, span: Span, message: BaseMessage, call_next: CallNext) -> Any:
        if span.is_recording():
            span.set_attributes(self._attributes(message))
        correlation_id = str(message.effective_correlation_id)
        ctx = baggage.set_baggage(BAGGAGE_CORRELATION_ID, correlation_id)
        token = otel_context.attach(trace.set_span_in_context(span, ctx))
        try:
            return await call_next(message)
        except Exception as exc:
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def _route(self, message: BaseMessage) -> _Route:
        message_type = message.__class__
        tracer = self._tracers[message.message_kind]
        route = _Route(tracer, f"{PROCESS} {message_type.__name__}", _unconfigured_check(tracer))
        self._routes[message_type] = route
        return route

    def _attributes(self, message: BaseMessage) -> dict[str, AttributeValue]:
        attributes = _business_attributes(message)
        attributes[MESSAGING_SYSTEM] = MESSAGING_SYSTEM_VALUE
        attributes[MESSAGING_OPERATION_TYPE] = PROCESS
        attributes[MESSAGING_OPERATION_NAME] = PROCESS
        attributes[MESSAGING_DESTINATION_NAME] = type(message).__name__
        attributes[MESSAGING_MESSAGE_ID] = str(message.request_id)
        attributes[MESSAGING_CONVERSATION_ID] = str(message.effective_correlation_id)
        if self.record_payload:
            for name, value in redacted_payload(message).items():
                if name not in _TRACING_FIELDS and value is not None:
                    attributes[CQRS_PAYLOAD_PREFIX + name] = _attribute_value(value)
        return attributes


def _attribute_value(value: object) -> AttributeValue:
    """A JSON payload value as a span attribute: scalars as they are, the rest as JSON."""
    if isinstance(value, str | bool | int | float):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def instrument(
    bus: Mediator, tracer_provider: TracerProvider | None = None, *, record_payload: bool = False
) -> TracingMiddleware:
    """Add a :class:`TracingMiddleware` to ``bus`` (for every message) and return it.

    Call it before adding other middleware, so that their work is inside the span.
    """
    middleware = TracingMiddleware(tracer_provider, record_payload=record_payload)
    bus.add_middleware(middleware)
    return middleware
