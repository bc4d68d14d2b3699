"""The CloudEvents 1.0 mapping, binary and structured: what the spec requires, what the
official SDK reads from us and writes to us, exact round trips, hostile input refused.

The SDK is used through both of its APIs: ``cloudevents.core`` (its bindings implement
the HTTP binding's percent-encoding) and the legacy ``cloudevents.v1.http`` API.
"""

from __future__ import annotations

import doctest
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any
from urllib.parse import unquote
from uuid import UUID, uuid4

import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from cloudevents.v1 import conversion as legacy_conversion
from cloudevents.v1.http import CloudEvent as LegacyEvent
from cloudevents.v1.http import from_http as legacy_from_http

import python_cqrs_core.cloudevents
from python_cqrs_core import (
    PII,
    BaseCommand,
    BaseEvent,
    Mediator,
    MessageRegistry,
    UnknownMessageTypeError,
    correlation_scope,
)
from python_cqrs_core.cloudevents import CloudEventCodec, DecodedCloudEvent
from python_cqrs_core.codec import Envelope, MessageDecodeError
from python_cqrs_core.propagation import is_settled

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACESTATE = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"
IST = timezone(timedelta(hours=5, minutes=30))
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")


class PlaceOrder(BaseCommand):
    __message_type__ = "com.example.cetest.PlaceOrder"
    order_id: str
    amount: int
    customer_email: Annotated[str, PII] = "nobody@example.com"


class OrderPlaced(BaseEvent):
    __message_type__ = "com.example.cetest.OrderPlaced"
    order_id: str
    lines: list[dict[str, int]] = []


REGISTRY = MessageRegistry([PlaceOrder, OrderPlaced])
MODES = ["binary", "structured"]


@pytest.fixture
def codec() -> CloudEventCodec:
    return CloudEventCodec(REGISTRY, source="https://orders.example.com/api")


def write(codec: CloudEventCodec, mode: str, message: Any, **options: Any) -> Envelope:
    options.setdefault("trace_context", {"traceparent": TRACEPARENT, "tracestate": TRACESTATE})
    return getattr(codec, f"to_{mode}")(message, **options)


def full_event() -> OrderPlaced:
    return OrderPlaced(
        order_id="o-1",
        lines=[{"sku": 1}],
        correlation_id="req-abc-123",
        causation_id=uuid4(),
        requested_by='Zoë "ops" 50% 李',
        requested_at=datetime(2024, 3, 1, 9, 30, 0, 250000, tzinfo=IST),
    )


def assert_same_message(decoded: Any, original: Any) -> None:
    assert type(decoded) is type(original)
    assert decoded == original
    for name in ("request_id", "correlation_id", "causation_id", "requested_by"):
        assert type(getattr(decoded, name)) is type(getattr(original, name)), name
    assert decoded.requested_at.isoformat() == original.requested_at.isoformat()


def structured_attributes(envelope: Envelope) -> dict[str, Any]:
    return json.loads(envelope.body)


# -- what the spec requires ---------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_required_attribute_is_present_and_well_formed(codec: CloudEventCodec, mode: str):
    event = full_event()
    envelope = write(codec, mode, event)
    if mode == "binary":
        attributes = {
            name.removeprefix("ce-"): unquote(value)
            for name, value in envelope.headers.items()
            if name.startswith("ce-")
        }
        attributes["datacontenttype"] = envelope.headers["content-type"]
    else:
        assert envelope.headers == {"content-type": "application/cloudevents+json"}
        attributes = structured_attributes(envelope)
    assert attributes["specversion"] == "1.0"
    assert UUID(attributes["id"]) == event.request_id
    assert attributes["source"] == "https://orders.example.com/api"
    assert attributes["type"] == "com.example.cetest.OrderPlaced"
    assert RFC3339.fullmatch(attributes["time"])
    assert datetime.fromisoformat(attributes["time"]).utcoffset() == timedelta(hours=5, minutes=30)
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["correlationid"] == "req-abc-123"
    assert attributes["causationid"] == str(event.causation_id)
    assert attributes["requestedby"] == 'Zoë "ops" 50% 李'
    assert attributes["cqrskind"] == "event"
    assert attributes["traceparent"] == TRACEPARENT
    assert attributes["tracestate"] == TRACESTATE


