"""The envelope codec: messages to headers + body and back, exactly; hostile input refused."""

from __future__ import annotations

import doctest
import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import BaseModel, Field, computed_field

import python_cqrs_core.codec
from python_cqrs_core import (
    PII,
    BaseCommand,
    BaseEvent,
    BaseQuery,
    CQRSError,
    Mediator,
    MessageRegistry,
    UnknownMessageTypeError,
    correlation_scope,
)
from python_cqrs_core.codec import (
    DEFAULT_MAX_BODY_BYTES,
    DecodedMessage,
    EnvelopeCodec,
    MessageDecodeError,
)
from python_cqrs_core.propagation import is_settled

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACESTATE = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"
BAGGAGE = "tenant=acme,region=eu%20west"


class Address(BaseModel):
    street: str
    city: str


class PlaceOrder(BaseCommand):
    __message_type__ = "codectest.PlaceOrder"
    order_id: str
    amount: int
    customer_email: Annotated[str, PII] = "nobody@example.com"


class OrderPlaced(BaseEvent):
    __message_type__ = "codectest.OrderPlaced"
    order_id: str
    ship_to: Address | None = None
    tags: list[str] = []
    unit_price: float = Field(default=1.0, alias="unitPrice")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tag_count(self) -> int:
        return len(self.tags)


class GetOrder(BaseQuery):
    order_id: str


REGISTRY = MessageRegistry([PlaceOrder, OrderPlaced, GetOrder])


async def ignore(message: Any) -> None:
    """A subscriber that does nothing."""


@pytest.fixture
def codec() -> EnvelopeCodec:
    return EnvelopeCodec(REGISTRY)


def round_trip(codec: EnvelopeCodec, message: Any, **encode: Any) -> DecodedMessage:
    headers, body = codec.encode(message, **encode)
    return codec.decode(headers, body)


def assert_same_message(decoded: Any, original: Any) -> None:
    """Equal field by field, of the same types, the time with the same offset."""
    assert type(decoded) is type(original)
    assert decoded == original
    for name in ("request_id", "correlation_id", "causation_id", "requested_by"):
        assert type(getattr(decoded, name)) is type(getattr(original, name)), name
    assert decoded.requested_at.utcoffset() == original.requested_at.utcoffset()
    assert decoded.requested_at.isoformat() == original.requested_at.isoformat()


# -- round trips -------------------------------------------------------------------------


async def test_a_dispatched_chain_comes_back_with_its_uuid_ids(bus: Mediator, codec: EnvelopeCodec):
    sent: list[OrderPlaced] = []

    async def place(command: PlaceOrder) -> None:
        event = OrderPlaced(order_id=command.order_id)
        sent.append(event)
        await bus.publish(event)

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, ignore)
    command = PlaceOrder(order_id="o-1", amount=3, requested_by="alice")
    await bus.send(command)

    for original in (command, sent[0]):
        decoded = round_trip(codec, original, trace_context={}).message
        assert_same_message(decoded, original)
    event = round_trip(codec, sent[0], trace_context={}).message
    assert isinstance(event.correlation_id, UUID) and event.correlation_id == command.request_id
    assert isinstance(event.causation_id, UUID) and event.causation_id == command.request_id


def test_opaque_ids_stay_strings_and_uuid_ids_stay_uuids(codec: EnvelopeCodec):
    opaque = OrderPlaced(order_id="o-1", correlation_id="req-abc-123", causation_id="gw:42/x")
    uuids = OrderPlaced(order_id="o-1", correlation_id=uuid4(), causation_id=uuid4())
    for original in (opaque, uuids):
        assert_same_message(round_trip(codec, original, trace_context={}).message, original)
    assert round_trip(codec, opaque, trace_context={}).message.correlation_id == "req-abc-123"


@pytest.mark.parametrize(
    "requested_by",
    [
        "alice",
        "José Martínez",
        "李小龙",
        "🚀 deploy-bot",
        'quote " percent % plus + colon :',
        "  padded  ",
        "%41 is not an escape here",
        "",
        "x" * 256,
        "é" * 256,
    ],
)
def test_requested_by_comes_back_exactly_through_an_ascii_header(
    codec: EnvelopeCodec, requested_by: str
):
    original = PlaceOrder(order_id="o-1", amount=1, requested_by=requested_by)
    headers, body = codec.encode(original, trace_context={})
    assert headers["cqrs-requested-by"].isascii()
    assert " " not in headers["cqrs-requested-by"]
    assert codec.decode(headers, body).message.requested_by == requested_by


