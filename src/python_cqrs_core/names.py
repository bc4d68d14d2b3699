"""Every name the library writes somewhere: header names, span attributes, Sentry tags,
log fields, metric names and trace event names, as constants in one place.

Integrations, the codec, the store and the apps import their names from here, so one
spelling is used everywhere and a rename is a one-line change.  Nothing here has any
behaviour; the module imports nothing.

>>> WIRE_CORRELATION_ID
'cqrs-correlation-id'
"""

from __future__ import annotations

from typing import Final

# -- the tracing fields of every message ------------------------------------------------
REQUEST_ID: Final = "request_id"
CORRELATION_ID: Final = "correlation_id"
CAUSATION_ID: Final = "causation_id"
REQUESTED_BY: Final = "requested_by"
REQUESTED_AT: Final = "requested_at"
TRACING_FIELDS: Final = (REQUEST_ID, CORRELATION_ID, CAUSATION_ID, REQUESTED_BY, REQUESTED_AT)
"""The five tracing fields every message carries, in their declaration order."""

MESSAGE_TYPE: Final = "message_type"
MESSAGE_ID: Final = "message_id"
KIND: Final = "kind"

# -- HTTP ---------------------------------------------------------------------------------
CORRELATION_HEADER: Final = "X-Correlation-ID"
"""The request and response header of the correlation id."""
REQUEST_ID_HEADER: Final = "X-Request-ID"
"""The fallback request header (what many gateways and proxies send)."""

# -- wire headers of the envelope codec (lower case, as HTTP/2 and brokers want them) ----
WIRE_MESSAGE_ID: Final = "cqrs-message-id"
WIRE_MESSAGE_TYPE: Final = "cqrs-message-type"
WIRE_MESSAGE_KIND: Final = "cqrs-message-kind"
WIRE_CORRELATION_ID: Final = "cqrs-correlation-id"
WIRE_CAUSATION_ID: Final = "cqrs-causation-id"
WIRE_REQUESTED_BY: Final = "cqrs-requested-by"
WIRE_REQUESTED_AT: Final = "cqrs-requested-at"
WIRE_SERVICE: Final = "cqrs-service"
CONTENT_TYPE: Final = "content-type"
JSON_CONTENT_TYPE: Final = "application/json"

# W3C trace context and baggage (https://www.w3.org/TR/trace-context/).
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
BAGGAGE: Final = "baggage"
TRACE_CONTEXT_HEADERS: Final = (TRACEPARENT, TRACESTATE, BAGGAGE)

# -- CloudEvents 1.0 ----------------------------------------------------------------------
CE_SPECVERSION_VALUE: Final = "1.0"
CE_HEADER_PREFIX: Final = "ce-"
"""Prefix of the attribute headers in the HTTP binary content mode."""
CE_STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
# Extension attributes (lower-case letters and digits only, as the spec requires).
CE_CORRELATION_ID: Final = "correlationid"
CE_CAUSATION_ID: Final = "causationid"
CE_REQUESTED_BY: Final = "requestedby"
CE_KIND: Final = "cqrskind"
# Context attributes of CloudEvents 1.0 (the attribute names of the structured format;
# the binary mode writes them as CE_HEADER_PREFIX + name, datacontenttype as content-type).
CE_ID: Final = "id"
CE_SOURCE: Final = "source"
CE_SPECVERSION: Final = "specversion"
CE_TYPE: Final = "type"
CE_TIME: Final = "time"
CE_DATACONTENTTYPE: Final = "datacontenttype"
CE_DATA: Final = "data"
CE_DATA_BASE64: Final = "data_base64"
CE_MEDIA_TYPE_PREFIX: Final = "application/cloudevents"
"""What every CloudEvents content type starts with (structured, batch, other formats)."""
CE_DEFAULT_SOURCE: Final = "/python-cqrs-core"
"""The ``source`` written when the application configures none (set your service's)."""