def test_extension_attribute_names_are_lower_case_alphanumeric(codec: CloudEventCodec):
    attributes = structured_attributes(write(codec, "structured", full_event()))
    standard = {"specversion", "id", "source", "type", "time", "datacontenttype", "data"}
    extensions = set(attributes) - standard
    assert extensions == {
        "correlationid",
        "causationid",
        "requestedby",
        "cqrskind",
        "traceparent",
        "tracestate",
    }
    assert all(EXTENSION_NAME.fullmatch(name) for name in extensions)


def test_binary_header_values_are_percent_encoded_as_the_http_binding_requires(
    codec: CloudEventCodec,
):
    headers = write(codec, "binary", full_event()).headers
    for name, value in headers.items():
        assert re.fullmatch(r"[!#-~]*", value), name  # printable ASCII, no space or '"'...
        assert not re.search(r"%(?![0-9A-F]{2})", value), name  # ...'%' only in escapes
    assert headers["ce-requestedby"] == "Zo%C3%AB%20%22ops%22%2050%25%20%E6%9D%8E"
    assert headers["ce-tracestate"] == "congo=t61rcWkgMzE,%20rojo=00f067aa0ba902b7"


def test_the_data_is_the_business_fields(codec: CloudEventCodec):
    event = full_event()
    binary = write(codec, "binary", event)
    structured = structured_attributes(write(codec, "structured", event))
    assert (
        json.loads(binary.body) == structured["data"] == {"order_id": "o-1", "lines": [{"sku": 1}]}
    )


def test_the_default_source_is_a_relative_uri_reference():
    codec = CloudEventCodec(REGISTRY)
    assert codec.source == "/python-cqrs-core"
    assert write(codec, "binary", full_event()).headers["ce-source"] == "/python-cqrs-core"


@pytest.mark.parametrize("source", ["", "has space", "/tab\there", "é", "x" * 2049, 42])
def test_a_source_that_is_not_a_uri_reference_is_refused_at_configuration(source: Any):
    with pytest.raises(ValueError, match="source must be a URI-reference"):
        CloudEventCodec(REGISTRY, source=source)


def test_baggage_has_no_cloudevents_attribute_and_is_not_sent(codec: CloudEventCodec):
    envelope = write(
        codec, "binary", full_event(), trace_context={"traceparent": TRACEPARENT, "baggage": "a=1"}
    )
    assert "ce-baggage" not in envelope.headers and "baggage" not in envelope.headers


@pytest.mark.parametrize("mode", MODES)
def test_an_invalid_trace_context_is_never_sent(codec: CloudEventCodec, mode: str):
    envelope = write(
        codec, mode, full_event(), trace_context={"traceparent": "00-bad", "tracestate": "a=1"}
    )
    assert "traceparent" not in str(envelope) and "tracestate" not in str(envelope)


# -- the official SDK reads what we write --------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_the_sdk_reads_our_events_with_the_same_attribute_values(codec: CloudEventCodec, mode: str):
    event = full_event()
    envelope = write(codec, mode, event)
    read = sdk_http.from_http(sdk_http.HTTPMessage(envelope.headers, envelope.body), JSONFormat())
    assert read.get_specversion() == "1.0"
    assert read.get_id() == str(event.request_id)
    assert read.get_source() == "https://orders.example.com/api"
    assert read.get_type() == "com.example.cetest.OrderPlaced"
    assert read.get_time() == event.requested_at
    assert read.get_time().utcoffset() == timedelta(hours=5, minutes=30)
    assert read.get_datacontenttype() == "application/json"
    assert read.get_extension("correlationid") == "req-abc-123"
    assert read.get_extension("causationid") == str(event.causation_id)
    assert read.get_extension("requestedby") == 'Zoë "ops" 50% 李'
    assert read.get_extension("cqrskind") == "event"
    assert read.get_extension("traceparent") == TRACEPARENT
    assert read.get_extension("tracestate") == TRACESTATE
    assert read.get_data() == {"order_id": "o-1", "lines": [{"sku": 1}]}