@pytest.mark.parametrize(
    "requested_at",
    [
        datetime(2024, 3, 1, 9, 30, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-3))),
        datetime(2024, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=14))),
        datetime(2024, 3, 1, 9, 30, tzinfo=UTC),
        datetime(2024, 7, 1, 9, 30, tzinfo=ZoneInfo("America/New_York")),
    ],
    ids=["+05:30", "-03:00", "+14:00", "UTC", "named zone"],
)
def test_requested_at_keeps_its_offset(codec: EnvelopeCodec, requested_at: datetime):
    original = OrderPlaced(order_id="o-1", requested_at=requested_at)
    decoded = round_trip(codec, original, trace_context={}).message
    assert decoded.requested_at == requested_at
    assert decoded.requested_at.utcoffset() == requested_at.utcoffset()
    assert decoded.requested_at.microsecond == requested_at.microsecond


def test_a_named_zone_arrives_as_its_fixed_offset(codec: EnvelopeCodec):
    kolkata = datetime(2024, 3, 1, 9, 30, tzinfo=ZoneInfo("Asia/Kolkata"))
    decoded = round_trip(codec, OrderPlaced(order_id="o", requested_at=kolkata), trace_context={})
    assert decoded.message.requested_at.isoformat() == "2024-03-01T09:30:00+05:30"


def test_absent_causation_and_requested_by_stay_none_and_send_no_header(codec: EnvelopeCodec):
    original = OrderPlaced(order_id="o-1", correlation_id="req-1")
    headers, body = codec.encode(original, trace_context={})
    assert "cqrs-causation-id" not in headers and "cqrs-requested-by" not in headers
    decoded = codec.decode(headers, body).message
    assert decoded.causation_id is None and decoded.requested_by is None
    assert_same_message(decoded, original)


def test_decoded_messages_have_every_tracing_field_set_as_dispatched(codec: EnvelopeCodec):
    decoded = round_trip(codec, OrderPlaced(order_id="o-1"), trace_context={}).message
    assert {
        "request_id",
        "correlation_id",
        "causation_id",
        "requested_by",
        "requested_at",
    } <= decoded.model_fields_set
    assert is_settled(decoded)


def test_a_message_never_dispatched_travels_with_the_correlation_id_its_dispatch_would_settle(
    codec: EnvelopeCodec,
):
    original = OrderPlaced(order_id="o-1")
    assert original.correlation_id is None
    headers, body = codec.encode(original, trace_context={})
    assert headers["cqrs-correlation-id"] == str(original.request_id)
    assert codec.decode(headers, body).message.correlation_id == original.request_id


def test_personal_data_travels_unredacted_for_the_handler(codec: EnvelopeCodec):
    original = PlaceOrder(order_id="o-1", amount=1, customer_email="ada@example.com")
    headers, body = codec.encode(original, trace_context={})
    assert b"ada@example.com" in body
    assert codec.decode(headers, body).message.customer_email == "ada@example.com"


def test_the_body_holds_only_the_business_fields_by_alias(codec: EnvelopeCodec):
    original = OrderPlaced(
        order_id="o-1",
        ship_to=Address(street="1 Main St", city="Lyon"),
        tags=["a", "b"],
        unitPrice=2.5,
        correlation_id="req-1",
        requested_by="alice",
    )
    headers, body = codec.encode(original, trace_context={})
    assert body == (
        b'{"order_id":"o-1","ship_to":{"street":"1 Main St","city":"Lyon"},'
        b'"tags":["a","b"],"unitPrice":2.5}'
    )
    assert headers == {
        "cqrs-message-id": str(original.request_id),
        "cqrs-message-type": "codectest.OrderPlaced",
        "cqrs-message-kind": "event",
        "cqrs-correlation-id": "req-1",
        "cqrs-requested-by": "alice",
        "cqrs-requested-at": original.requested_at.isoformat(),
        "content-type": "application/json",
    }
    assert_same_message(codec.decode(headers, body).message, original)


