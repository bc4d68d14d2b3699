"""CQRSMiddleware: our chains through FastStream, on the machine's RabbitMQ and NATS
JetStream, and on FastStream's in-memory test brokers for the finer points.

The real-broker tests fail loudly when RabbitMQ (127.0.0.1:5672, guest/guest) or NATS
(127.0.0.1:4222, JetStream on) is down.  Each uses its own queue or stream, and removes
it afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID, uuid4

import nats
import pytest
from faststream import Context, StreamMessage
from faststream.nats import JStream, NatsBroker
from faststream.rabbit import RabbitBroker, RabbitQueue, TestRabbitBroker
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from faststream.redis import RedisBroker, TestRedisBroker
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from python_cqrs_core import (
    BaseCommand,
    BaseEvent,
    Mediator,
    MessageRegistry,
    UnknownMessageTypeError,
    correlation_scope,
    current_causation_id,
    current_correlation_id,
    current_message,
    current_requested_by,
    names,
)
from python_cqrs_core.codec import EnvelopeCodec, MessageDecodeError
from python_cqrs_core.integrations.faststream import (
    CQRSMiddleware,
    OpaqueMessage,
    consumed_message,
)
from python_cqrs_core.store import MemoryStore, MessageRecord, MessageRecorder

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"
WAIT = 10.0  # seconds a real broker gets to deliver

Message = Annotated[StreamMessage[Any], Context("message")]
"""A handler parameter receiving FastStream's message (its headers, its own ids)."""


class PlaceOrder(BaseCommand):
    __message_type__ = "test_faststream.PlaceOrder"
    order_id: str


class OrderPlaced(BaseEvent):
    __message_type__ = "test_faststream.OrderPlaced"
    order_id: str
    quantity: int = 1


class ReserveInventory(BaseCommand):
    __message_type__ = "test_faststream.ReserveInventory"
    order_id: str


class Unregistered(BaseEvent):
    __message_type__ = "test_faststream.Unregistered"
    note: str


REGISTRY = MessageRegistry([PlaceOrder, OrderPlaced, ReserveInventory])
CODEC = EnvelopeCodec(REGISTRY)


@dataclass
class Service:
    """One service of a test: its bus, recording into the shared store under its name."""

    name: str
    store: MemoryStore
    bus: Mediator = field(default_factory=Mediator)

    def __post_init__(self) -> None:
        MessageRecorder(self.store, service=self.name).install(self.bus)


@dataclass(frozen=True)
class Seen:
    """What a FastStream handler saw of our context while it ran."""

    correlation_id: UUID | str | None
    causation_id: UUID | None
    requested_by: str | None
    headers: dict[str, Any]


def seen_now(msg: Message) -> Seen:
    return Seen(
        current_correlation_id(), current_causation_id(), current_requested_by(), msg.headers
    )


# -- the real brokers ---------------------------------------------------------------------


class Brokers:
    """Brokers of one kind on the machine's server, and a destination of their own."""

    kind: str

    def new(self, chains: CQRSMiddleware | None = None, *, typed: bool = True) -> Any:
        """A broker with ``chains`` (and its decoder when ``typed``), or a plain one."""
        raise NotImplementedError

    def subscriber(self, broker: Any) -> Callable[[Any], Any]:
        raise NotImplementedError

    async def publish(self, broker: Any, body: Any, **options: Any) -> None:
        raise NotImplementedError

    async def remove(self) -> None:
        """Delete what the test created on the server."""


class Rabbit(Brokers):
    kind = "rabbit"

    def __init__(self) -> None:
        self.queue = RabbitQueue(f"cqrs-test-{uuid4().hex}", auto_delete=True)

    def new(self, chains: CQRSMiddleware | None = None, *, typed: bool = True) -> RabbitBroker:
        if chains is None:
            return RabbitBroker(RABBIT_URL, logger=None)
        decoder = chains.decoder if typed else None
        return RabbitBroker(RABBIT_URL, middlewares=[chains], decoder=decoder, logger=None)

    def subscriber(self, broker: Any) -> Callable[[Any], Any]:
        return broker.subscriber(self.queue)  # type: ignore[no-any-return]

    async def publish(self, broker: Any, body: Any, **options: Any) -> None:
        await broker.publish(body, queue=self.queue.name, **options)


