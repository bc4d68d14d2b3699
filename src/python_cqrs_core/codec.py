"""The envelope codec: a message as text headers plus a JSON body, and back, exactly.

A message that leaves the process (through Redis Streams, RabbitMQ or NATS, or into a
store that is replayed later) travels in two parts:

- **headers**, text to text: the tracing fields, the stable type name, the kind, the
  content type and the W3C trace context.  Brokers route, filter and trace on them
  without reading the body;
- **body**, bytes: the JSON of the message's *business* fields only (the tracing
  fields are in the headers, once).

::

    codec = EnvelopeCodec(MessageRegistry([OrderPlaced]))
    headers, body = codec.encode(event)          # publish both
    received = codec.decode(headers, body)       # in the consumer
    received.message == event                    # every field, ids and offset included
    received.trace_context                       # {"traceparent": ...}: continue the trace

=====================  =================================================================
header                 value
=====================  =================================================================
cqrs-message-id        ``request_id`` (a UUID)
cqrs-message-type      the stable type name (:func:`~python_cqrs_core.message_type_name`)
cqrs-message-kind      ``command``, ``query`` or ``event``
cqrs-correlation-id    the correlation id (the effective one: the message's own
                       ``request_id`` if it has none yet, as its dispatch would settle)
cqrs-causation-id      the causation id; absent for a root message
cqrs-requested-by      ``requested_by``, percent-encoded; absent when ``None``
cqrs-requested-at      ``requested_at`` in ISO 8601 with its UTC offset
cqrs-service           the producing service (``EnvelopeCodec(service=...)``); absent
                       when the codec names none
content-type           ``application/json``
traceparent,           the W3C trace context and baggage of the current OpenTelemetry
tracestate, baggage    context, or those given to :meth:`EnvelopeCodec.encode`
=====================  =================================================================

Everything :meth:`EnvelopeCodec.decode` reads comes from outside and is treated as
hostile: it is checked before it is parsed or used, and every problem raises one
:class:`MessageDecodeError` that names the header or field and says what is wrong,
without repeating a long or control-character-laden value.  An unknown type name
raises :class:`~python_cqrs_core.UnknownMessageTypeError` instead, because a consumer
usually treats "not a message I accept" differently from "a broken message".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeAlias
from urllib.parse import quote, unquote_to_bytes

from pydantic import ValidationError
from pydantic_core import ErrorDetails, from_json

from .errors import CQRSError
from .headers import trace_headers
from .messages import BaseMessage, tracing_fields
from .names import (
    BAGGAGE,
    CAUSATION_ID,
    CONTENT_TYPE,
    CORRELATION_ID,
    JSON_CONTENT_TYPE,
    REQUEST_ID,
    REQUESTED_AT,
    REQUESTED_BY,
    TRACEPARENT,
    TRACESTATE,
    TRACING_FIELDS,
    WIRE_CAUSATION_ID,
    WIRE_CORRELATION_ID,
    WIRE_MESSAGE_ID,
    WIRE_MESSAGE_KIND,
    WIRE_MESSAGE_TYPE,
    WIRE_REQUESTED_AT,
    WIRE_REQUESTED_BY,
    WIRE_SERVICE,
)
from .registry import MessageRegistry
from .validation import (
    MAX_CORRELATION_ID_LENGTH,
    MAX_REQUESTED_BY_LENGTH,
    MAX_TYPE_NAME_LENGTH,
    validate_type_name,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "MAX_TRACE_HEADER_LENGTH",
    "Body",
    "DecodedMessage",
    "Envelope",
    "EnvelopeCodec",
    "MessageDecodeError",
    "RawHeaders",
]

DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
"""The largest body :meth:`EnvelopeCodec.decode` accepts unless configured (1 MiB)."""

MAX_TRACE_HEADER_LENGTH: Final = 8192
"""The longest ``traceparent``, ``tracestate`` or ``baggage`` kept (the W3C baggage
limit); a longer one is dropped, as the W3C recommendations allow."""

RawHeaders: TypeAlias = (
    Mapping[str, str | bytes]
    | Mapping[bytes, str | bytes]
    | Iterable[tuple[str | bytes, str | bytes]]
)
"""Headers as they arrive: a mapping or a sequence of ``(name, value)`` pairs (ASGI,
Kafka), names and values as ``str`` or ``bytes``, names in any case."""

Body: TypeAlias = bytes | bytearray | memoryview | str
"""A body as it arrives: bytes (or a buffer), or text from a client that decodes."""

_TRACING_FIELD_SET: Final = frozenset(TRACING_FIELDS)
_NOT_IN_BODY: Final = set(TRACING_FIELDS)  # pydantic's exclude= wants a set
_W3C_HEADERS: Final = (TRACEPARENT, TRACESTATE, BAGGAGE)
_MESSAGE_KINDS: Final = ("command", "query", "event")

# Longest value accepted per header, checked before anything else is done with it.  A
# percent-encoded requested_by takes up to 12 characters per character (4 UTF-8 bytes).
_ENVELOPE_LIMITS: Final[Mapping[str, int]] = {
    WIRE_MESSAGE_ID: 64,
    WIRE_MESSAGE_TYPE: MAX_TYPE_NAME_LENGTH,
    WIRE_MESSAGE_KIND: 16,
    WIRE_CORRELATION_ID: MAX_CORRELATION_ID_LENGTH,
    WIRE_CAUSATION_ID: MAX_CORRELATION_ID_LENGTH,
    WIRE_REQUESTED_BY: 12 * MAX_REQUESTED_BY_LENGTH,
    WIRE_REQUESTED_AT: 64,
    WIRE_SERVICE: MAX_TYPE_NAME_LENGTH,
    CONTENT_TYPE: 256,
    TRACEPARENT: MAX_TRACE_HEADER_LENGTH,
    TRACESTATE: MAX_TRACE_HEADER_LENGTH,
    BAGGAGE: MAX_TRACE_HEADER_LENGTH,
}
_TRACE_HEADER_SET: Final = frozenset(_W3C_HEADERS)
_SOURCES: Final[Mapping[str, str]] = {
    REQUEST_ID: f"header {WIRE_MESSAGE_ID}",
    CORRELATION_ID: f"header {WIRE_CORRELATION_ID}",
    CAUSATION_ID: f"header {WIRE_CAUSATION_ID}",
    REQUESTED_BY: f"header {WIRE_REQUESTED_BY}",
    REQUESTED_AT: f"header {WIRE_REQUESTED_AT}",
}


class MessageDecodeError(CQRSError, ValueError):
    """Input that cannot become a message: a missing or malformed header, a body that
    is too large, not JSON, or fails the message's validation.

    ``field`` says where (``"header cqrs-correlation-id"``, ``"body field quantity"``,
    ``"body"``), ``problem`` what is wrong.  Neither repeats a value that is long or
    holds control characters, so the error is safe to log::

        try:
            received = codec.decode(headers, body)
        except MessageDecodeError as exc:
            dead_letter(headers, body, reason=str(exc))
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def __reduce__(self) -> tuple[type[MessageDecodeError], tuple[str, str]]:
        return type(self), (self.field, self.problem)