def test_every_kind_round_trips(codec: EnvelopeCodec):
    for original in (
        PlaceOrder(order_id="o", amount=1, correlation_id="req-1"),
        OrderPlaced(order_id="o", correlation_id="req-1"),
        GetOrder(order_id="o", correlation_id="req-1"),
    ):
        headers, body = codec.encode(original, trace_context={})
        assert headers["cqrs-message-kind"] == original.message_kind
        assert_same_message(codec.decode(headers, body).message, original)


def test_encoding_leaves_the_message_unchanged(codec: EnvelopeCodec):
    original = OrderPlaced(order_id="o-1")
    before = (dict(original.__dict__), set(original.model_fields_set))
    codec.encode(original, trace_context={})
    assert (original.__dict__, original.model_fields_set) == before


async def test_a_message_decoded_inside_a_handler_inherits_nothing(
    bus: Mediator, codec: EnvelopeCodec
):
    headers, body = codec.encode(OrderPlaced(order_id="remote"), trace_context={})
    decoded: list[Any] = []

    async def place(command: PlaceOrder) -> None:
        decoded.append(codec.decode(headers, body).message)

    bus.register(PlaceOrder, place)
    with correlation_scope("req-scope", requested_by="scope-user"):
        await bus.send(PlaceOrder(order_id="local", amount=1, requested_by="handler-user"))
    message = decoded[0]
    assert message.correlation_id == UUID(headers["cqrs-correlation-id"])
    assert message.causation_id is None and message.requested_by is None


async def test_a_decoded_message_dispatched_keeps_its_ids(bus: Mediator, codec: EnvelopeCodec):
    original = OrderPlaced(order_id="o-1", correlation_id="req-1", causation_id="cmd-1")
    decoded = round_trip(codec, original, trace_context={}).message
    bus.subscribe(OrderPlaced, ignore)
    with correlation_scope("req-other"):
        await bus.publish(decoded)
    assert_same_message(decoded, original)


# -- headers as brokers and HTTP deliver them -------------------------------------------


def test_header_names_in_any_case_and_values_as_bytes_are_read(codec: EnvelopeCodec):
    original = PlaceOrder(
        order_id="o-1", amount=1, correlation_id=uuid4(), causation_id="c-1", requested_by="Zoë"
    )
    headers, body = codec.encode(original, trace_context={"traceparent": TRACEPARENT})
    as_pairs = [(name.upper().encode(), value.encode()) for name, value in headers.items()]
    as_pairs.append((b"x-unrelated", b"\xff\xfe not ours, not looked at"))
    decoded = codec.decode(as_pairs, bytearray(body))
    assert_same_message(decoded.message, original)
    assert decoded.trace_context == {"traceparent": TRACEPARENT}

    mixed = {name.title(): value for name, value in headers.items()}
    assert_same_message(codec.decode(mixed, memoryview(body)).message, original)
    assert_same_message(codec.decode(headers, body.decode()).message, original)


# -- trace context ------------------------------------------------------------------------


def test_the_current_opentelemetry_context_travels_by_default(codec: EnvelopeCodec):
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with tracer.start_as_current_span("publish") as span:
            headers, body = codec.encode(OrderPlaced(order_id="o-1"))
            trace_id = span.get_span_context().trace_id
    finally:
        context.detach(token)
        provider.shutdown()
    assert headers["traceparent"].split("-")[1] == f"{trace_id:032x}"
    assert headers["baggage"] == "tenant=acme"

    received = codec.decode(headers, body)
    remote = trace.get_current_span(
        TraceContextTextMapPropagator().extract(carrier=received.trace_context)
    )
    assert remote.get_span_context().trace_id == trace_id


def test_no_trace_headers_without_a_current_context(codec: EnvelopeCodec):
    headers, _ = codec.encode(OrderPlaced(order_id="o-1"))
    assert not {"traceparent", "tracestate", "baggage"} & headers.keys()


