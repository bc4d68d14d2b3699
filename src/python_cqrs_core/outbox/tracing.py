"""OpenTelemetry spans of the outbox relay (the ``[otel]`` extra).

The relay uses this module when ``opentelemetry-api`` is installed; nothing else
imports it.  Spans, as the correlation guide's table asks:

==================  ==========  ===============================================
span                kind        correlation / causation attributes
==================  ==========  ===============================================
``outbox.process``  INTERNAL    set only when every entry of the round shares the
                                value ("when uniform")
``outbox.publish``  PRODUCER    always (causation when the message has a cause)
==================  ==========  ===============================================

An ``outbox.publish`` span is a child of the context stored with its entry (the span
that dispatched the message, possibly long ago or in a process that is gone) and is
linked to the round's ``outbox.process`` span.  The headers published carry the
producer span's ``traceparent`` (baggage as stored), so the consumer's span is a child
of the publish.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.types import AttributeValue

from .. import names
from .._version import __version__
from ..errors import exception_message
from ..integrations.otel import error_type
from .storage import OutboxEntry

__all__ = ["RelayTracing"]


class RelayTracing:
    """Makes the relay's spans from one tracer (see the module documentation)."""

    def __init__(self, tracer_provider: TracerProvider | None, system: str) -> None:
        provider = trace.get_tracer_provider() if tracer_provider is None else tracer_provider
        self._tracer = provider.get_tracer(
            names.INSTRUMENTATION_SCOPE, __version__, schema_url=names.SCHEMA_URL
        )
        self._system = system

    @contextlib.contextmanager
    def round(self, entries: Sequence[OutboxEntry]) -> Iterator[_TracedRound]:
        """The ``outbox.process`` span of one round over ``entries``."""
        attributes: dict[str, AttributeValue] = {
            names.ATTR_MESSAGING_SYSTEM: self._system,
            names.ATTR_MESSAGING_OPERATION_TYPE: names.SPAN_SEND,
            names.ATTR_MESSAGING_OPERATION_NAME: names.SPAN_OUTBOX_PROCESS,
            names.ATTR_MESSAGING_BATCH_COUNT: len(entries),
        }
        correlations = {entry.correlation_id for entry in entries}
        if len(correlations) == 1:
            attributes[names.ATTR_CORRELATION_ID] = entries[0].correlation_id
        causes = {entry.causation_id for entry in entries}
        if len(causes) == 1 and entries[0].causation_id is not None:
            attributes[names.ATTR_CAUSATION_ID] = entries[0].causation_id
        with self._tracer.start_as_current_span(
            names.SPAN_OUTBOX_PROCESS, kind=SpanKind.INTERNAL, attributes=attributes
        ) as span:
            yield _TracedRound(self, span)

    @contextlib.contextmanager
    def publish(self, entry: OutboxEntry, round_span: Span) -> Iterator[Mapping[str, str]]:
        """The ``outbox.publish`` span of ``entry``; yields the headers to publish."""
        parent = extract(entry.headers)
        links = [Link(round_span.get_span_context())] if round_span.is_recording() else []
        attributes: dict[str, AttributeValue] = {
            names.ATTR_MESSAGING_SYSTEM: self._system,
            names.ATTR_MESSAGING_OPERATION_TYPE: names.SPAN_SEND,
            names.ATTR_MESSAGING_OPERATION_NAME: names.SPAN_PUBLISH,
            names.ATTR_MESSAGING_DESTINATION_NAME: entry.destination,
            names.ATTR_MESSAGING_MESSAGE_ID: entry.message_id,
            names.ATTR_MESSAGING_CONVERSATION_ID: entry.correlation_id,
            names.ATTR_REQUEST_ID: entry.message_id,
            names.ATTR_CORRELATION_ID: entry.correlation_id,
            names.ATTR_CQRS_MESSAGE_TYPE: entry.message_type,
        }
        if entry.causation_id is not None:
            attributes[names.ATTR_CAUSATION_ID] = entry.causation_id
        span = self._tracer.start_span(
            names.SPAN_OUTBOX_PUBLISH,
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes=attributes,
            links=links,
        )
        context = trace.set_span_in_context(span, parent)
        token = otel_context.attach(context)  # a transport's own span is the publish's child
        try:
            if span.is_recording():
                headers = dict(entry.headers)
                inject(headers, context=context)
                yield headers
            else:
                yield entry.headers
        except Exception as exc:
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(
                    Status(StatusCode.ERROR, f"{type(exc).__name__}: {exception_message(exc)}")
                )
                span.set_attribute(names.ATTR_ERROR_TYPE, error_type(exc))
            raise
        finally:
            otel_context.detach(token)
            span.end()


class _TracedRound:
    """One round's span, from which its publishes are traced."""

    __slots__ = ("_span", "_tracing")

    def __init__(self, tracing: RelayTracing, span: Span) -> None:
        self._tracing = tracing
        self._span = span

    def publish(self, entry: OutboxEntry) -> contextlib.AbstractContextManager[Mapping[str, str]]:
        """Trace the publish of ``entry`` (see :meth:`RelayTracing.publish`)."""
        return self._tracing.publish(entry, self._span)