class Nats(Brokers):
    kind = "nats"

    def __init__(self) -> None:
        token = uuid4().hex
        self.subject = f"cqrs-test.{token}"
        self.stream = JStream(f"cqrs_test_{token}", subjects=[self.subject])

    def new(self, chains: CQRSMiddleware | None = None, *, typed: bool = True) -> NatsBroker:
        if chains is None:
            return NatsBroker(NATS_URL, logger=None)
        decoder = chains.decoder if typed else None
        return NatsBroker(NATS_URL, middlewares=[chains], decoder=decoder, logger=None)

    def subscriber(self, broker: Any) -> Callable[[Any], Any]:
        return broker.subscriber(self.subject, stream=self.stream)  # type: ignore[no-any-return]

    async def publish(self, broker: Any, body: Any, **options: Any) -> None:
        # Through JetStream: the server acknowledges that the stream holds the message.
        await broker.publish(body, self.subject, stream=self.stream.name, **options)

    async def remove(self) -> None:
        connection = await nats.connect(NATS_URL)
        try:
            await connection.jetstream().delete_stream(self.stream.name)
        finally:
            await connection.close()


@pytest.fixture(params=["rabbit", "nats"])
async def brokers(request: pytest.FixtureRequest) -> AsyncIterator[Brokers]:
    made: Brokers = Rabbit() if request.param == "rabbit" else Nats()
    yield made
    await made.remove()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


async def wait_for(future: asyncio.Future[Any]) -> Any:
    return await asyncio.wait_for(future, WAIT)


def by_type(records: list[MessageRecord]) -> dict[str, MessageRecord]:
    return {record.message_type.rpartition(".")[2]: record for record in records}


async def test_a_chain_recorded_where_it_is_consumed_keeps_one_correlation_across_services(
    brokers: Brokers, store: MemoryStore
) -> None:
    """PlaceOrder (orders) -> OrderPlaced published through FastStream -> dispatched on
    the inventory bus by its FastStream subscriber -> ReserveInventory (inventory)."""
    orders, inventory = Service("orders", store), Service("inventory", store)
    chains = CQRSMiddleware(CODEC)
    publisher, consumer = brokers.new(chains), brokers.new(chains)
    done: asyncio.Future[OrderPlaced] = asyncio.get_running_loop().create_future()

    @orders.bus.handler(PlaceOrder)
    async def place_order(command: PlaceOrder) -> None:
        await brokers.publish(publisher, OrderPlaced(order_id=command.order_id, quantity=3))

    @inventory.bus.handler(OrderPlaced)
    async def on_order_placed(event: OrderPlaced) -> None:
        await inventory.bus.send(ReserveInventory(order_id=event.order_id))

    @inventory.bus.handler(ReserveInventory)
    async def reserve(command: ReserveInventory) -> None:
        pass

    @brokers.subscriber(consumer)
    async def consume(event: OrderPlaced) -> None:
        await inventory.bus.process(event)  # recorded by inventory: its subscribers follow
        done.set_result(event)

    async with publisher, consumer:
        await consumer.start()
        with correlation_scope("checkout-42", requested_by="ada@example.com"):
            await orders.bus.send(PlaceOrder(order_id="o-1"))
        received = await wait_for(done)

    assert (received.order_id, received.quantity) == ("o-1", 3)
    records = by_type(await store.by_correlation("checkout-42"))
    assert set(records) == {"PlaceOrder", "OrderPlaced", "ReserveInventory"}
    place, placed, reserve_ = (
        records["PlaceOrder"],
        records["OrderPlaced"],
        records["ReserveInventory"],
    )
    # OrderPlaced, recorded where consumed, is the message as received (its producer's
    # codec named no service); how inventory handled it is its delivery.
    assert [place.service, placed.service, reserve_.service] == ["orders", None, "inventory"]
    [delivery] = await store.deliveries_of([placed.message_id])
    assert (delivery.service, delivery.outcome, delivery.transport) == (
        "inventory",
        "succeeded",
        f"faststream.{brokers.kind}",
    )
    assert place.causation_id is None
    assert placed.causation_id == str(place.message_id)
    assert reserve_.causation_id == str(placed.message_id)
    assert placed.message_id == received.request_id
    assert {r.requested_by for r in records.values()} == {"ada@example.com"}
    assert placed.payload == {"order_id": "o-1", "quantity": 3}