def test_an_explicit_trace_context_is_sent_and_comes_back(codec: EnvelopeCodec):
    given = {
        "traceparent": TRACEPARENT,
        "tracestate": TRACESTATE,
        "baggage": BAGGAGE,
        "b3": "not a W3C header",
    }
    headers, body = codec.encode(OrderPlaced(order_id="o-1"), trace_context=given)
    assert "b3" not in headers
    assert codec.decode(headers, body).trace_context == {
        "traceparent": TRACEPARENT,
        "tracestate": TRACESTATE,
        "baggage": BAGGAGE,
    }


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # unset trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # unset span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # upper case
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # v00 + more
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nX-Evil: 1",
        "x" * 10_000,
    ],
)
def test_a_malformed_traceparent_is_dropped_with_its_tracestate_not_the_message(
    codec: EnvelopeCodec, traceparent: str
):
    original = OrderPlaced(order_id="o-1", correlation_id="req-1")
    headers, body = codec.encode(
        original, trace_context={"tracestate": TRACESTATE, "baggage": BAGGAGE}
    )
    headers["traceparent"] = traceparent
    decoded = codec.decode(headers, body)
    assert decoded.trace_context == {"baggage": BAGGAGE}
    assert_same_message(decoded.message, original)


def test_a_future_traceparent_version_with_more_fields_is_kept(codec: EnvelopeCodec):
    future = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes-next"
    headers, body = codec.encode(OrderPlaced(order_id="o"), trace_context={"traceparent": future})
    assert codec.decode(headers, body).trace_context == {"traceparent": future}


def test_a_future_traceparent_version_with_unprintable_fields_is_dropped(codec: EnvelopeCodec):
    headers, body = codec.encode(OrderPlaced(order_id="o"), trace_context={})
    headers["traceparent"] = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-\x00"
    assert codec.decode(headers, body).trace_context == {}


def test_an_invalid_trace_context_is_never_sent(codec: EnvelopeCodec):
    given = {
        "traceparent": TRACEPARENT + "\r\nX-Evil: 1",
        "tracestate": TRACESTATE,
        "baggage": "a=\n",
    }
    headers, _ = codec.encode(OrderPlaced(order_id="o"), trace_context=given)
    assert not {"traceparent", "tracestate", "baggage"} & headers.keys()


def test_a_repeated_traceparent_is_ambiguous_and_dropped(codec: EnvelopeCodec):
    headers, body = codec.encode(OrderPlaced(order_id="o"), trace_context={})
    pairs = [*headers.items(), ("traceparent", TRACEPARENT), ("Traceparent", TRACEPARENT)]
    assert codec.decode(pairs, body).trace_context == {}


def test_repeated_baggage_headers_are_combined(codec: EnvelopeCodec):
    headers, body = codec.encode(OrderPlaced(order_id="o"), trace_context={})
    pairs = [*headers.items(), ("baggage", "a=1"), ("baggage", "b=2")]
    assert codec.decode(pairs, body).trace_context == {"baggage": "a=1,b=2"}


@pytest.mark.parametrize("bad", ["a=1\nb=2", "k=" + "v" * 9000, "a=\x00"])
def test_malformed_baggage_is_dropped(codec: EnvelopeCodec, bad: str):
    headers, body = codec.encode(OrderPlaced(order_id="o"), trace_context={"baggage": bad})
    assert codec.decode(headers, body).trace_context == {}


# -- hostile input ------------------------------------------------------------------------


def encoded(codec: EnvelopeCodec, **fields: Any) -> tuple[dict[str, str], bytes]:
    return codec.encode(
        PlaceOrder(order_id="o-1", amount=1, requested_by="alice", causation_id="c-1", **fields),
        trace_context={},
    )


def assert_safe(error: MessageDecodeError, field: str) -> None:
    """The error names the place, and repeats nothing long or unprintable."""
    assert error.field == field
    text = str(error)
    assert text.startswith(f"{field}: ")
    assert len(text) < 600
    assert text.isprintable()


def decode_error(codec: EnvelopeCodec, headers: Any, body: Any) -> MessageDecodeError:
    with pytest.raises(MessageDecodeError) as caught:
        codec.decode(headers, body)
    return caught.value


@pytest.mark.parametrize(
    "header",
    ["cqrs-message-id", "cqrs-message-type", "cqrs-correlation-id", "cqrs-requested-at"],
)
def test_a_missing_required_header_is_named(codec: EnvelopeCodec, header: str):
    headers, body = encoded(codec)
    del headers[header]
    error = decode_error(codec, headers, body)
    assert_safe(error, f"header {header}")
    assert "missing" in error.problem


