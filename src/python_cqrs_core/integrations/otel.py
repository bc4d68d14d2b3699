"""OpenTelemetry tracing for the mediator: a span per message, a span per handler.

Install the ``[otel]`` extra (``opentelemetry-api``; add ``opentelemetry-sdk`` and an
exporter in the application) and instrument the bus once, before other middleware so
that their work happens inside the spans::

    from python_cqrs_core.integrations.otel import instrument, uninstrument

    bus = Mediator()
    instrument(bus)                     # the global tracer provider
    instrument(bus, tracer_provider)    # or an explicit one
    uninstrument(bus)                   # and back to no tracing

Every command, query and event dispatched through the bus is then handled inside a
span named ``process <MessageType>``, and each of its handlers (each subscriber of an
event) inside a child span ``handle <HandlerName>``.  All spans come from one tracer,
the instrumentation scope :data:`~python_cqrs_core.names.INSTRUMENTATION_SCOPE`,
versioned with the library and carrying :data:`~python_cqrs_core.names.SCHEMA_URL`;
the kind of message is the ``cqrs.type`` attribute.  Message spans carry the
message's ids (never its author unless asked: ``record_enduser=True`` adds
``enduser.id``) and the OTel messaging conventions; a failure sets ``ERROR``, records
the exception and sets ``error.type`` on the span of the handler that raised and on
the message's span.

While a message is handled its spans are current and the baggage entry
``correlation.id`` is set, so a command sent from an event handler gets a child span,
and outgoing HTTP calls carry both the ``traceparent`` and the correlation id.

A message handled later or in another process continues the trace: while a handler
runs, :func:`python_cqrs_core.headers.trace_headers` returns its span's
``traceparent``, which the message store records with what the handler causes; the
consumer handles a recorded message inside :meth:`TracingMiddleware.consume`, which
makes its span a ``CONSUMER`` child of the recorded one::

    with TracingMiddleware.consume(record.headers):
        await bus.process(record.to_message(registry))

With no SDK configured, OpenTelemetry hands out no-op spans: the middleware sees that
nothing is configured and calls the next step directly, with no span, attributes,
baggage or context switch (measured in ``docs/observability/opentelemetry.md``).
"""

from __future__ import annotations

import contextlib
import json
import traceback
import weakref
from collections.abc import Awaitable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Final

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

from .. import names
from .._version import __version__
from ..errors import CQRSError, exception_message
from ..mediator import CallNext, HandlerMiddleware, Mediator, Middleware
from ..messages import BaseMessage, TracingFields, tracing_fields
from ..pii import redacted_payload

__all__ = [
    "AlreadyInstrumentedError",
    "TracingMiddleware",
    "attach_cqrs_context",
    "context_from_headers",
    "error_type",
    "instrument",
    "messaging_attributes",
    "publishing",
    "uninstrument",
]

# The tracing fields of every message: attributes of their own, never payload.
_TRACING_FIELDS: Final = frozenset(BaseMessage.model_fields)

# Set by TracingMiddleware.consume: the next message handled here came from a store
# or broker, so its span is a CONSUMER span.
_consuming: ContextVar[bool] = ContextVar("cqrs_otel_consuming", default=False)
# Set with it by a broker consumer: the messaging attributes of that CONSUMER span
# (the broker, the destination, the consumer group), which replace the defaults.
_consumer_attributes: ContextVar[Mapping[str, AttributeValue] | None] = ContextVar(
    "cqrs_otel_consumer_attributes", default=None
)

# What instrument() installed on each bus (weak: a bus that is dropped is forgotten).
_installed: weakref.WeakKeyDictionary[Mediator, tuple[Middleware | HandlerMiddleware, ...]] = (
    weakref.WeakKeyDictionary()
)


class AlreadyInstrumentedError(CQRSError, ValueError):
    """:func:`instrument` was called on a bus it already instrumented.

    Instrumenting twice would trace every message twice; with other arguments it
    would also leave the first ones in force.  Call :func:`uninstrument` first to
    change the configuration.
    """