async def test_a_chain_recorded_where_it_is_published_links_what_the_subscriber_dispatches(
    brokers: Brokers, store: MemoryStore
) -> None:
    """OrderPlaced is dispatched (and recorded) by orders, whose subscriber forwards it;
    the inventory FastStream handler reads the plain body and sends ReserveInventory,
    which the middleware makes a child of OrderPlaced."""
    orders, inventory = Service("orders", store), Service("inventory", store)
    chains = CQRSMiddleware(CODEC)
    publisher, consumer = brokers.new(chains), brokers.new(chains, typed=False)
    done: asyncio.Future[Seen] = asyncio.get_running_loop().create_future()

    @orders.bus.handler(PlaceOrder)
    async def place_order(command: PlaceOrder) -> None:
        await orders.bus.publish(OrderPlaced(order_id=command.order_id))

    @orders.bus.handler(OrderPlaced)
    async def forward(event: OrderPlaced) -> None:
        await brokers.publish(publisher, event)

    @inventory.bus.handler(ReserveInventory)
    async def reserve(command: ReserveInventory) -> None:
        pass

    @brokers.subscriber(consumer)
    async def consume(body: dict[str, Any], msg: Message) -> None:
        seen = seen_now(msg)
        await inventory.bus.send(ReserveInventory(order_id=body["order_id"]))
        done.set_result(seen)

    async with publisher, consumer:
        await consumer.start()
        root = PlaceOrder(order_id="o-2")
        await orders.bus.send(root)
        seen = await wait_for(done)

    records = by_type(await store.by_correlation(root.request_id))
    place, placed, reserve_ = (
        records["PlaceOrder"],
        records["OrderPlaced"],
        records["ReserveInventory"],
    )
    assert [place.service, placed.service, reserve_.service] == ["orders", "orders", "inventory"]
    assert placed.causation_id == str(place.message_id)
    assert reserve_.causation_id == str(placed.message_id)
    assert seen.correlation_id == root.request_id
    assert seen.causation_id == placed.message_id
    # the cause is the message id our header carries, the one orders recorded
    assert seen.headers[names.WIRE_MESSAGE_ID] == str(placed.message_id)


async def test_a_foreign_message_without_our_headers_starts_a_chain_of_its_own(
    brokers: Brokers, store: MemoryStore
) -> None:
    inventory = Service("inventory", store)
    foreign, consumer = brokers.new(), brokers.new(CQRSMiddleware(CODEC))
    done: asyncio.Future[tuple[Seen, str, str, BaseCommand]] = (
        asyncio.get_running_loop().create_future()
    )

    @inventory.bus.handler(ReserveInventory)
    async def reserve(command: ReserveInventory) -> None:
        pass

    @brokers.subscriber(consumer)
    async def consume(body: dict[str, Any], msg: Message) -> None:
        assert consumed_message() is None
        command = ReserveInventory(order_id=body["order_id"])
        await inventory.bus.send(command)
        done.set_result((seen_now(msg), msg.correlation_id, msg.message_id, command))

    faststream_id = str(uuid4())
    async with foreign, consumer:
        await consumer.start()
        await brokers.publish(foreign, {"order_id": "o-3"}, correlation_id=faststream_id)
        seen, correlation_id, message_id, command = await wait_for(done)

    assert isinstance(seen.correlation_id, UUID)
    assert seen.causation_id is None  # no message of ours caused it
    assert correlation_id == faststream_id  # FastStream's own id arrived...
    assert str(seen.correlation_id) not in {faststream_id, message_id}  # ...and is not ours
    (record,) = await store.by_correlation(seen.correlation_id)
    assert record.message_id == command.request_id and record.causation_id is None


HOSTILE: list[tuple[str, dict[str, str]]] = [
    ("a correlation id with CR/LF", {names.WIRE_CORRELATION_ID: "op-1\r\nx-admin: yes"}),
    ("a 10 KB message id", {names.WIRE_MESSAGE_ID: "7" * 10_000}),
    (
        "a message id that is not a UUID",
        {names.WIRE_MESSAGE_ID: "not-a-uuid", names.WIRE_CORRELATION_ID: "op-1"},
    ),
    (
        "a causation id too long to be one",
        {
            names.WIRE_MESSAGE_ID: str(uuid4()),
            names.WIRE_CORRELATION_ID: "op-1",
            names.WIRE_CAUSATION_ID: "c" * 200,
        },
    ),
]