class Envelope(NamedTuple):
    """A message on the wire: text headers and the body bytes.

    It unpacks as ``headers, body = codec.encode(message)``.
    """

    headers: dict[str, str]
    body: bytes


class DecodedMessage(NamedTuple):
    """What :meth:`EnvelopeCodec.decode` returns: the message, the W3C trace
    context it travelled with, and the service that produced it.

    ``trace_context`` holds the valid ones of ``traceparent``, ``tracestate`` and
    ``baggage`` under those names, ready for an OpenTelemetry propagator's
    ``extract(carrier=...)``, so the consumer's span continues the producer's trace.
    ``service`` is the ``cqrs-service`` header (``None`` when the producer's codec
    named no service): the consumer's message recorder keeps it as the ``service`` of
    the message's record when the producer did not record it in the same store.
    """

    message: BaseMessage
    trace_context: dict[str, str]
    service: str | None = None


class EnvelopeCodec:
    """Encodes messages to an :class:`Envelope` and decodes envelopes back into
    messages of the classes in ``registry``.

    >>> from python_cqrs_core import BaseEvent, MessageRegistry
    >>> class OrderPlaced(BaseEvent):
    ...     __message_type__ = "orders.OrderPlaced"
    ...     order_id: str
    >>> codec = EnvelopeCodec(MessageRegistry([OrderPlaced]))
    >>> event = OrderPlaced(order_id="o-1", correlation_id="req-1", requested_by="José")
    >>> headers, body = codec.encode(event, trace_context={})
    >>> body
    b'{"order_id":"o-1"}'
    >>> headers["cqrs-message-type"], headers["cqrs-requested-by"]
    ('orders.OrderPlaced', 'Jos%C3%A9')
    >>> codec.decode(headers, body).message == event
    True

    ``max_body_bytes`` bounds the body :meth:`decode` accepts (checked before it is
    parsed).  ``service`` names the service whose messages this codec encodes
    (``"orders"``, checked like a type name): :meth:`encode` writes it in the
    ``cqrs-service`` header, so that a consumer can record which service produced a
    message it received.  The codec holds no other state and may be shared by any
    number of tasks.

    >>> orders = EnvelopeCodec(MessageRegistry([OrderPlaced]), service="orders")
    >>> headers, body = orders.encode(event, trace_context={})
    >>> headers["cqrs-service"], codec.decode(headers, body).service
    ('orders', 'orders')
    """

    __slots__ = ("max_body_bytes", "registry", "service")

    def __init__(
        self,
        registry: MessageRegistry,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        service: str | None = None,
    ) -> None:
        self.registry = registry
        self.max_body_bytes = _positive(max_body_bytes, "max_body_bytes")
        if service is not None:
            try:
                validate_type_name(service)
            except ValueError as exc:
                raise ValueError(f"service {exc}, got {service!r}") from None
        self.service = service

    def encode(
        self, message: BaseMessage, *, trace_context: Mapping[str, str] | None = None
    ) -> Envelope:
        """The headers and body of ``message``.

        ``trace_context`` gives the ``traceparent``, ``tracestate`` and ``baggage``
        to send (other keys are ignored; ``{}`` sends none); by default they are those
        of the current OpenTelemetry context, if any.  Only valid W3C values are sent,
        whatever their origin (one may come from an incoming request).  The message is
        not changed.
        """
        fields = tracing_fields(message)
        headers = {
            WIRE_MESSAGE_ID: fields.request_id,
            WIRE_MESSAGE_TYPE: fields.message_type,
            WIRE_MESSAGE_KIND: fields.kind,
            WIRE_CORRELATION_ID: fields.correlation_id,
            WIRE_REQUESTED_AT: fields.requested_at,
            CONTENT_TYPE: JSON_CONTENT_TYPE,
        }
        if fields.causation_id is not None:
            headers[WIRE_CAUSATION_ID] = fields.causation_id
        if fields.requested_by is not None:
            headers[WIRE_REQUESTED_BY] = _percent_encode(fields.requested_by)
        if self.service is not None:
            headers[WIRE_SERVICE] = self.service
        context = trace_headers() if trace_context is None else trace_context
        if context:
            headers.update(
                _trace_context(
                    context.get(TRACEPARENT), context.get(TRACESTATE), context.get(BAGGAGE)
                )
            )
        return Envelope(headers, _business_json(message))

    def decode(self, headers: RawHeaders, body: Body) -> DecodedMessage:
        """The message that ``headers`` and ``body`` carry, and its trace context.

        The message is built with ``model_validate`` from the headers' tracing fields
        and the body's business fields: it is exactly the message that was encoded,
        with its tracing fields marked as set (it was dispatched), and it inherits
        nothing from the handler or scope that decodes it.  A ``traceparent``,
        ``tracestate`` or ``baggage`` that is malformed is left out of
        ``trace_context`` (the W3C rule: start a new trace) and never fails the
        message.

        The ``cqrs-service`` header, when present, must be a valid name (checked like
        a type name); it is returned as :attr:`DecodedMessage.service`.

        Raises :class:`MessageDecodeError` for anything malformed or too large, and
        :class:`~python_cqrs_core.UnknownMessageTypeError` for a type name that is
        not in the registry.
        """
        _check_body_size(body, self.max_body_bytes)
        found = _collect_headers(headers, _ENVELOPE_LIMITS, _TRACE_HEADER_SET)
        cls = _resolve_type(
            self.registry, _required(found, WIRE_MESSAGE_TYPE), f"header {WIRE_MESSAGE_TYPE}"
        )
        kind = found.get(WIRE_MESSAGE_KIND)
        if kind is not None:
            _check_kind(cls, kind, f"header {WIRE_MESSAGE_KIND}")
        content_type = found.get(CONTENT_TYPE)
        if content_type is not None:
            _check_json_media_type(content_type, f"header {CONTENT_TYPE}")
        requested_by = found.get(WIRE_REQUESTED_BY)
        if requested_by is not None:
            requested_by = _percent_decode(requested_by, f"header {WIRE_REQUESTED_BY}")
        tracing = {
            REQUEST_ID: _required(found, WIRE_MESSAGE_ID),
            CORRELATION_ID: _required(found, WIRE_CORRELATION_ID),
            CAUSATION_ID: found.get(WIRE_CAUSATION_ID),
            REQUESTED_BY: requested_by,
            REQUESTED_AT: _parse_time(
                _required(found, WIRE_REQUESTED_AT), f"header {WIRE_REQUESTED_AT}"
            ),
        }
        service = found.get(WIRE_SERVICE)
        if service is not None:
            try:
                validate_type_name(service)
            except ValueError as exc:
                raise MessageDecodeError(f"header {WIRE_SERVICE}", str(exc)) from None
        message = _build_message(cls, _load_object(body, "body"), "body", tracing, _SOURCES)
        return DecodedMessage(
            message,
            _trace_context(found.get(TRACEPARENT), found.get(TRACESTATE), found.get(BAGGAGE)),
            service,
        )

    def __repr__(self) -> str:
        service = "" if self.service is None else f", service={self.service!r}"
        return (
            f"<EnvelopeCodec over {self.registry!r}, max_body_bytes={self.max_body_bytes}{service}>"
        )