@pytest.mark.parametrize("mode", MODES)
def test_the_legacy_sdk_api_reads_our_events(codec: CloudEventCodec, mode: str):
    event = full_event().model_copy(update={"requested_by": "alice"})
    envelope = write(codec, mode, event, trace_context={"traceparent": TRACEPARENT})
    read = legacy_from_http(envelope.headers, envelope.body)
    assert read["specversion"] == "1.0"
    assert read["id"] == str(event.request_id)
    assert read["source"] == "https://orders.example.com/api"
    assert read["type"] == "com.example.cetest.OrderPlaced"
    assert datetime.fromisoformat(read["time"]) == event.requested_at
    assert read["correlationid"] == "req-abc-123"
    assert read["causationid"] == str(event.causation_id)
    assert read["requestedby"] == "alice"
    assert read["cqrskind"] == "event"
    assert read["traceparent"] == TRACEPARENT
    assert read.data == {"order_id": "o-1", "lines": [{"sku": 1}]}


def test_the_legacy_sdk_api_leaves_binary_values_percent_encoded(codec: CloudEventCodec):
    # The legacy reader does not apply the HTTP binding's percent-decoding; the
    # value it returns is ours, encoded, and unquote() restores it.
    envelope = write(codec, "binary", full_event())
    read = legacy_from_http(envelope.headers, envelope.body)
    assert unquote(read["requestedby"]) == 'Zoë "ops" 50% 李'


# -- we read what the official SDK writes ---------------------------------------------------


def sdk_event(**attributes: Any) -> SdkEvent:
    base = {
        "id": str(uuid4()),
        "source": "urn:example:billing",
        "type": "com.example.cetest.OrderPlaced",
        "time": datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-3))),
        "datacontenttype": "application/json",
    }
    return SdkEvent({**base, **attributes}, {"order_id": "o-9"})


@pytest.mark.parametrize("mode", MODES)
def test_we_read_events_the_sdk_writes(codec: CloudEventCodec, mode: str):
    written = sdk_event(
        correlationid="req-9",
        causationid="cmd-8",
        requestedby="José Ø",
        cqrskind="event",
        traceparent=TRACEPARENT,
    )
    http = getattr(sdk_http, f"to_{mode}")(written, JSONFormat())
    received = codec.from_http(http.headers, http.body)
    message = received.message
    assert isinstance(message, OrderPlaced) and message.order_id == "o-9"
    assert message.request_id == UUID(written.get_id())
    assert (message.correlation_id, message.causation_id) == ("req-9", "cmd-8")
    assert message.requested_by == "José Ø"
    assert message.requested_at == written.get_time()
    assert message.requested_at.utcoffset() == timedelta(hours=-3)
    assert received.source == "urn:example:billing"
    assert received.trace_context == {"traceparent": TRACEPARENT}


@pytest.mark.parametrize("mode", MODES)
def test_a_utc_time_written_with_z_is_read(codec: CloudEventCodec, mode: str):
    written = sdk_event(time=datetime(2024, 3, 1, 9, 30, tzinfo=UTC))
    http = getattr(sdk_http, f"to_{mode}")(written, JSONFormat())
    assert "Z" in (http.headers.get("ce-time") or json.loads(http.body)["time"])
    message = codec.from_http(http.headers, http.body).message
    assert message.requested_at == datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    assert message.requested_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize("mode", MODES)
def test_we_read_events_the_legacy_sdk_api_writes(codec: CloudEventCodec, mode: str):
    written = LegacyEvent(
        {
            "type": "com.example.cetest.OrderPlaced",
            "source": "/billing",
            "correlationid": "req-7",
            "requestedby": "ada",
        },
        {"order_id": "o-7"},
    )
    headers, body = getattr(legacy_conversion, f"to_{mode}")(written)
    received = codec.from_http(headers, body)
    assert received.message.request_id == UUID(written["id"])
    assert received.message.correlation_id == "req-7"
    assert received.message.requested_by == "ada"
    assert received.message.requested_at == datetime.fromisoformat(written["time"])
    assert received.source == "/billing"


@pytest.mark.parametrize("mode", MODES)
def test_an_event_without_our_extensions_is_a_root(codec: CloudEventCodec, mode: str):
    written = sdk_event()
    http = getattr(sdk_http, f"to_{mode}")(written, JSONFormat())
    message = codec.from_http(http.headers, http.body).message
    assert message.correlation_id == message.request_id == UUID(written.get_id())
    assert message.causation_id is None and message.requested_by is None
    assert is_settled(message)