async def test_hostile_chain_headers_are_dropped_and_the_subscriber_goes_on(
    brokers: Brokers, caplog: pytest.LogCaptureFixture
) -> None:
    raw, consumer = brokers.new(), brokers.new(CQRSMiddleware(CODEC), typed=False)
    seen: list[tuple[str, Seen]] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @brokers.subscriber(consumer)
    async def consume(body: dict[str, str], msg: Message) -> None:
        seen.append((body["case"], seen_now(msg)))
        if body["case"] == "valid":
            done.set_result(None)

    sound = OrderPlaced(order_id="o-4", correlation_id="op-valid")
    async with raw, consumer:
        await consumer.start()
        with caplog.at_level(logging.WARNING, names.TRANSPORT_LOGGER):
            for case, headers in HOSTILE:
                await brokers.publish(raw, {"case": case}, headers=headers)
            valid_headers = CODEC.encode(sound).headers
            await brokers.publish(raw, {"case": "valid"}, headers=valid_headers)
            await wait_for(done)

    assert [case for case, _ in seen] == [case for case, _ in HOSTILE] + ["valid"]
    for case, context in seen[:-1]:
        assert isinstance(context.correlation_id, UUID), case  # a fresh chain
        assert context.causation_id is None, case
    valid = seen[-1][1]
    assert (valid.correlation_id, valid.causation_id) == ("op-valid", sound.request_id)
    warnings = [r.getMessage() for r in caplog.records if r.name == names.TRANSPORT_LOGGER]
    assert len(warnings) == len(HOSTILE)
    assert all("\r" not in text and "\n" not in text and len(text) < 500 for text in warnings)


async def test_a_hostile_message_of_ours_is_rejected_and_the_typed_subscriber_goes_on(
    brokers: Brokers,
) -> None:
    raw, consumer = brokers.new(), brokers.new(CQRSMiddleware(CODEC))
    handled: list[OrderPlaced] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @brokers.subscriber(consumer)
    async def consume(event: OrderPlaced) -> None:
        handled.append(event)
        if event.order_id == "last":
            done.set_result(None)

    poisoned_headers, poisoned_body = CODEC.encode(OrderPlaced(order_id="evil"))
    poisoned_headers[names.WIRE_CORRELATION_ID] = "op\r\n" + "x" * 10_000
    async with raw, consumer:
        await consumer.start()
        await brokers.publish(raw, poisoned_body, headers=poisoned_headers)
        invalid_headers = CODEC.encode(OrderPlaced(order_id="x")).headers
        await brokers.publish(raw, b'{"order_id": 7}', headers=invalid_headers)  # not a str
        last = OrderPlaced(order_id="last")
        headers, body = CODEC.encode(last)
        await brokers.publish(raw, body, headers=headers)
        await wait_for(done)

    assert [(event.order_id, event.request_id) for event in handled] == [("last", last.request_id)]


# -- the finer points, on FastStream's in-memory test broker ------------------------------


def rabbit_service(*, typed: bool = True) -> RabbitBroker:
    """An in-memory-testable broker with the middleware (and its decoder when ``typed``)."""
    chains = CQRSMiddleware(CODEC)
    decoder = chains.decoder if typed else None
    return RabbitBroker(middlewares=[chains], decoder=decoder, logger=None)


async def test_a_message_of_ours_arrives_exactly_as_it_was_sent() -> None:
    broker = rabbit_service()
    received: list[OrderPlaced] = []

    @broker.subscriber("orders")
    async def consume(event: OrderPlaced) -> None:
        received.append(event)

    sent = OrderPlaced(
        order_id="o-5", quantity=2, correlation_id="op-5", causation_id=uuid4(), requested_by="José"
    )
    async with TestRabbitBroker(broker):
        await broker.publish(sent, "orders")

    (event,) = received
    assert event == sent and event.model_dump() == sent.model_dump()
    assert event.request_id == sent.request_id and event.requested_at == sent.requested_at