# -- shared with python_cqrs_core.cloudevents ---------------------------------------------
# The functions below are the one implementation of each wire rule; the CloudEvents
# mapping uses them too, so both formats check hostile input the same way.

# The CloudEvents HTTP binding's rule, used for every header we percent-encode: printable
# ASCII stays as it is, except space, '"' and '%'; everything else is UTF-8 percent-encoded.
_HEADER_SAFE: Final = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_NEEDS_QUOTING: Final = re.compile(r"[^!#$&-~]")
_PERCENT_ENCODED: Final = re.compile(r"(?:[ -$&-~]|%[0-9A-Fa-f]{2})*")
_TRACEPARENT: Final = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-[!-~]*)?"
)
_LIST_HEADER: Final = re.compile(r"[\t -~]*")
_UNSET_TRACE_ID: Final = "0" * 32
_UNSET_SPAN_ID: Final = "0" * 16


def _percent_encode(value: str) -> str:
    """``value`` made header-safe: space, ``"``, ``%``, control and non-ASCII
    characters become ``%XX`` (UTF-8), everything else stays as it is."""
    if _NEEDS_QUOTING.search(value) is None:
        return value
    return quote(value, safe=_HEADER_SAFE)


def _percent_decode(value: str, field: str) -> str:
    """The text ``value`` percent-encodes, strictly: a ``%`` must start a ``%XX``
    escape and the bytes must be UTF-8."""
    if "%" not in value:
        return value
    if _PERCENT_ENCODED.fullmatch(value) is None:
        raise MessageDecodeError(field, "has a '%' that does not start a %XX escape")
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise MessageDecodeError(field, "percent-encodes bytes that are not UTF-8") from None