def test_an_unknown_type_name_raises_unknown_message_type_error(codec: EnvelopeCodec):
    headers, body = encoded(codec)
    headers["cqrs-message-type"] = "billing.InvoicePaid"
    with pytest.raises(UnknownMessageTypeError) as caught:
        codec.decode(headers, body)
    assert caught.value.type_name == "billing.InvoicePaid"


@pytest.mark.parametrize("type_name", ["orders PlaceOrder", "x" * 257, ""])
def test_a_type_name_that_cannot_be_a_name_is_refused_unrepeated(
    codec: EnvelopeCodec, type_name: str
):
    headers, body = encoded(codec)
    headers["cqrs-message-type"] = type_name
    error = decode_error(codec, headers, body)
    assert_safe(error, "header cqrs-message-type")
    assert type_name not in error.problem or not type_name


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("cqrs-correlation-id", "req-1\r\nX-Injected: yes"),
        ("cqrs-correlation-id", "req 1"),
        ("cqrs-correlation-id", "r" * 129),
        ("cqrs-correlation-id", ""),
        ("cqrs-causation-id", "c\t1"),
        ("cqrs-causation-id", "c" * 5000),
        ("cqrs-message-id", "not-a-uuid"),
        ("cqrs-message-id", "1234"),
        ("cqrs-message-id", "0af7651916cd43dd8448eb211c80319c-but-longer-than-any-uuid-form"),
        ("cqrs-message-kind", "command\n"),
        ("cqrs-requested-at", "yesterday"),
        ("cqrs-requested-at", "2024-03-01T09:30:00"),
        ("cqrs-requested-at", "2024-03-01"),
        ("cqrs-requested-by", "%zz"),
        ("cqrs-requested-by", "%ff%fe"),
        ("cqrs-requested-by", "line%0Abreak"),
        ("cqrs-requested-by", "%E2%80%A8"),
        ("cqrs-requested-by", "%41" * 257),
        ("cqrs-requested-by", "é"),
        ("content-type", "text/plain"),
    ],
)
def test_a_malformed_header_is_named_and_not_repeated(
    codec: EnvelopeCodec, header: str, value: str
):
    headers, body = encoded(codec)
    headers[header] = value
    error = decode_error(codec, headers, body)
    assert_safe(error, f"header {header}")
    if len(value) > 10:
        assert value not in str(error)


def test_a_long_header_is_refused_by_its_length_before_it_is_read(codec: EnvelopeCodec):
    headers, body = encoded(codec)
    headers["cqrs-correlation-id"] = "\x00" * 1_000_000
    error = decode_error(codec, headers, body)
    assert_safe(error, "header cqrs-correlation-id")
    assert "1000000 characters" in error.problem


def test_header_bytes_that_are_not_ascii_are_refused(codec: EnvelopeCodec):
    headers, body = encoded(codec)
    pairs = [(name, value.encode()) for name, value in headers.items()]
    pairs[0] = ("cqrs-message-id", "é".encode())
    assert_safe(decode_error(codec, pairs, body), "header cqrs-message-id")


def test_a_header_value_that_is_not_text_is_refused(codec: EnvelopeCodec):
    headers, body = encoded(codec)
    with_number: dict[str, Any] = {**headers, "cqrs-requested-at": 1700000000}
    error = decode_error(codec, with_number, body)
    assert_safe(error, "header cqrs-requested-at")
    assert "int" in error.problem


def test_a_repeated_header_is_ambiguous_and_refused(codec: EnvelopeCodec):
    headers, body = encoded(codec)
    pairs = [*headers.items(), ("CQRS-Correlation-ID", "req-other")]
    error = decode_error(codec, pairs, body)
    assert_safe(error, "header cqrs-correlation-id")
    assert "more than once" in error.problem


def test_a_kind_that_contradicts_the_type_is_refused(codec: EnvelopeCodec):
    headers, body = encoded(codec)
    headers["cqrs-message-kind"] = "event"
    error = decode_error(codec, headers, body)
    assert_safe(error, "header cqrs-message-kind")
    assert "'codectest.PlaceOrder' is a command" in error.problem