async def test_a_message_of_ours_published_inside_a_handler_is_settled_as_its_child() -> None:
    broker, bus = rabbit_service(), Mediator()
    received: list[tuple[OrderPlaced, BaseCommand | None]] = []
    built_outside = OrderPlaced(order_id="o-6")  # no chain yet: ids undecided

    @bus.handler(PlaceOrder)
    async def place_order(command: PlaceOrder) -> None:
        await broker.publish(built_outside, "orders")

    @broker.subscriber("orders")
    async def consume(event: OrderPlaced) -> None:
        received.append((event, current_message()))

    command = PlaceOrder(order_id="o-6", requested_by="ada")
    async with TestRabbitBroker(broker):
        await bus.send(command)

    ((event, current),) = received
    assert event.correlation_id == command.request_id
    assert event.causation_id == command.request_id
    assert event.requested_by == "ada"
    assert built_outside.causation_id == command.request_id  # settled, like a dispatch
    assert current is event  # the consumed message is the message being handled


async def test_a_root_message_published_outside_any_chain_is_its_own_correlation() -> None:
    broker = rabbit_service()
    received: list[OrderPlaced] = []

    @broker.subscriber("orders")
    async def consume(event: OrderPlaced) -> None:
        received.append(event)

    async with TestRabbitBroker(broker):
        event = OrderPlaced(order_id="o-7")
        await broker.publish(event, "orders")

    assert received[0].correlation_id == event.request_id
    assert received[0].causation_id is None


async def test_a_plain_payload_published_inside_a_handler_carries_the_chain_headers() -> None:
    broker, bus = rabbit_service(), Mediator()
    headers: list[dict[str, Any]] = []

    @bus.handler(PlaceOrder)
    async def place_order(command: PlaceOrder) -> None:
        await broker.publish({"order_id": command.order_id}, "audit", headers={"x-tenant": "t1"})

    @broker.subscriber("audit")
    async def consume(body: dict[str, str], msg: Message) -> None:
        headers.append(msg.headers)

    command = PlaceOrder(order_id="o-8", correlation_id="op-8", requested_by="Zoë")
    async with TestRabbitBroker(broker):
        await bus.send(command)

    (sent,) = headers
    assert sent[names.WIRE_CORRELATION_ID] == "op-8"
    assert sent[names.WIRE_CAUSATION_ID] == str(command.request_id)
    assert sent[names.WIRE_REQUESTED_BY] == "Zo%C3%AB"
    assert names.WIRE_REQUESTED_AT in sent
    assert UUID(sent[names.WIRE_MESSAGE_ID]) != command.request_id  # a message of its own
    assert names.WIRE_MESSAGE_TYPE not in sent and names.WIRE_MESSAGE_KIND not in sent
    assert sent["x-tenant"] == "t1"


async def test_a_plain_payload_in_a_scope_carries_its_correlation_and_no_cause() -> None:
    broker = rabbit_service()
    seen: list[tuple[Seen, Any]] = []

    @broker.subscriber("audit")
    async def consume(body: str, msg: Message) -> None:
        seen.append((seen_now(msg), current_message()))

    async with TestRabbitBroker(broker):
        with correlation_scope("req-9", requested_by="gateway"):
            await broker.publish("hello", "audit")
        await broker.publish("outside", "audit")

    (inside, opaque), (outside, nothing) = seen
    assert names.WIRE_CAUSATION_ID not in inside.headers
    assert (inside.correlation_id, inside.requested_by) == ("req-9", "gateway")
    # the plain message is the parent: its own id, the scope's correlation
    assert isinstance(opaque, OpaqueMessage)
    assert inside.causation_id == opaque.request_id
    assert str(opaque.request_id) == inside.headers[names.WIRE_MESSAGE_ID]
    assert not any(name.startswith("cqrs-") for name in outside.headers)
    assert nothing is None and isinstance(outside.correlation_id, UUID)


async def test_explicit_headers_of_the_caller_win_over_the_chain_for_a_plain_payload() -> None:
    broker, bus = rabbit_service(), Mediator()
    headers: list[dict[str, Any]] = []

    @bus.handler(PlaceOrder)
    async def place_order(command: PlaceOrder) -> None:
        await broker.publish({}, "audit", headers={names.WIRE_CORRELATION_ID: "chosen"})

    @broker.subscriber("audit")
    async def consume(body: dict[str, Any], msg: Message) -> None:
        headers.append(msg.headers)

    async with TestRabbitBroker(broker):
        await bus.send(PlaceOrder(order_id="o-10"))

    assert headers[0][names.WIRE_CORRELATION_ID] == "chosen"