def _business_json(message: BaseMessage) -> bytes:
    """The JSON of the message's business fields (by alias, in round-trip mode)."""
    return message.__pydantic_serializer__.to_json(
        message, exclude=_NOT_IN_BODY, by_alias=True, round_trip=True
    )


def _check_body_size(body: Body, limit: int) -> None:
    """Refuse a body larger than ``limit`` bytes (characters, for text) before any
    parsing."""
    size = body.nbytes if isinstance(body, memoryview) else len(body)
    if size > limit:
        raise MessageDecodeError(
            "body", f"is {size} bytes long; at most {limit} are accepted (max_body_bytes)"
        )


def _collect_headers(
    headers: RawHeaders, limits: Mapping[str, int], trace_names: frozenset[str]
) -> dict[str, str]:
    """The headers named in ``limits``, under lower-case names, as checked text.

    Other headers are skipped without being looked at.  A value longer than its limit,
    not text, or not printable ASCII is an error, except for the ``trace_names``,
    which are dropped instead and combined with ``,`` when repeated (a repeated
    ``traceparent`` then fails its format, as the W3C rule wants).
    """
    items: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for raw_name, raw_value in items:
        if isinstance(raw_name, str):
            name = raw_name.lower()
        elif isinstance(raw_name, bytes | bytearray):
            name = raw_name.decode("latin-1").lower()
        else:
            continue
        limit = limits.get(name)
        if limit is None:
            continue
        tracing = name in trace_names
        if isinstance(raw_value, str):
            value = raw_value
            size = len(value)
        elif isinstance(raw_value, bytes | bytearray | memoryview):
            size = raw_value.nbytes if isinstance(raw_value, memoryview) else len(raw_value)
            value = ""
        else:
            if tracing:
                continue
            raise MessageDecodeError(
                f"header {name}", f"must be text, got {type(raw_value).__name__}"
            )
        if size > limit:
            if tracing:
                continue
            raise MessageDecodeError(
                f"header {name}", f"is {size} characters long; at most {limit} are accepted"
            )
        if not isinstance(raw_value, str):
            try:
                value = str(raw_value, "ascii")
            except UnicodeDecodeError:
                if tracing:
                    continue
                raise MessageDecodeError(
                    f"header {name}", "is not ASCII text (non-ASCII text is percent-encoded)"
                ) from None
        if tracing:
            previous = found.get(name)
            found[name] = value if previous is None else f"{previous},{value}"
            continue
        if not (value.isascii() and value.isprintable()):  # printable ASCII or space
            raise MessageDecodeError(
                f"header {name}",
                "holds characters other than printable ASCII (control characters are "
                "refused; non-ASCII text is percent-encoded)",
            )
        if name in found:
            raise MessageDecodeError(f"header {name}", "appears more than once")
        found[name] = value
    return found


