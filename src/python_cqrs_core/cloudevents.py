"""CloudEvents 1.0: a message as a CloudEvent, binary or structured, and back, exactly.

`CloudEvents <https://cloudevents.io>`_ is the CNCF's common description of an event:
a few standard *context attributes* plus the data.  Gateways, Knative, Azure Event
Grid, Google Eventarc and the CloudEvents SDKs of every language speak it, so a chain
can leave our services and come back without a custom format.  The mapping:

=================  ==============================================================
attribute          value
=================  ==============================================================
id                 ``request_id``
source             the codec's ``source`` (a URI-reference naming your service;
                   ``"/python-cqrs-core"`` unless configured)
specversion        ``"1.0"``
type               the stable type name (:func:`~python_cqrs_core.message_type_name`)
time               ``requested_at`` in RFC 3339, its UTC offset kept
datacontenttype    ``application/json``
data               the message's business fields (a JSON object)
correlationid      the correlation id (the effective one, as in the envelope codec)
causationid        the causation id; absent for a root message
requestedby        ``requested_by``; absent when ``None``
cqrskind           ``command``, ``query`` or ``event``
traceparent,       the W3C trace context (the Distributed Tracing extension), from
tracestate         the current OpenTelemetry context or given explicitly
=================  ==============================================================

Both content modes of the HTTP binding, which the broker bindings mirror:

- **binary**: every attribute is a ``ce-`` header, percent-encoded as the binding
  requires; ``datacontenttype`` is ``content-type``; the body is the data;
- **structured**: ``content-type: application/cloudevents+json``; the body is the
  whole event as one JSON object.

Decoding applies the rules of :mod:`python_cqrs_core.codec` (sizes checked before
parsing, every value validated, one :class:`~python_cqrs_core.codec.MessageDecodeError`
naming the header or attribute), and accepts events written by other producers:
an event without ``correlationid`` is a root (its correlation id is its own id), one
without ``causationid`` or ``requestedby`` has ``None``.  ``id`` must be a UUID and
``time`` is required, because they are the message's ``request_id`` and
``requested_at``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, NamedTuple

from pydantic_core import to_json

from .codec import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_TRACE_HEADER_LENGTH,
    Body,
    Envelope,
    MessageDecodeError,
    RawHeaders,
    _build_message,
    _business_json,
    _check_body_size,
    _check_json_media_type,
    _check_kind,
    _collect_headers,
    _json_kind,
    _load_object,
    _parse_time,
    _percent_decode,
    _percent_encode,
    _positive,
    _resolve_type,
    _shown,
    _trace_context,
)
from .headers import trace_headers
from .messages import BaseMessage, tracing_fields
from .names import (
    CAUSATION_ID,
    CE_CAUSATION_ID,
    CE_CORRELATION_ID,
    CE_DATA,
    CE_DATA_BASE64,
    CE_DATACONTENTTYPE,
    CE_DEFAULT_SOURCE,
    CE_HEADER_PREFIX,
    CE_ID,
    CE_KIND,
    CE_MEDIA_TYPE_PREFIX,
    CE_REQUESTED_BY,
    CE_SOURCE,
    CE_SPECVERSION,
    CE_SPECVERSION_VALUE,
    CE_STRUCTURED_CONTENT_TYPE,
    CE_TIME,
    CE_TYPE,
    CONTENT_TYPE,
    CORRELATION_ID,
    JSON_CONTENT_TYPE,
    REQUEST_ID,
    REQUESTED_AT,
    REQUESTED_BY,
    TRACEPARENT,
    TRACESTATE,
)
from .registry import MessageRegistry
from .validation import MAX_CORRELATION_ID_LENGTH, MAX_REQUESTED_BY_LENGTH, MAX_TYPE_NAME_LENGTH

__all__ = ["MAX_SOURCE_LENGTH", "CloudEventCodec", "DecodedCloudEvent"]

MAX_SOURCE_LENGTH: Final = 2048
"""The longest ``source`` accepted, configured or received."""

# The longest value accepted per attribute, as text (structured mode) and as a
# percent-encoded header (binary mode: up to 3 characters per ASCII character, 12 per
# character of requestedby).
_LIMITS: Final[Mapping[str, int]] = {
    CE_ID: 64,
    CE_SOURCE: MAX_SOURCE_LENGTH,
    CE_SPECVERSION: 16,
    CE_TYPE: MAX_TYPE_NAME_LENGTH,
    CE_TIME: 64,
    CE_DATACONTENTTYPE: 256,
    CE_CORRELATION_ID: MAX_CORRELATION_ID_LENGTH,
    CE_CAUSATION_ID: MAX_CORRELATION_ID_LENGTH,
    CE_REQUESTED_BY: MAX_REQUESTED_BY_LENGTH,
    CE_KIND: 16,
    TRACEPARENT: MAX_TRACE_HEADER_LENGTH,
    TRACESTATE: MAX_TRACE_HEADER_LENGTH,
}
_TRACE_ATTRIBUTES: Final = (TRACEPARENT, TRACESTATE)
_BINARY_LIMITS: Final[Mapping[str, int]] = {
    **{
        CE_HEADER_PREFIX + name: (12 if name == CE_REQUESTED_BY else 3) * limit
        for name, limit in _LIMITS.items()
        if name != CE_DATACONTENTTYPE
    },
    CONTENT_TYPE: _LIMITS[CE_DATACONTENTTYPE],
}
_BINARY_TRACE_HEADERS: Final = frozenset(CE_HEADER_PREFIX + name for name in _TRACE_ATTRIBUTES)

_H_SPECVERSION: Final = CE_HEADER_PREFIX + CE_SPECVERSION
_H_ID: Final = CE_HEADER_PREFIX + CE_ID
_H_SOURCE: Final = CE_HEADER_PREFIX + CE_SOURCE
_H_TYPE: Final = CE_HEADER_PREFIX + CE_TYPE
_H_TIME: Final = CE_HEADER_PREFIX + CE_TIME
_H_CORRELATION_ID: Final = CE_HEADER_PREFIX + CE_CORRELATION_ID
_H_CAUSATION_ID: Final = CE_HEADER_PREFIX + CE_CAUSATION_ID
_H_REQUESTED_BY: Final = CE_HEADER_PREFIX + CE_REQUESTED_BY
_H_KIND: Final = CE_HEADER_PREFIX + CE_KIND

# Where each tracing field comes from, for errors.
_BINARY_SOURCES: Final[Mapping[str, str]] = {
    REQUEST_ID: f"header {_H_ID}",
    CORRELATION_ID: f"header {_H_CORRELATION_ID}",
    CAUSATION_ID: f"header {_H_CAUSATION_ID}",
    REQUESTED_BY: f"header {_H_REQUESTED_BY}",
    REQUESTED_AT: f"header {_H_TIME}",
}
_STRUCTURED_SOURCES: Final[Mapping[str, str]] = {
    REQUEST_ID: f"attribute {CE_ID}",
    CORRELATION_ID: f"attribute {CE_CORRELATION_ID}",
    CAUSATION_ID: f"attribute {CE_CAUSATION_ID}",
    REQUESTED_BY: f"attribute {CE_REQUESTED_BY}",
    REQUESTED_AT: f"attribute {CE_TIME}",
}

# RFC 3986 characters: an absolute URI ("https://orders.example.com/api", "urn:...") or a
# relative reference ("/orders"), never text with spaces or control characters.
_URI_REFERENCE: Final = re.compile(
    f"[A-Za-z0-9._~:/?#\\[\\]@!$&'()*+,;=%-]{{1,{MAX_SOURCE_LENGTH}}}"
)


class DecodedCloudEvent(NamedTuple):
    """What :class:`CloudEventCodec` decodes: the message, the W3C trace context it
    travelled with (``traceparent`` and ``tracestate``, when valid) and the event's
    ``source`` (which service sent it)."""

    message: BaseMessage
    trace_context: dict[str, str]
    source: str


class CloudEventCodec:
    """Maps messages to CloudEvents 1.0 over HTTP (binary and structured content
    modes) and CloudEvents back to messages of the classes in ``registry``.

    >>> from python_cqrs_core import BaseEvent, MessageRegistry
    >>> class OrderPlaced(BaseEvent):
    ...     __message_type__ = "com.example.orders.OrderPlaced"
    ...     order_id: str
    >>> codec = CloudEventCodec(MessageRegistry([OrderPlaced]), source="/orders")
    >>> event = OrderPlaced(order_id="o-1", correlation_id="req-1")
    >>> headers, body = codec.to_binary(event, trace_context={})
    >>> headers["ce-type"], headers["ce-source"], headers["ce-correlationid"], body
    ('com.example.orders.OrderPlaced', '/orders', 'req-1', b'{"order_id":"o-1"}')
    >>> received = codec.from_http(headers, body)
    >>> received.message == event, received.source
    (True, '/orders')

    ``source`` must be a URI-reference: an absolute URI or a path such as
    ``"/orders"``.  ``max_body_bytes`` bounds the body accepted when decoding.
    """

    __slots__ = ("_source_header", "max_body_bytes", "registry", "source")

    def __init__(
        self,
        registry: MessageRegistry,
        *,
        source: str = CE_DEFAULT_SOURCE,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if not isinstance(source, str) or _URI_REFERENCE.fullmatch(source) is None:
            shown = _shown(source) if isinstance(source, str) else type(source).__name__
            raise ValueError(
                f"source must be a URI-reference of 1 to {MAX_SOURCE_LENGTH} characters, "
                f"such as 'https://orders.example.com' or '/orders'; got {shown}"
            )
        self.registry = registry
        self.source = source
        self.max_body_bytes = _positive(max_body_bytes, "max_body_bytes")
        self._source_header = _percent_encode(source)

    # -- to CloudEvents --------------------------------------------------------------

    def to_binary(
        self, message: BaseMessage, *, trace_context: Mapping[str, str] | None = None
    ) -> Envelope:
        """The event in binary content mode: ``ce-`` headers (values percent-encoded
        as the HTTP binding requires), ``content-type: application/json``, and the
        business fields as the body.

        ``trace_context`` gives ``traceparent`` and ``tracestate`` (by default those
        of the current OpenTelemetry context; only valid W3C values are sent);
        ``baggage`` has no CloudEvents attribute and is not sent.
        """
        fields = tracing_fields(message)
        headers = {
            _H_SPECVERSION: CE_SPECVERSION_VALUE,
            _H_ID: fields.request_id,
            _H_SOURCE: self._source_header,
            _H_TYPE: _percent_encode(fields.message_type),
            _H_TIME: fields.requested_at,  # digits, '-', ':', '.', 'T', '+': nothing to encode
            CONTENT_TYPE: JSON_CONTENT_TYPE,
            _H_CORRELATION_ID: _percent_encode(fields.correlation_id),
            _H_KIND: fields.kind,
        }
        if fields.causation_id is not None:
            headers[_H_CAUSATION_ID] = _percent_encode(fields.causation_id)
        if fields.requested_by is not None:
            headers[_H_REQUESTED_BY] = _percent_encode(fields.requested_by)
        for name, value in _outgoing_trace_context(trace_context).items():
            headers[CE_HEADER_PREFIX + name] = _percent_encode(value)
        return Envelope(headers, _business_json(message))

    def to_structured(
        self, message: BaseMessage, *, trace_context: Mapping[str, str] | None = None
    ) -> Envelope:
        """The event in structured content mode: ``content-type:
        application/cloudevents+json`` and the whole event, attributes and ``data``,
        as one JSON object in the body.  ``trace_context`` as in :meth:`to_binary`.
        """
        fields = tracing_fields(message)
        attributes = {
            CE_SPECVERSION: CE_SPECVERSION_VALUE,
            CE_ID: fields.request_id,
            CE_SOURCE: self.source,
            CE_TYPE: fields.message_type,
            CE_TIME: fields.requested_at,
            CE_DATACONTENTTYPE: JSON_CONTENT_TYPE,
            CE_CORRELATION_ID: fields.correlation_id,
            CE_KIND: fields.kind,
        }
        if fields.causation_id is not None:
            attributes[CE_CAUSATION_ID] = fields.causation_id
        if fields.requested_by is not None:
            attributes[CE_REQUESTED_BY] = fields.requested_by
        attributes.update(_outgoing_trace_context(trace_context))
        head = to_json(attributes)  # '{...}': "data" goes in before the closing brace
        body = b"".join((head[:-1], b',"', CE_DATA.encode(), b'":', _business_json(message), b"}"))
        return Envelope({CONTENT_TYPE: CE_STRUCTURED_CONTENT_TYPE}, body)

    # -- from CloudEvents ------------------------------------------------------------

    def from_http(self, headers: RawHeaders, body: Body) -> DecodedCloudEvent:
        """The message of a CloudEvent received over HTTP (or a broker binding that
        mirrors it), in either content mode.

        ``content-type: application/cloudevents+json`` means structured mode; a
        ``ce-specversion`` header means binary mode.  Batches and other event
        formats are refused.  Raises :class:`~python_cqrs_core.codec.MessageDecodeError`
        for anything missing, malformed or too large, and
        :class:`~python_cqrs_core.UnknownMessageTypeError` for an unregistered
        ``type``.
        """
        _check_body_size(body, self.max_body_bytes)
        found = _collect_headers(headers, _BINARY_LIMITS, _BINARY_TRACE_HEADERS)
        content_type = found.get(CONTENT_TYPE)
        if content_type is not None:
            media_type = content_type.partition(";")[0].strip().lower()
            if media_type == CE_STRUCTURED_CONTENT_TYPE:
                return self._from_structured(body)
            if media_type.startswith(CE_MEDIA_TYPE_PREFIX):
                raise MessageDecodeError(
                    f"header {CONTENT_TYPE}",
                    f"is {_shown(media_type)}: only single events in the JSON format "
                    f"({CE_STRUCTURED_CONTENT_TYPE}) or binary mode are supported",
                )
        if _H_SPECVERSION not in found:
            raise MessageDecodeError(
                "headers",
                f"carry no CloudEvent: no {_H_SPECVERSION} header (binary mode) and no "
                f"content-type {CE_STRUCTURED_CONTENT_TYPE} (structured mode)",
            )
        return self._from_binary(found, body)

    def from_binary(self, headers: RawHeaders, body: Body) -> DecodedCloudEvent:
        """The message of a CloudEvent in binary content mode (``ce-`` headers, the
        data as the body); an empty body is an event without data."""
        _check_body_size(body, self.max_body_bytes)
        return self._from_binary(
            _collect_headers(headers, _BINARY_LIMITS, _BINARY_TRACE_HEADERS), body
        )

    def from_structured(self, body: Body) -> DecodedCloudEvent:
        """The message of a CloudEvent in structured JSON mode: ``body`` is the
        event (for transports that carry no headers)."""
        _check_body_size(body, self.max_body_bytes)
        return self._from_structured(body)

    def __repr__(self) -> str:
        return f"<CloudEventCodec source={self.source!r} over {self.registry!r}>"

    def _from_binary(self, found: Mapping[str, str], body: Body) -> DecodedCloudEvent:
        attributes: dict[str, object] = {}
        prefix_length = len(CE_HEADER_PREFIX)
        for header, value in found.items():
            if header in _BINARY_TRACE_HEADERS:
                try:
                    attributes[header[prefix_length:]] = _percent_decode(value, header)
                except MessageDecodeError:
                    continue  # a malformed trace context is dropped, never fatal
            elif header != CONTENT_TYPE:
                attributes[header[prefix_length:]] = _percent_decode(value, f"header {header}")
        content_type = found.get(CONTENT_TYPE)
        if content_type is not None:
            _check_json_media_type(content_type, f"header {CONTENT_TYPE}")
        size = body.nbytes if isinstance(body, memoryview) else len(body)
        data = _load_object(body, "body") if size else {}
        return self._decode(attributes, data, f"header {CE_HEADER_PREFIX}", "body", _BINARY_SOURCES)

    def _from_structured(self, body: Body) -> DecodedCloudEvent:
        event = _load_object(body, "body")
        if CE_DATA_BASE64 in event:
            raise MessageDecodeError(
                f"attribute {CE_DATA_BASE64}",
                "binary data is not supported: data must be a JSON object",
            )
        data = event.pop(CE_DATA, None)
        if data is None:
            data = {}
        elif type(data) is not dict:
            raise MessageDecodeError(
                f"attribute {CE_DATA}",
                f"must be a JSON object (the message's fields), not {_json_kind(data)}",
            )
        content_type = _attribute(event, CE_DATACONTENTTYPE, "attribute ")
        if content_type is not None:
            _check_json_media_type(content_type, f"attribute {CE_DATACONTENTTYPE}")
        return self._decode(event, data, "attribute ", f"attribute {CE_DATA}", _STRUCTURED_SOURCES)

    def _decode(
        self,
        attributes: Mapping[str, object],
        data: dict[str, object],
        prefix: str,
        where: str,
        sources: Mapping[str, str],
    ) -> DecodedCloudEvent:
        specversion = _required(attributes, CE_SPECVERSION, prefix)
        if specversion != CE_SPECVERSION_VALUE:
            raise MessageDecodeError(
                prefix + CE_SPECVERSION,
                f"is {_shown(specversion)}; only CloudEvents {CE_SPECVERSION_VALUE} is supported",
            )
        cls = _resolve_type(self.registry, _required(attributes, CE_TYPE, prefix), prefix + CE_TYPE)
        kind = _attribute(attributes, CE_KIND, prefix)
        if kind is not None:
            _check_kind(cls, kind, prefix + CE_KIND)
        source = _required(attributes, CE_SOURCE, prefix)
        if _URI_REFERENCE.fullmatch(source) is None:
            raise MessageDecodeError(
                prefix + CE_SOURCE, "must be a URI-reference (RFC 3986 characters only)"
            )
        request_id = _required(attributes, CE_ID, prefix)
        correlation_id = _attribute(attributes, CE_CORRELATION_ID, prefix)
        tracing = {
            REQUEST_ID: request_id,
            # No correlationid: a root, whose correlation id is its own id (as a
            # dispatch would settle it).
            CORRELATION_ID: request_id if correlation_id is None else correlation_id,
            CAUSATION_ID: _attribute(attributes, CE_CAUSATION_ID, prefix),
            REQUESTED_BY: _attribute(attributes, CE_REQUESTED_BY, prefix),
            REQUESTED_AT: _parse_time(_required(attributes, CE_TIME, prefix), prefix + CE_TIME),
        }
        message = _build_message(cls, data, where, tracing, sources)
        traceparent, tracestate = (_trace_attribute(attributes, n) for n in _TRACE_ATTRIBUTES)
        return DecodedCloudEvent(message, _trace_context(traceparent, tracestate, None), source)


def _outgoing_trace_context(given: Mapping[str, str] | None) -> dict[str, str]:
    """The valid ``traceparent`` and ``tracestate`` of ``given``, or of the current
    OpenTelemetry context when ``given`` is ``None``."""
    context = trace_headers() if given is None else given
    if not context:
        return {}
    return _trace_context(context.get(TRACEPARENT), context.get(TRACESTATE), None)


def _attribute(attributes: Mapping[str, object], name: str, prefix: str) -> str | None:
    """The text of an attribute, ``None`` when absent; it must be a string within its
    length limit."""
    value = attributes.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageDecodeError(prefix + name, f"must be a string, not {_json_kind(value)}")
    if len(value) > _LIMITS[name]:
        raise MessageDecodeError(
            prefix + name, f"is {len(value)} characters long; at most {_LIMITS[name]} are accepted"
        )
    return value


def _required(attributes: Mapping[str, object], name: str, prefix: str) -> str:
    value = _attribute(attributes, name, prefix)
    if value is None:
        raise MessageDecodeError(
            prefix + name, "is missing; the message cannot be built without it"
        )
    return value


def _trace_attribute(attributes: Mapping[str, object], name: str) -> str | None:
    value = attributes.get(name)
    return value if isinstance(value, str) and len(value) <= MAX_TRACE_HEADER_LENGTH else None