async def test_what_a_handler_returns_is_published_as_a_child_of_the_consumed_message() -> None:
    broker = rabbit_service()
    replies: list[Seen] = []

    @broker.subscriber("orders")
    @broker.publisher("receipts")
    async def consume(event: OrderPlaced) -> dict[str, str]:
        return {"receipt": event.order_id}

    @broker.subscriber("receipts")
    async def on_receipt(body: dict[str, str], msg: Message) -> None:
        replies.append(seen_now(msg))

    event = OrderPlaced(order_id="o-11", correlation_id="op-11")
    async with TestRabbitBroker(broker):
        await broker.publish(event, "orders")

    (receipt,) = replies
    assert receipt.headers[names.WIRE_CAUSATION_ID] == str(event.request_id)
    assert receipt.headers[names.WIRE_CORRELATION_ID] == "op-11"


async def test_a_message_of_an_unknown_type_keeps_its_ids_and_says_why_it_is_not_decoded() -> None:
    broker, bus = rabbit_service(typed=False), Mediator()
    outcome: list[tuple[BaseCommand, Exception]] = []

    @bus.handler(ReserveInventory)
    async def reserve(command: ReserveInventory) -> None:
        pass

    @broker.subscriber("misc")
    async def consume(body: dict[str, Any]) -> None:
        command = ReserveInventory(order_id="o-12")
        await bus.send(command)
        with pytest.raises(UnknownMessageTypeError) as raised:
            consumed_message()
        outcome.append((command, raised.value))

    sent = Unregistered(note="hi", correlation_id="op-12")
    async with TestRabbitBroker(broker):
        await broker.publish(sent, "misc")

    ((command, error),) = outcome
    assert (command.correlation_id, command.causation_id) == ("op-12", sent.request_id)
    assert "test_faststream.Unregistered" in str(error)


async def test_a_body_that_fails_validation_keeps_the_chain_and_rejects_a_typed_handler() -> None:
    chains = CQRSMiddleware(CODEC)
    broker = RabbitBroker(middlewares=[chains], logger=None)
    typed: list[OrderPlaced] = []
    untyped: list[tuple[Seen, Exception]] = []
    headers = CODEC.encode(OrderPlaced(order_id="o-13", correlation_id="op-13")).headers

    @broker.subscriber("typed", decoder=chains.decoder)
    async def consume_typed(event: OrderPlaced) -> None:
        typed.append(event)

    @broker.subscriber("untyped")
    async def consume_untyped(body: dict[str, Any], msg: Message) -> None:
        with pytest.raises(MessageDecodeError) as raised:
            consumed_message()
        untyped.append((seen_now(msg), raised.value))

    async with TestRabbitBroker(broker):
        with pytest.raises(MessageDecodeError, match="body field 'order_id'"):
            await broker.publish(b'{"order_id": 13}', "typed", headers=headers)
        await broker.publish(b'{"order_id": 13}', "untyped", headers=headers)

    assert typed == []
    ((seen, error),) = untyped
    assert seen.correlation_id == "op-13"
    assert str(seen.causation_id) == headers[names.WIRE_MESSAGE_ID]
    assert error.field == "body field 'order_id'"


async def test_a_consumed_message_is_the_parent_even_when_consumed_inside_a_handler() -> None:
    """The in-memory broker runs the subscriber inside the publishing handler: the
    consumed message, not that handler's message, is the parent there."""
    broker, bus = rabbit_service(), Mediator()
    seen: list[Seen] = []

    @bus.handler(PlaceOrder)
    async def place_order(command: PlaceOrder) -> None:
        await broker.publish(OrderPlaced(order_id=command.order_id), "orders")

    @broker.subscriber("orders")
    async def consume(event: OrderPlaced, msg: Message) -> None:
        seen.append(seen_now(msg))

    command = PlaceOrder(order_id="o-14")
    async with TestRabbitBroker(broker):
        await bus.send(command)

    assert seen[0].causation_id not in (None, command.request_id)
    assert seen[0].causation_id == UUID(seen[0].headers[names.WIRE_MESSAGE_ID])
    assert current_message() is None  # and nothing is left behind


async def test_a_published_message_carries_the_trace_context_of_the_current_span() -> None:
    broker = rabbit_service()
    headers: list[dict[str, Any]] = []

    @broker.subscriber("orders")
    async def consume(event: OrderPlaced, msg: Message) -> None:
        headers.append(msg.headers)

    tracer = TracerProvider().get_tracer("test")
    async with TestRabbitBroker(broker):
        with tracer.start_as_current_span("checkout") as span:
            await broker.publish(OrderPlaced(order_id="o-15"), "orders")
        trace_id = format(span.get_span_context().trace_id, "032x")

    assert headers[0][names.TRACEPARENT].split("-")[1] == trace_id
    assert trace.get_current_span() is trace.INVALID_SPAN