def _required(found: Mapping[str, str], name: str) -> str:
    """The header ``name`` of ``found``, or an error saying it is missing."""
    value = found.get(name)
    if value is None:
        raise MessageDecodeError(f"header {name}", "is missing; every message carries it")
    return value


def _resolve_type(registry: MessageRegistry, type_name: str, field: str) -> type[BaseMessage]:
    """The registered class of ``type_name``, after checking that it can be a name."""
    try:
        validate_type_name(type_name)
    except ValueError as exc:
        raise MessageDecodeError(field, str(exc)) from None
    return registry.resolve(type_name)


def _check_kind(cls: type[BaseMessage], kind: str, field: str) -> None:
    """Refuse a kind other than the class's (an event sent as a command, or worse)."""
    if kind == cls.message_kind:
        return
    if kind in _MESSAGE_KINDS:
        raise MessageDecodeError(
            field,
            f"says {kind!r}, but {cls.__message_type__!r} is "
            f"{'an' if cls.message_kind == 'event' else 'a'} {cls.message_kind}",
        )
    raise MessageDecodeError(field, "must be 'command', 'query' or 'event'")


def _check_json_media_type(content_type: str, field: str) -> None:
    """Refuse a media type other than ``application/json`` or a ``+json`` type."""
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != JSON_CONTENT_TYPE and not media_type.endswith("+json"):
        raise MessageDecodeError(
            field, f"is {_shown(media_type)}; the data must be JSON ({JSON_CONTENT_TYPE})"
        )