# -- exact round trips --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "message",
    [
        full_event(),
        OrderPlaced(order_id="o", correlation_id=uuid4(), causation_id=uuid4()),
        OrderPlaced(order_id="o", correlation_id="gw:1/2", requested_by="🚀 bot  "),
        OrderPlaced(
            order_id="o",
            correlation_id="c",
            requested_at=datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
        ),
        OrderPlaced(
            order_id="o", correlation_id="c", requested_at=datetime(2024, 1, 1, tzinfo=UTC)
        ),
        OrderPlaced(order_id="o", correlation_id="c", requested_by=""),
        PlaceOrder(order_id="o", amount=2, correlation_id="c", customer_email="ada@example.com"),
    ],
    ids=["full", "uuid ids", "opaque+unicode", "-09:30", "utc", "empty requested_by", "pii"],
)
def test_every_message_comes_back_exactly(codec: CloudEventCodec, mode: str, message: Any):
    envelope = write(codec, mode, message)
    received = codec.from_http(*envelope)
    assert isinstance(received, DecodedCloudEvent)
    assert_same_message(received.message, message)
    assert received.trace_context == {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    assert received.source == codec.source


@pytest.mark.parametrize("mode", MODES)
def test_absent_causation_and_requested_by_are_left_out_and_stay_none(
    codec: CloudEventCodec, mode: str
):
    message = OrderPlaced(order_id="o", correlation_id="c")
    envelope = write(codec, mode, message)
    text = json.dumps(envelope.headers) + envelope.body.decode()
    assert "causationid" not in text and "requestedby" not in text
    received = codec.from_http(*envelope).message
    assert received.causation_id is None and received.requested_by is None


def test_the_mode_specific_readers_read_their_mode(codec: CloudEventCodec):
    message = full_event()
    binary, structured = write(codec, "binary", message), write(codec, "structured", message)
    assert codec.from_binary(*binary).message == message
    assert codec.from_structured(structured.body).message == message


def test_binary_headers_arrive_in_any_case_as_bytes(codec: CloudEventCodec):
    message = full_event()
    headers, body = write(codec, "binary", message)
    pairs = [(name.title().encode(), value.encode()) for name, value in headers.items()]
    assert_same_message(codec.from_http(pairs, memoryview(body)).message, message)


async def test_a_message_decoded_inside_a_handler_inherits_nothing(
    bus: Mediator, codec: CloudEventCodec
):
    envelope = write(codec, "structured", OrderPlaced(order_id="remote"))
    decoded: list[Any] = []

    async def place(command: PlaceOrder) -> None:
        decoded.append(codec.from_http(*envelope).message)

    bus.register(PlaceOrder, place)
    with correlation_scope("req-scope"):
        await bus.send(PlaceOrder(order_id="local", amount=1, requested_by="someone"))
    assert decoded[0].causation_id is None and decoded[0].requested_by is None
    assert decoded[0].correlation_id == decoded[0].request_id


# -- hostile input ------------------------------------------------------------------------


def decode_error(codec: CloudEventCodec, headers: Any, body: Any) -> MessageDecodeError:
    with pytest.raises(MessageDecodeError) as caught:
        codec.from_http(headers, body)
    error = caught.value
    assert str(error).startswith(f"{error.field}: ")
    assert len(str(error)) < 600 and str(error).isprintable()
    return error


def structured_with(codec: CloudEventCodec, **changes: Any) -> tuple[dict[str, str], bytes]:
    envelope = write(codec, "structured", full_event())
    event = json.loads(envelope.body)
    for name, value in changes.items():
        if value is None:
            del event[name]
        else:
            event[name] = value
    return envelope.headers, json.dumps(event).encode()


@pytest.mark.parametrize("attribute", ["id", "source", "specversion", "type", "time"])
def test_a_missing_required_attribute_is_named(codec: CloudEventCodec, attribute: str):
    headers, body = write(codec, "binary", full_event())
    del headers[f"ce-{attribute}"]
    if attribute == "specversion":
        error = decode_error(codec, headers, body)
        assert error.field == "headers"  # without it, nothing says this is a CloudEvent
    else:
        assert decode_error(codec, headers, body).field == f"header ce-{attribute}"
    headers, body = structured_with(codec, **{attribute: None})
    assert decode_error(codec, headers, body).field == f"attribute {attribute}"


@pytest.mark.parametrize(
    ("attribute", "value", "field"),
    [
        ("specversion", "0.3", "attribute specversion"),
        ("id", "not-a-uuid", "attribute id"),
        ("id", 12345, "attribute id"),
        ("source", "has space", "attribute source"),
        ("type", "bad type", "attribute type"),
        ("time", "2024-03-01T09:30:00", "attribute time"),
        ("correlationid", "req\r\n1", "attribute correlationid"),
        ("correlationid", "r" * 500, "attribute correlationid"),
        ("causationid", ["not", "text"], "attribute causationid"),
        ("requestedby", "line\nbreak", "attribute requestedby"),
        ("cqrskind", "command", "attribute cqrskind"),
        ("datacontenttype", "text/xml", "attribute datacontenttype"),
        ("data", [1, 2], "attribute data"),
        ("data", '{"order_id": "o"}', "attribute data"),
        ("data_base64", "eyJvcmRlcl9pZCI6ICJvIn0=", "attribute data_base64"),
    ],
)
def test_a_malformed_structured_attribute_is_named(
    codec: CloudEventCodec, attribute: str, value: Any, field: str
):
    headers, body = structured_with(codec, **{attribute: value})
    error = decode_error(codec, headers, body)
    assert error.field == field
    if isinstance(value, str) and len(value) > 64:
        assert value not in str(error)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("ce-id", "1234"),
        ("ce-correlationid", "req%0D%0AX-Injected:%20yes"),
        ("ce-correlationid", "req\r\n1"),
        ("ce-requestedby", "%zz"),
        ("ce-requestedby", "%C3%28"),
        ("ce-requestedby", "x" * 10_000),
        ("ce-time", "yesterday"),
        ("ce-source", "%20"),
        ("content-type", "application/xml"),
    ],
)
def test_a_malformed_binary_header_is_named(codec: CloudEventCodec, header: str, value: str):
    headers, body = write(codec, "binary", full_event())
    headers[header] = value
    error = decode_error(codec, headers, body)
    assert error.field == f"header {header}"
    if len(value) > 64:
        assert value not in str(error)