# -- OpenTelemetry ------------------------------------------------------------------------
INSTRUMENTATION_SCOPE: Final = "python_cqrs_core"
"""The one instrumentation scope (tracer name) of the library's spans."""
SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.26.0"
"""The semantic-convention version the attribute names follow."""
BAGGAGE_CORRELATION_ID: Final = "correlation.id"
"""The baggage entry holding the correlation id while a message is handled."""

# The guide's business attributes (its Pattern 1), plus causation.
ATTR_REQUEST_ID: Final = "business.request_id"
ATTR_CORRELATION_ID: Final = "business.correlation_id"
ATTR_CAUSATION_ID: Final = "business.causation_id"
ATTR_REQUESTED_BY: Final = "requested_by"
"""Set by the guide's :func:`attach_cqrs_context` helper; automatic spans use
:data:`ATTR_ENDUSER_ID`, and only when asked (it is personal data)."""
ATTR_REQUESTED_AT: Final = "requested_at"
ATTR_CQRS_TYPE: Final = "cqrs.type"
ATTR_CQRS_NAME: Final = "cqrs.name"
ATTR_CQRS_MESSAGE_TYPE: Final = "cqrs.message_type"
ATTR_CQRS_HANDLER: Final = "cqrs.handler"
ATTR_CQRS_PAYLOAD_PREFIX: Final = "cqrs.payload."
ATTR_ENDUSER_ID: Final = "enduser.id"
ATTR_ERROR_TYPE: Final = "error.type"

# OpenTelemetry messaging semantic conventions.
ATTR_MESSAGING_SYSTEM: Final = "messaging.system"
ATTR_MESSAGING_MESSAGE_ID: Final = "messaging.message.id"
ATTR_MESSAGING_CONVERSATION_ID: Final = "messaging.message.conversation_id"
ATTR_MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
ATTR_MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
ATTR_MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
ATTR_MESSAGING_CONSUMER_GROUP: Final = "messaging.consumer.group.name"
ATTR_MESSAGING_BATCH_COUNT: Final = "messaging.batch.message_count"
ATTR_MESSAGING_CLIENT_ID: Final = "messaging.client.id"
"""The consumer's name within its group (a consumer of a broker transport)."""
MESSAGING_SYSTEM_VALUE: Final = "python-cqrs-core"

SPAN_PROCESS: Final = "process"
"""Operation name of a message's span: ``process PlaceOrder``."""
SPAN_HANDLER: Final = "handle"
"""Operation name of a handler's span: ``handle PlaceOrderHandler``."""
SPAN_PUBLISH: Final = "publish"
SPAN_SEND: Final = "send"
SPAN_RECEIVE: Final = "receive"
SPAN_OUTBOX_PROCESS: Final = "outbox.process"
"""The span of one round of the outbox relay (a batch of entries)."""
SPAN_OUTBOX_PUBLISH: Final = "outbox.publish"
"""The ``PRODUCER`` span of one outbox entry published to the broker."""

# -- Sentry -------------------------------------------------------------------------------
TAG_REQUEST_ID: Final = "business.request_id"
TAG_CORRELATION_ID: Final = "correlation_id"
TAG_CAUSATION_ID: Final = "causation_id"
TAG_REQUESTED_BY: Final = "requested_by"
TAG_CQRS_TYPE: Final = "cqrs.type"
TAG_CQRS_NAME: Final = "cqrs.name"
TAG_MESSAGE_TYPE: Final = "cqrs.message_type"
SENTRY_MECHANISM: Final = "python_cqrs_core"