def attach_cqrs_context(span: Span, message: BaseMessage) -> None:
    """Attach a message's business fields to ``span``: the guide's Pattern 1.

    Sets ``business.request_id``, ``business.correlation_id`` and ``requested_by``
    (each when set), ``requested_at`` (ISO 8601), ``cqrs.type`` (``"command"``,
    ``"query"`` or ``"event"``) and ``cqrs.name`` (the class name), plus
    ``business.causation_id`` when the message has a cause.  Calling it is the
    application's choice to put ``requested_by`` (personal data) on its own span;
    the automatic spans leave it out unless asked (see :func:`instrument`)::

        with tracer.start_as_current_span("CreateInvite") as span:
            attach_cqrs_context(span, command)
    """
    fields = tracing_fields(message)
    attributes: dict[str, AttributeValue] = {names.ATTR_REQUEST_ID: fields.request_id}
    if message.correlation_id is not None:  # as the guide: only one the message has
        attributes[names.ATTR_CORRELATION_ID] = fields.correlation_id
    if fields.causation_id is not None:
        attributes[names.ATTR_CAUSATION_ID] = fields.causation_id
    if fields.requested_by:
        attributes[names.ATTR_REQUESTED_BY] = fields.requested_by
    attributes[names.ATTR_REQUESTED_AT] = fields.requested_at
    attributes[names.ATTR_CQRS_TYPE] = fields.kind
    attributes[names.ATTR_CQRS_NAME] = type(message).__name__
    span.set_attributes(attributes)