def test_json_content_types_with_parameters_are_accepted(codec: EnvelopeCodec):
    headers, body = encoded(codec)
    for content_type in ("application/json; charset=utf-8", "application/vnd.orders+json"):
        headers["content-type"] = content_type
        assert codec.decode(headers, body).message.order_id == "o-1"
    del headers["content-type"]
    assert codec.decode(headers, body).message.order_id == "o-1"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b'{"order_id": "o-1", "amount": 1} trailing', "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b'{"amount": NaN, "order_id": "o"}', "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'["order_id", "o-1"]', "must be a JSON object, not an array"),
        (b'"o-1"', "must be a JSON object, not a string"),
        (b"null", "must be a JSON object, not null"),
    ],
    ids=["empty", "broken", "trailing", "not utf-8", "NaN", "deep", "array", "string", "null"],
)
def test_a_body_that_is_not_a_json_object_is_refused(
    codec: EnvelopeCodec, body: bytes, problem: str
):
    headers, _ = encoded(codec)
    error = decode_error(codec, headers, body)
    assert_safe(error, "body")
    assert problem in error.problem


def test_an_oversized_body_is_refused_before_it_is_parsed():
    codec = EnvelopeCodec(REGISTRY, max_body_bytes=64)
    headers, _ = encoded(codec)
    error = decode_error(codec, headers, b"{" + b"x" * 100)  # not JSON either: never parsed
    assert_safe(error, "body")
    assert "101 bytes" in error.problem and "64" in error.problem
    assert EnvelopeCodec(REGISTRY).max_body_bytes == DEFAULT_MAX_BODY_BYTES == 1024 * 1024


def test_the_body_cannot_carry_tracing_fields(codec: EnvelopeCodec):
    headers, _ = encoded(codec)
    body = b'{"order_id": "o-1", "amount": 1, "correlation_id": "forged"}'
    error = decode_error(codec, headers, body)
    assert_safe(error, "body field 'correlation_id'")


def test_a_body_that_fails_validation_names_every_field(codec: EnvelopeCodec):
    headers, _ = encoded(codec)
    huge = "A" * 100_000
    body = f'{{"amount": "{huge}", "bad\\nname": 1}}'.encode()
    error = decode_error(codec, headers, body)
    assert_safe(error, "body field 'order_id'")
    assert error.problem.startswith("Field required")
    assert "body field 'amount': Input should be a valid integer" in error.problem
    assert "'bad\\nname'" in error.problem and "Extra inputs" in error.problem
    assert huge[:50] not in str(error)


def test_the_decode_error_is_a_library_value_error_and_pickles(codec: EnvelopeCodec):
    headers, body = encoded(codec)
    del headers["cqrs-message-id"]
    error = decode_error(codec, headers, body)
    assert isinstance(error, CQRSError) and isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.problem, str(copy)) == (error.field, error.problem, str(error))


@pytest.mark.parametrize("limit", [0, -1, True, 1.5])
def test_max_body_bytes_must_be_a_positive_integer(limit: Any):
    with pytest.raises(ValueError, match="max_body_bytes"):
        EnvelopeCodec(REGISTRY, max_body_bytes=limit)


def test_the_docstring_examples_run():
    result = doctest.testmod(python_cqrs_core.codec, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# -- the producing service ----------------------------------------------------------------


def test_a_codec_naming_its_service_sends_it_and_the_consumer_reads_it(codec: EnvelopeCodec):
    orders = EnvelopeCodec(REGISTRY, service="orders")
    headers, body = encoded(orders)
    assert headers["cqrs-service"] == "orders"
    decoded = codec.decode(headers, body)
    assert decoded.service == "orders"
    assert decoded.message == orders.decode(headers, body).message
    plain_headers, plain_body = encoded(codec)
    assert "cqrs-service" not in plain_headers
    assert codec.decode(plain_headers, plain_body).service is None
    assert "service='orders'" in repr(orders)


def test_a_service_name_is_checked_like_a_type_name(codec: EnvelopeCodec):
    with pytest.raises(ValueError, match=r"^service .*got 'the orders'"):
        EnvelopeCodec(REGISTRY, service="the orders")
    headers, body = encoded(codec)
    for hostile in ("orders service", "x" * 10_000, "orders\x1b[2J"):
        error = decode_error(codec, {**headers, "cqrs-service": hostile}, body)
        assert_safe(error, "header cqrs-service")