async def test_a_batch_with_a_message_of_ours_is_refused_before_anything_is_sent() -> None:
    chains = CQRSMiddleware(CODEC)
    broker = RedisBroker(middlewares=[chains], logger=None)
    received: list[Any] = []

    @broker.subscriber(list="batch")
    async def consume(body: Any) -> None:
        received.append(body)

    async with TestRedisBroker(broker):
        with pytest.raises(ValueError, match="publish them one at a time"):
            await broker.publish_batch({"a": 1}, OrderPlaced(order_id="o-16"), list="batch")
        await broker.publish_batch({"a": 1}, {"b": 2}, list="batch")

    assert received == [{"a": 1}, {"b": 2}]


async def test_consumed_message_outside_a_faststream_handler_says_where_it_belongs() -> None:
    with pytest.raises(RuntimeError, match="outside a FastStream handler"):
        consumed_message()


def test_the_middleware_wants_a_codec() -> None:
    with pytest.raises(TypeError, match="codec must be an EnvelopeCodec, got MessageRegistry"):
        CQRSMiddleware(REGISTRY)  # type: ignore[arg-type]


async def test_a_filter_that_decodes_before_the_middleware_runs_sees_our_message() -> None:
    broker = rabbit_service()
    received: list[OrderPlaced] = []

    async def large_orders(msg: StreamMessage[Any]) -> bool:
        event = await msg.decode()
        return isinstance(event, OrderPlaced) and event.quantity > 1

    subscriber = broker.subscriber("orders")

    @subscriber(filter=large_orders)
    async def consume(event: OrderPlaced) -> None:
        received.append(event)

    @subscriber
    async def ignore(event: OrderPlaced) -> None:
        pass

    large = OrderPlaced(order_id="o-17", quantity=5)
    async with TestRabbitBroker(broker):
        await broker.publish(OrderPlaced(order_id="o-18"), "orders")
        await broker.publish(large, "orders")

    assert [event.request_id for event in received] == [large.request_id]


async def test_an_unknown_type_with_a_broken_id_is_handled_as_a_message_from_outside(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = rabbit_service(typed=False)
    seen: list[Seen] = []
    errors: list[Exception] = []

    @broker.subscriber("misc")
    async def consume(body: dict[str, Any], msg: Message) -> None:
        seen.append(seen_now(msg))
        with pytest.raises(UnknownMessageTypeError) as raised:
            consumed_message()
        errors.append(raised.value)

    headers = CODEC.encode(Unregistered(note="x", correlation_id="op-19")).headers
    headers[names.WIRE_MESSAGE_ID] = "0xdeadbeef"
    async with TestRabbitBroker(broker):
        with caplog.at_level(logging.WARNING, names.TRANSPORT_LOGGER):
            await broker.publish(b'{"note": "x"}', "misc", headers=headers)

    assert isinstance(seen[0].correlation_id, UUID) and seen[0].causation_id is None
    assert "header cqrs-message-id" in caplog.text
    assert len(errors) == 1


async def test_with_faststream_telemetry_after_it_the_producer_span_is_the_parent_on_the_wire() -> (
    None
):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    chains = CQRSMiddleware(CODEC)
    telemetry = RabbitTelemetryMiddleware(tracer_provider=provider)
    broker = RabbitBroker(middlewares=[chains, telemetry], decoder=chains.decoder, logger=None)
    headers: list[dict[str, Any]] = []

    @broker.subscriber("orders")
    async def consume(event: OrderPlaced, msg: Message) -> None:
        headers.append(msg.headers)

    event = OrderPlaced(order_id="o-20", correlation_id="op-20")
    async with TestRabbitBroker(broker):
        with provider.get_tracer("test").start_as_current_span("checkout") as span:
            await broker.publish(event, "orders")

    _, trace_id, parent_id, _ = headers[0][names.TRACEPARENT].split("-")
    producers = [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.PRODUCER]
    assert trace_id == format(span.get_span_context().trace_id, "032x")
    assert int(parent_id, 16) in {s.context.span_id for s in producers}
    assert headers[0][names.WIRE_MESSAGE_ID] == str(event.request_id)  # ours are kept