def _parse_time(text: str, field: str) -> datetime:
    """An aware datetime, its UTC offset kept as written."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise MessageDecodeError(
            field, "must be an ISO 8601 (RFC 3339) date and time with a UTC offset"
        ) from None
    if value.utcoffset() is None:
        raise MessageDecodeError(field, "has no UTC offset; the time would be ambiguous")
    return value


def _load_object(body: Body, field: str) -> dict[str, Any]:
    """``body`` parsed as a JSON object."""
    try:
        data = from_json(bytes(body) if isinstance(body, memoryview) else body, allow_inf_nan=False)
    except ValueError as exc:  # the message names the problem and where, never the text
        raise MessageDecodeError(field, f"is not valid JSON: {exc}") from None
    if type(data) is not dict:
        raise MessageDecodeError(field, f"must be a JSON object, not {_json_kind(data)}")
    return data


def _build_message(
    cls: type[BaseMessage],
    data: dict[str, Any],
    where: str,
    tracing: Mapping[str, object],
    sources: Mapping[str, str],
) -> BaseMessage:
    """The message of class ``cls`` from the business fields ``data`` (taken over, not
    copied) and the five ``tracing`` fields, which are all marked as set.

    The tracing fields are validated with the message's own rules; ``sources`` names
    the header or attribute each came from, for the error.  All five are given, so
    they are all decided: a message decoded inside a handler inherits none of that
    handler's ids (``model_validate`` runs the message's ``__init__``, whose
    inheritance fills only fields the data leaves out).
    """
    if not _TRACING_FIELD_SET.isdisjoint(data):
        name = min(_TRACING_FIELD_SET.intersection(data))
        raise MessageDecodeError(
            f"{where} field {name!r}", "is a tracing field, which never travels in the data"
        )
    data.update(tracing)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, where, sources) from None
    except RecursionError:
        raise MessageDecodeError(where, "nests too deeply to be validated") from None


def _trace_context(
    traceparent: str | None, tracestate: str | None, baggage: str | None
) -> dict[str, str]:
    """The valid parts of a W3C trace context; the others are dropped.

    ``tracestate`` is kept only with a valid ``traceparent`` (the W3C rule).
    """
    context: dict[str, str] = {}
    if traceparent is not None and _valid_traceparent(traceparent):
        context[TRACEPARENT] = traceparent
        if tracestate and _valid_list_header(tracestate):
            context[TRACESTATE] = tracestate
    if baggage and _valid_list_header(baggage):
        context[BAGGAGE] = baggage
    return context


def _shown(text: str, limit: int = 64) -> str:
    """``text`` fit for an error message: as it is when short and printable, else
    its ``repr``, cut at ``limit`` characters."""
    if len(text) <= limit and text.isprintable():
        return repr(text)
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _valid_traceparent(value: str) -> bool:
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return False
    version, trace_id, span_id, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return False
    return trace_id != _UNSET_TRACE_ID and span_id != _UNSET_SPAN_ID


def _valid_list_header(value: str) -> bool:
    return len(value) <= MAX_TRACE_HEADER_LENGTH and _LIST_HEADER.fullmatch(value) is not None


def _invalid(exc: ValidationError, where: str, sources: Mapping[str, str]) -> MessageDecodeError:
    problems = [
        (
            _error_location(error["loc"], where, sources),
            "".join(c if c.isprintable() else "?" for c in _problem_text(error)[:200]),
        )
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    field, problem = problems[0]
    others = "; ".join(f"{f}: {p}" for f, p in problems[1:5])
    if others:
        more = len(problems) - 5
        problem = f"{problem}; {others}" + (f"; and {more} more" if more > 0 else "")
    return MessageDecodeError(field, problem)


def _problem_text(error: ErrorDetails) -> str:
    # Our validators raise ValueError("must ..."): drop pydantic's "Value error, " prefix.
    message = error["msg"]
    return message.removeprefix("Value error, ") if error["type"] == "value_error" else message


def _error_location(loc: tuple[int | str, ...], where: str, sources: Mapping[str, str]) -> str:
    if not loc:
        return where
    source = sources.get(str(loc[0]))
    if source is not None:
        return source
    return f"{where} field {_shown('.'.join(map(str, loc)))}"


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return "a boolean" if isinstance(value, bool) else "a number"


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive number of bytes, got {value!r}")
    return value