def context_from_headers(headers: Mapping[str, str]) -> Context:
    """The OpenTelemetry context carried by a message's wire headers.

    ``headers`` are what :func:`python_cqrs_core.headers.trace_headers` returned when
    the message was dispatched (``traceparent``, ``tracestate``, ``baggage``, lower
    case).  Extraction uses the globally configured propagator (W3C trace context and
    baggage by default) and starts from an empty context, so nothing of the
    consumer's own context leaks in.  Missing or malformed headers give a context
    with no parent span: the handler span then starts a new trace::

        context = context_from_headers({"traceparent": record.traceparent})
    """
    return extract(headers)


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of an exception: its fully qualified class name.

    ``module.QualName``, as the semantic conventions ask (a canonical, low-cardinality
    name), except for built-in exceptions, whose canonical name has no module:

    >>> error_type(ValueError("bad"))
    'ValueError'
    >>> from python_cqrs_core import HandlerNotFoundError
    >>> error_type(HandlerNotFoundError("no handler"))
    'python_cqrs_core.errors.HandlerNotFoundError'
    """
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _fail(span: Span, exc: Exception) -> None:
    """Mark ``span`` as failed by ``exc``: ERROR status, the exception, ``error.type``.

    An exception whose ``__str__`` raises must reach the caller as it is, not be
    replaced by the SDK's failure to describe it: its text is a placeholder then
    (:func:`~python_cqrs_core.errors.exception_message`).
    """
    message = exception_message(exc)
    try:
        span.record_exception(exc)
    except Exception:  # noqa: BLE001 - the SDK called str(exc), which raised
        span.add_event(
            names.EXCEPTION_EVENT,
            {
                names.ATTR_EXCEPTION_TYPE: error_type(exc),
                names.ATTR_EXCEPTION_MESSAGE: message,
                names.ATTR_EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exc)),
            },
        )
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"))
    span.set_attribute(names.ATTR_ERROR_TYPE, error_type(exc))


def _unconfigured_proxy(tracer: Tracer) -> trace.ProxyTracer | None:
    """The tracer, if it is the global proxy and can cheaply tell "no SDK yet".

    Until an SDK provider is set, ``get_tracer`` on the global provider hands out a
    ``ProxyTracer`` whose spans are no-ops; asking the public API
    (``get_tracer_provider()``) costs about a microsecond per dispatch because it
    consults the environment.  The proxy keeps its real tracer and the global
    provider in two attributes (``_real_tracer``, ``trace._TRACER_PROVIDER``), both
    ``None`` until an SDK is set; reading them costs tens of nanoseconds.  They are
    OpenTelemetry internals, so this returns the proxy only when they look as
    expected; otherwise (``None``) the middleware starts a span and checks it, which
    is always correct.  As soon as a provider is set the check fails for good and
    spans are recorded.
    """
    if type(tracer) is not trace.ProxyTracer or not hasattr(tracer, "_real_tracer"):
        return None
    if not hasattr(trace, "_TRACER_PROVIDER"):
        return None
    return tracer


class TracingMiddleware:
    """Mediator middleware that handles every message inside its own span, and (through
    :attr:`handler_middleware`) runs each handler inside a child span.

    :func:`instrument` installs both; build one yourself to restrict it::

        tracing = TracingMiddleware(provider)
        bus.add_middleware(tracing, kinds=["command"])
        bus.add_handler_middleware(tracing.handler_middleware, kinds=["command"])

    ``tracer_provider`` defaults to the global one (OpenTelemetry resolves it lazily,
    so instrumenting before the SDK is configured is fine); the one tracer is
    :data:`~python_cqrs_core.names.INSTRUMENTATION_SCOPE` at the library's version
    with :data:`~python_cqrs_core.names.SCHEMA_URL`.  With an explicit
    ``NoOpTracerProvider`` the middleware only calls the next step.

    ``record_enduser=True`` adds ``requested_by`` to message spans as ``enduser.id``
    (it identifies a person: off by default).  ``record_payload=True`` adds the
    message's own fields as ``cqrs.payload.<field>`` attributes, with fields
    declared :data:`~python_cqrs_core.PII` replaced by ``"***"``.

    A failing handler sets its span and the message's span to ``ERROR``, records the
    exception and sets ``error.type``; the exception reaches the caller unchanged.
    Cancellation (``BaseException``) ends the spans without marking them as errors,
    as OpenTelemetry itself does.
    """

    handler_middleware: HandlerMiddleware
    """The handler middleware (``bus.add_handler_middleware``) that opens the span of
    each handler: ``handle <HandlerName>``, ``INTERNAL``, child of the message's."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        record_enduser: bool = False,
        record_payload: bool = False,
    ) -> None:
        self.record_enduser = record_enduser
        self.record_payload = record_payload
        self._noop = isinstance(tracer_provider, NoOpTracerProvider)
        provider = get_tracer_provider() if tracer_provider is None else tracer_provider
        self._tracer = provider.get_tracer(
            names.INSTRUMENTATION_SCOPE, __version__, schema_url=names.SCHEMA_URL
        )
        self._proxy = _unconfigured_proxy(self._tracer)
        self._span_names: dict[type, str] = {}
        self._handler_span_names: dict[str, str] = {}
        # Stored once: remove_middleware() finds middleware by identity.
        self.handler_middleware = self._trace_handler

    def __call__(self, message: BaseMessage, call_next: CallNext) -> Awaitable[Any]:
        # Nothing can be traced (a no-op provider, or the global proxy before any SDK
        # is set, see _unconfigured_proxy): hand back the next step's own awaitable,
        # so this middleware adds no coroutine of its own to the dispatch.  The same
        # check opens handler_middleware: it is the path of every dispatch without SDK.
        proxy = self._proxy
        if self._noop or (
            proxy is not None and proxy._real_tracer is None and trace._TRACER_PROVIDER is None
        ):
            return call_next(message)
        return self._trace_message(message, call_next)

    async def _trace_message(self, message: BaseMessage, call_next: CallNext) -> Any:
        span_name = self._span_names.get(message.__class__)
        if span_name is None:
            span_name = self._span_names[message.__class__] = (
                f"{names.SPAN_PROCESS} {message.__class__.__name__}"
            )
        if _consuming.get():
            return await self._consume(message, call_next, span_name)
        span = self._tracer.start_span(span_name, kind=SpanKind.INTERNAL)
        if span is INVALID_SPAN or (
            not span.is_recording() and not span.get_span_context().is_valid
        ):
            # No SDK and no trace to continue: nothing to record or to propagate.
            return await call_next(message)
        return await self._handle_in(span, message, call_next)

    @staticmethod
    @contextlib.contextmanager
    def consume(
        headers: Mapping[str, str],
        *,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> Iterator[None]:
        """Handle the next message as one received from a store or broker.

        Inside the block, the current context is the one carried by ``headers`` (see
        :func:`context_from_headers`), and a message dispatched there gets a
        ``CONSUMER`` span, child of the span whose ``traceparent`` the headers carry
        (same trace id, remote parent).  Its handlers' spans, and the messages they
        cause, are in-process again (``INTERNAL``).  A plain (synchronous) context
        manager: use ``with`` in async code too::

            with TracingMiddleware.consume(record.headers):
                await bus.process(record.to_message(registry))

        A broker consumer passes the ``attributes`` of the delivery (see
        :func:`messaging_attributes`: the broker, the destination, the consumer
        group); they are set on the ``CONSUMER`` span over the defaults.
        """
        token = otel_context.attach(context_from_headers(headers))
        flag = _consuming.set(True)
        extra = _consumer_attributes.set(attributes)
        try:
            yield
        finally:
            _consumer_attributes.reset(extra)
            _consuming.reset(flag)
            otel_context.detach(token)

    async def _consume(self, message: BaseMessage, call_next: CallNext, span_name: str) -> Any:
        flag = _consuming.set(False)  # what it causes is dispatched in-process
        extra = _consumer_attributes.set(None)
        try:
            span = self._tracer.start_span(span_name, kind=SpanKind.CONSUMER)
            return await self._handle_in(span, message, call_next, extra.old_value)
        finally:
            _consumer_attributes.reset(extra)
            _consuming.reset(flag)

    async def _handle_in(
        self,
        span: Span,
        message: BaseMessage,
        call_next: CallNext,
        extra: object = None,
    ) -> Any:
        fields = tracing_fields(message)
        if span.is_recording():
            span.set_attributes(self._message_attributes(message, fields))
            if isinstance(extra, Mapping):
                span.set_attributes(extra)
        ctx = baggage.set_baggage(names.BAGGAGE_CORRELATION_ID, fields.correlation_id)
        token = otel_context.attach(trace.set_span_in_context(span, ctx))
        try:
            return await call_next(message)
        except Exception as exc:
            if span.is_recording():
                _fail(span, exc)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def _trace_handler(
        self, message: BaseMessage, handler_name: str, call_next: CallNext
    ) -> Awaitable[Any]:
        proxy = self._proxy  # as in __call__
        if self._noop or (
            proxy is not None and proxy._real_tracer is None and trace._TRACER_PROVIDER is None
        ):
            return call_next(message)
        return self._trace_handler_call(message, handler_name, call_next)

    async def _trace_handler_call(
        self, message: BaseMessage, handler_name: str, call_next: CallNext
    ) -> Any:
        span_name = self._handler_span_names.get(handler_name)
        if span_name is None:
            span_name = self._handler_span_names[handler_name] = (
                f"{names.SPAN_HANDLER} {handler_name}"
            )
        span = self._tracer.start_span(span_name, kind=SpanKind.INTERNAL)
        if not span.is_recording():
            # Sampled out, or no SDK: the message's span already carries the trace
            # context to what the handler causes.
            return await call_next(message)
        fields = tracing_fields(message)
        attributes: dict[str, AttributeValue] = {
            names.ATTR_CQRS_HANDLER: handler_name,
            names.ATTR_CQRS_TYPE: fields.kind,
            names.ATTR_CQRS_MESSAGE_TYPE: fields.message_type,
            names.ATTR_REQUEST_ID: fields.request_id,
            names.ATTR_CORRELATION_ID: fields.correlation_id,
        }
        if fields.causation_id is not None:
            attributes[names.ATTR_CAUSATION_ID] = fields.causation_id
        span.set_attributes(attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            return await call_next(message)
        except Exception as exc:
            _fail(span, exc)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def _message_attributes(
        self, message: BaseMessage, fields: TracingFields
    ) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {
            names.ATTR_REQUEST_ID: fields.request_id,
            names.ATTR_CORRELATION_ID: fields.correlation_id,
        }
        if fields.causation_id is not None:
            attributes[names.ATTR_CAUSATION_ID] = fields.causation_id
        if self.record_enduser and fields.requested_by:
            attributes[names.ATTR_ENDUSER_ID] = fields.requested_by
        attributes[names.ATTR_REQUESTED_AT] = fields.requested_at
        attributes[names.ATTR_CQRS_TYPE] = fields.kind
        attributes[names.ATTR_CQRS_NAME] = message.__class__.__name__
        attributes[names.ATTR_CQRS_MESSAGE_TYPE] = fields.message_type
        attributes[names.ATTR_MESSAGING_SYSTEM] = names.MESSAGING_SYSTEM_VALUE
        attributes[names.ATTR_MESSAGING_OPERATION_TYPE] = names.SPAN_PROCESS
        attributes[names.ATTR_MESSAGING_OPERATION_NAME] = names.SPAN_PROCESS
        attributes[names.ATTR_MESSAGING_DESTINATION_NAME] = message.__class__.__name__
        attributes[names.ATTR_MESSAGING_MESSAGE_ID] = fields.request_id
        attributes[names.ATTR_MESSAGING_CONVERSATION_ID] = fields.correlation_id
        if self.record_payload:
            for name, value in redacted_payload(message).items():
                if name not in _TRACING_FIELDS and value is not None:
                    attributes[names.ATTR_CQRS_PAYLOAD_PREFIX + name] = _attribute_value(value)
        return attributes


def messaging_attributes(
    *,
    system: str,
    destination: str,
    operation: str,
    message: BaseMessage,
    consumer_group: str | None = None,
    client_id: str | None = None,
) -> dict[str, AttributeValue]:
    """The OpenTelemetry messaging attributes of a message that crosses a broker.

    ``system`` is the transport (``"redis"``), ``destination`` the stream, queue or
    subject, ``operation`` the operation type (``"publish"`` or ``"process"``); the
    message id is the message's ``request_id`` and the conversation id its
    correlation id, so a trace backend groups a whole chain::

        >>> from python_cqrs_core import BaseEvent
        >>> class Shipped(BaseEvent):
        ...     pass
        >>> attributes = messaging_attributes(
        ...     system="redis", destination="orders.events", operation="process",
        ...     message=Shipped(correlation_id="req-1"), consumer_group="billing")
        >>> attributes["messaging.destination.name"], attributes["messaging.consumer.group.name"]
        ('orders.events', 'billing')
        >>> attributes["messaging.message.conversation_id"]
        'req-1'
    """
    fields = tracing_fields(message)
    attributes: dict[str, AttributeValue] = {
        names.ATTR_MESSAGING_SYSTEM: system,
        names.ATTR_MESSAGING_DESTINATION_NAME: destination,
        names.ATTR_MESSAGING_OPERATION_TYPE: operation,
        names.ATTR_MESSAGING_OPERATION_NAME: operation,
        names.ATTR_MESSAGING_MESSAGE_ID: fields.request_id,
        names.ATTR_MESSAGING_CONVERSATION_ID: fields.correlation_id,
    }
    if consumer_group is not None:
        attributes[names.ATTR_MESSAGING_CONSUMER_GROUP] = consumer_group
    if client_id is not None:
        attributes[names.ATTR_MESSAGING_CLIENT_ID] = client_id
    return attributes


@contextlib.contextmanager
def publishing(
    message: BaseMessage,
    *,
    system: str,
    destination: str,
    tracer_provider: TracerProvider | None = None,
) -> Iterator[None]:
    """Publish ``message`` inside a ``PRODUCER`` span ``publish <destination>``.

    The span is current inside the block, so the ``traceparent`` the codec writes
    there (:meth:`~python_cqrs_core.codec.EnvelopeCodec.encode` reads the current
    context) is the producer span's, and the consumer's span becomes its child.  It
    carries :func:`messaging_attributes` and the message's ids; an exception marks it
    ``ERROR`` and goes on unchanged::

        with publishing(event, system="redis", destination="orders.events"):
            headers, body = codec.encode(event)
            await transport.publish("orders.events", headers, body)

    Without an SDK (or with a no-op ``tracer_provider``) the block runs with no span.
    """
    provider = get_tracer_provider() if tracer_provider is None else tracer_provider
    tracer = provider.get_tracer(
        names.INSTRUMENTATION_SCOPE, __version__, schema_url=names.SCHEMA_URL
    )
    span = tracer.start_span(f"{names.SPAN_PUBLISH} {destination}", kind=SpanKind.PRODUCER)
    if not span.is_recording():
        span.end()
        yield
        return
    fields = tracing_fields(message)
    attributes = messaging_attributes(
        system=system, destination=destination, operation=names.SPAN_PUBLISH, message=message
    )
    attributes[names.ATTR_REQUEST_ID] = fields.request_id
    attributes[names.ATTR_CORRELATION_ID] = fields.correlation_id
    if fields.causation_id is not None:
        attributes[names.ATTR_CAUSATION_ID] = fields.causation_id
    attributes[names.ATTR_CQRS_MESSAGE_TYPE] = fields.message_type
    span.set_attributes(attributes)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    except Exception as exc:
        _fail(span, exc)
        raise
    finally:
        otel_context.detach(token)
        span.end()


def _attribute_value(value: object) -> AttributeValue:
    """A JSON payload value as a span attribute: scalars as they are, the rest as JSON."""
    if isinstance(value, str | bool | int | float):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def instrument(
    bus: Mediator,
    tracer_provider: TracerProvider | None = None,
    *,
    record_enduser: bool = False,
    record_payload: bool = False,
) -> TracingMiddleware:
    """Trace ``bus``: add a :class:`TracingMiddleware` (a span per message) and its
    :attr:`~TracingMiddleware.handler_middleware` (a span per handler); return it.

    Call it before adding other middleware, so that their work is inside the spans::

        bus = Mediator()
        instrument(bus, record_enduser=True)   # requested_by as enduser.id
        bus.add_middleware(other_middleware)

    A bus is instrumented once: a second call raises
    :class:`AlreadyInstrumentedError` (two middlewares would trace every message
    twice); :func:`uninstrument` first to change the configuration.
    """
    if bus in _installed:
        raise AlreadyInstrumentedError(
            "this bus is already instrumented: call uninstrument(bus) before instrumenting "
            "it again (with other arguments)"
        )
    middleware = TracingMiddleware(
        tracer_provider, record_enduser=record_enduser, record_payload=record_payload
    )
    bus.add_middleware(middleware)
    installed: tuple[Middleware | HandlerMiddleware, ...] = (middleware,)
    if not middleware._noop:  # a no-op provider makes no handler span: no layer for it
        bus.add_handler_middleware(middleware.handler_middleware)
        installed += (middleware.handler_middleware,)
    _installed[bus] = installed
    return middleware


def uninstrument(bus: Mediator) -> None:
    """Remove what :func:`instrument` installed on ``bus``: no spans from then on.

    Messages being handled when it is called finish inside their spans.  Raises
    :class:`ValueError` when :func:`instrument` did not instrument ``bus`` (middleware
    added by hand is removed with ``bus.remove_middleware``)::

        instrument(bus)
        uninstrument(bus)
        instrument(bus, record_payload=True)   # a new configuration
    """
    installed = _installed.pop(bus, None)
    if installed is None:
        raise ValueError(
            "this bus is not instrumented: instrument(bus) did not instrument it (remove "
            "middleware added by hand with bus.remove_middleware)"
        )
    for middleware in installed:
        bus.remove_middleware(middleware)