# -- logging ------------------------------------------------------------------------------
LOGGER: Final = "python_cqrs_core"
STORE_LOGGER: Final = "python_cqrs_core.store"
AUDIT_LOGGER: Final = "python_cqrs_core.audit"
ASGI_LOGGER: Final = "python_cqrs_core.asgi"
TRANSPORT_LOGGER: Final = "python_cqrs_core.transport"
OUTBOX_LOGGER: Final = "python_cqrs_core.outbox"
WORKER_LOGGER: Final = "python_cqrs_core.worker"
"""The logger of ``cqrs worker``: start, stop, status lines and delivery outcomes."""
LOG_TRACE_ID: Final = "trace_id"
LOG_SPAN_ID: Final = "span_id"
LOG_FIELDS: Final = (
    CORRELATION_ID,
    CAUSATION_ID,
    REQUEST_ID,
    REQUESTED_BY,
    MESSAGE_TYPE,
    LOG_TRACE_ID,
    LOG_SPAN_ID,
)
"""The keys added to every log record, in this order."""

# -- Prometheus ---------------------------------------------------------------------------
METRIC_MESSAGES: Final = "cqrs_messages_total"
METRIC_DURATION: Final = "cqrs_message_duration_seconds"
METRIC_QUEUE_DELAY: Final = "cqrs_message_queue_delay_seconds"
# A worker's consumers and outbox relay (labels: worker, destination, group).
METRIC_CONSUMER_LAG: Final = "cqrs_consumer_lag"
"""Messages of a destination its consumer group has not acknowledged yet."""
METRIC_CONSUMER_ACKED: Final = "cqrs_consumer_acked_total"
METRIC_CONSUMER_DUPLICATES: Final = "cqrs_consumer_duplicates_total"
METRIC_CONSUMER_RETRIES: Final = "cqrs_consumer_retries_total"
METRIC_CONSUMER_DEAD_LETTERS: Final = "cqrs_consumer_dead_letters_total"
METRIC_OUTBOX_BACKLOG: Final = "cqrs_outbox_backlog"
"""Outbox entries waiting to be published."""
METRIC_OUTBOX_PUBLISHED: Final = "cqrs_outbox_published_total"
METRIC_OUTBOX_RETRIES: Final = "cqrs_outbox_retries_total"
METRIC_OUTBOX_FAILED: Final = "cqrs_outbox_failed_total"

# -- trace events (the correlation guide's MessageTrace kinds) ------------------------------
EVENT_HANDLER_STARTED: Final = "handler.started"
EVENT_HANDLER_COMPLETED: Final = "handler.completed"
EVENT_HANDLER_FAILED: Final = "handler.failed"
EVENT_OUTBOX_PUBLISHED: Final = "outbox.published"
EVENT_OUTBOX_FAILED: Final = "outbox.failed"
EVENT_OUTBOX_RETRIED: Final = "outbox.retried"
"""An outbox entry could not be published; the relay tries it again after a backoff."""
EVENT_MESSAGE_ACKED: Final = "message.acked"
EVENT_MESSAGE_DLQ: Final = "message.dlq"
EVENT_MESSAGE_RETRIED: Final = "message.retried"
"""A consumer gave a delivery back to its broker, to be delivered again after a delay."""

# -- audit events (the guide's AUDIT_EVENT_SCHEMA keys) ---------------------------------------
AUDIT_ACTION: Final = "audit.action"
AUDIT_ACTOR: Final = "audit.actor"
AUDIT_RESOURCE_TYPE: Final = "audit.resource_type"
AUDIT_RESOURCE_ID: Final = "audit.resource_id"
AUDIT_TIMESTAMP: Final = "audit.timestamp"
AUDIT_BUSINESS_REQUEST_ID: Final = "audit.business_request_id"
AUDIT_CORRELATION_ID: Final = "audit.correlation_id"
AUDIT_RESULT: Final = "audit.result"
AUDIT_PAYLOAD: Final = "audit.payload"
AUDIT_ERROR_TYPE: Final = "audit.error_type"

# -- OpenTelemetry exception events (semantic conventions) -----------------------------------
EXCEPTION_EVENT: Final = "exception"
ATTR_EXCEPTION_TYPE: Final = "exception.type"
ATTR_EXCEPTION_MESSAGE: Final = "exception.message"
ATTR_EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