def test_an_unknown_type_raises_unknown_message_type_error(codec: CloudEventCodec):
    headers, body = structured_with(codec, type="com.example.billing.InvoicePaid")
    with pytest.raises(UnknownMessageTypeError):
        codec.from_http(headers, body)


def test_the_data_cannot_carry_tracing_fields(codec: CloudEventCodec):
    headers, body = structured_with(codec, data={"order_id": "o", "request_id": str(uuid4())})
    assert decode_error(codec, headers, body).field == "attribute data field 'request_id'"


def test_data_that_fails_validation_names_the_field(codec: CloudEventCodec):
    headers, _ = write(codec, "binary", full_event())
    error = decode_error(codec, headers, b'{"lines": "no"}')
    assert error.field == "body field 'order_id'"
    assert "body field 'lines'" in error.problem


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"content-type": "application/json"}, "carry no CloudEvent"),
        ({}, "carry no CloudEvent"),
        ({"content-type": "application/cloudevents-batch+json"}, "single events"),
        ({"content-type": "application/cloudevents+avro"}, "single events"),
    ],
)
def test_what_is_not_a_single_json_cloudevent_is_refused(
    codec: CloudEventCodec, headers: dict[str, str], problem: str
):
    assert problem in decode_error(codec, headers, b"[]").problem


def test_an_oversized_body_is_refused_before_it_is_parsed():
    codec = CloudEventCodec(REGISTRY, max_body_bytes=100)
    headers, body = write(codec, "structured", full_event())
    assert len(body) > 100
    error = decode_error(codec, headers, body)
    assert error.field == "body" and "max_body_bytes" in error.problem
    with pytest.raises(MessageDecodeError, match="max_body_bytes"):
        codec.from_structured(body)


@pytest.mark.parametrize("body", [b"{", b"\xff", b"[" * 10_000, b"null"])
def test_a_structured_body_that_is_not_a_json_object_is_refused(
    codec: CloudEventCodec, body: bytes
):
    headers = {"content-type": "application/cloudevents+json"}
    assert decode_error(codec, headers, body).field == "body"


def test_a_malformed_trace_context_is_dropped_not_fatal(codec: CloudEventCodec):
    message = full_event()
    headers, body = write(codec, "binary", message)
    headers["ce-traceparent"] = "00-zz%0A"
    headers["ce-tracestate"] = "%ff"
    received = codec.from_http(headers, body)
    assert received.trace_context == {}
    assert received.message == message
    headers, body = structured_with(codec, traceparent=42)
    assert codec.from_http(headers, body).trace_context == {}


def test_the_docstring_examples_run():
    result = doctest.testmod(python_cqrs_core.cloudevents, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
