"""The consumer: decode, inbox, dispatch as the parent, ack after success, retry with
backoff, dead-letter what cannot be handled, stop gracefully, tell listeners."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest
from transport_testing import OrderPlaced, ReserveStock, StockReserved, TransportFactory, make_codec

from python_cqrs_core import Mediator
from python_cqrs_core.codec import EnvelopeCodec
from python_cqrs_core.context import Consumption, current_consumption
from python_cqrs_core.transports import (
    Backoff,
    Consumer,
    Delivery,
    DeliveryEvent,
    Inbox,
    MemoryInbox,
    MemoryTransport,
    Transport,
    TransportError,
    current_delivery,
)
from python_cqrs_core.transports.consumer import CANCEL_WAIT
from service_testing import eventually

CODEC = make_codec()


def fast_consumer(bus: Mediator, transport: Transport, **options: object) -> Consumer:
    options.setdefault("backoff", Backoff(initial=0.02, factor=2, maximum=0.1))
    options.setdefault("wait", 0.05)
    return Consumer(bus, transport, CODEC, "orders", "billing", name="c-1", **options)  # type: ignore[arg-type]


async def publish(transport: Transport, message: object, **headers: str) -> None:
    encoded_headers, body = CODEC.encode(message, trace_context={})  # type: ignore[arg-type]
    await transport.publish("orders", {**encoded_headers, **headers}, body)


async def drain(consumer: Consumer, rounds: int = 40) -> None:
    """Process batches until one comes back empty after retries settled."""
    empty = 0
    for _ in range(rounds):
        if await consumer.process_batch(wait=0.05) == 0:
            empty += 1
            if empty >= 3:
                return
        else:
            empty = 0


@contextlib.asynccontextmanager
async def running(consumer: Consumer) -> AsyncIterator[asyncio.Task[None]]:
    task = consumer.start()
    try:
        yield task
    finally:
        await consumer.stop(grace=5)


# -- the consumed message is the parent of what its handlers dispatch ---------------------


async def test_a_consumed_message_is_the_parent_of_everything_its_handlers_dispatch():
    transport = MemoryTransport()
    bus = Mediator()
    handled: list[OrderPlaced] = []
    sent: list[ReserveStock] = []

    async def on_placed(event: OrderPlaced) -> None:
        handled.append(event)
        await bus.send(ReserveStock(order_id=event.order_id))

    async def reserve(command: ReserveStock) -> None:
        sent.append(command)

    bus.subscribe(OrderPlaced, on_placed)
    bus.register(ReserveStock, reserve)
    consumer = fast_consumer(bus, transport)
    await transport.ensure_group("orders", "billing")
    cause = uuid4()
    event = OrderPlaced(
        order_id=7, correlation_id="req-abc", causation_id=cause, requested_by="José"
    )
    await publish(transport, event)
    await drain(consumer)

    [received] = handled
    assert received == event
    assert (received.request_id, received.correlation_id, received.causation_id) == (
        event.request_id,
        "req-abc",
        cause,
    )
    assert (received.requested_by, received.requested_at) == ("José", event.requested_at)
    [command] = sent
    assert command.correlation_id == "req-abc"
    assert command.causation_id == event.request_id
    assert command.requested_by == "José"
    assert await transport.lag("orders", "billing") == 0


async def test_each_dispatch_runs_inside_the_consumption_of_its_delivery():
    transport = MemoryTransport()
    bus = Mediator()
    seen: list[tuple[Consumption | None, Delivery | None]] = []

    async def on_placed(event: OrderPlaced) -> None:
        seen.append((current_consumption(), current_delivery()))
        if len(seen) == 1:
            raise TimeoutError("first attempt")

    bus.subscribe(OrderPlaced, on_placed)
    events: list[DeliveryEvent] = []
    consumer = fast_consumer(bus, transport, listeners=[events.append])
    await transport.ensure_group("orders", "billing")
    event = OrderPlaced(order_id=7, correlation_id="req-7", requested_by="ada")
    headers, body = EnvelopeCodec(CODEC.registry, service="orders").encode(event)
    await transport.publish("orders", headers, body)
    await drain(consumer)

    assert [consumption.attempt for consumption, _ in seen] == [1, 2]  # type: ignore[union-attr]
    consumption, delivery = seen[1]
    assert consumption is not None and delivery is not None
    assert (consumption.message_id, consumption.message_type) == (
        event.request_id,
        "tests.transports.OrderPlaced",
    )
    assert (consumption.correlation_id, consumption.causation_id) == ("req-7", None)
    assert consumption.requested_by == "ada" and consumption.service == "orders"
    assert (consumption.transport, consumption.destination, consumption.group) == (
        "memory",
        "orders",
        "billing",
    )
    assert consumption.delivery_id == delivery.delivery_id
    assert current_consumption() is None  # only while the message is handled
    assert {notice.transport for notice in events} == {"memory"}
    assert events[-1].to_dict()["transport"] == "memory"


async def test_a_foreign_message_without_correlation_id_starts_a_chain_of_its_own():
    transport = MemoryTransport()
    bus = Mediator()
    seen: list[object] = []

    async def on_placed(event: OrderPlaced) -> None:
        seen.append(event)
        seen.append(StockReserved(order_id=event.order_id))

    bus.subscribe(OrderPlaced, on_placed)
    consumer = fast_consumer(bus, transport)
    await transport.ensure_group("orders", "billing")
    headers, body = CODEC.encode(OrderPlaced(order_id=1), trace_context={})
    del headers["cqrs-correlation-id"], headers["cqrs-message-kind"]
    await transport.publish("orders", headers, body)
    await drain(consumer)

    event, child = seen
    assert isinstance(event, OrderPlaced) and isinstance(child, StockReserved)
    assert event.correlation_id == event.request_id
    assert event.causation_id is None
    assert child.correlation_id == event.request_id
    assert child.causation_id == event.request_id


async def test_the_broker_delivery_id_is_never_a_causation_id(make_transport: TransportFactory):
    transport = make_transport()
    bus = Mediator()
    seen: list[tuple[Delivery | None, ReserveStock]] = []

    async def on_placed(event: OrderPlaced) -> None:
        seen.append((current_delivery(), ReserveStock(order_id=event.order_id)))

    bus.subscribe(OrderPlaced, on_placed)
    consumer = fast_consumer(bus, transport)
    await transport.ensure_group("orders", "billing")
    event = OrderPlaced(order_id=3)
    await publish(transport, event)
    await drain(consumer)

    [(delivery, command)] = seen
    assert delivery is not None and delivery.attempt == 1
    assert command.causation_id == event.request_id
    assert str(command.causation_id) != delivery.delivery_id
    assert current_delivery() is None


# -- ack after success, retries, dead letters ------------------------------------------------


async def test_a_delivery_is_acknowledged_only_after_its_handlers_succeeded(
    make_transport: TransportFactory,
):
    transport = make_transport()
    bus = Mediator()
    lag_while_handling: list[int] = []

    async def on_placed(event: OrderPlaced) -> None:
        lag_while_handling.append(await transport.lag("orders", "billing"))

    bus.subscribe(OrderPlaced, on_placed)
    consumer = fast_consumer(bus, transport)
    await transport.ensure_group("orders", "billing")
    await publish(transport, OrderPlaced(order_id=1))
    await drain(consumer)
    assert lag_while_handling == [1]
    assert await transport.lag("orders", "billing") == 0


async def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered_with_the_reason(
    make_transport: TransportFactory,
):
    transport = make_transport()
    bus = Mediator()
    attempts: list[tuple[int, float]] = []

    async def on_placed(event: OrderPlaced) -> None:
        delivery = current_delivery()
        assert delivery is not None
        attempts.append((delivery.attempt, time.monotonic()))
        raise ValueError("stock service\nunavailable")

    bus.subscribe(OrderPlaced, on_placed)
    events: list[DeliveryEvent] = []
    consumer = fast_consumer(
        bus,
        transport,
        max_attempts=3,
        backoff=Backoff(initial=0.1, factor=2, maximum=1),
        listeners=[events.append],
    )
    await transport.ensure_group("orders", "billing")
    event = OrderPlaced(order_id=5, correlation_id="req-5")
    await publish(transport, event)
    async with running(consumer):
        await eventually(lambda: len(events) == 3, what="three outcomes")

    assert [attempt for attempt, _ in attempts] == [1, 2, 3]
    assert attempts[1][1] - attempts[0][1] >= 0.09  # backoff.delay(1)
    assert attempts[2][1] - attempts[1][1] >= 0.19  # backoff.delay(2)
    assert [e.event for e in events] == ["message.retried", "message.retried", "message.dlq"]
    assert [e.attempt for e in events] == [1, 2, 3]
    assert events[0].reason == "attempt 1 failed: ValueError: stock service?unavailable"
    for notice in events:
        assert notice.message_id == str(event.request_id)
        assert notice.correlation_id == "req-5"
        assert (notice.destination, notice.group, notice.consumer) == ("orders", "billing", "c-1")
    [letter] = await transport.dead_letters("orders")
    assert letter.reason == "failed 3 times; last error: ValueError: stock service?unavailable"
    assert letter.attempts == 3
    assert letter.headers["cqrs-message-id"] == str(event.request_id)
    assert events[-1].to_dict()["event"] == "message.dlq"
    assert (consumer.acked, consumer.retried, consumer.dead_lettered) == (0, 2, 1)
    assert await transport.lag("orders", "billing") == 0


async def test_a_handler_that_recovers_is_acknowledged_on_a_later_attempt():
    transport = MemoryTransport()
    bus = Mediator()
    calls: list[int] = []

    async def on_placed(event: OrderPlaced) -> None:
        calls.append(1)
        if len(calls) < 2:
            raise ConnectionError("flaky")

    bus.subscribe(OrderPlaced, on_placed)
    events: list[DeliveryEvent] = []
    consumer = fast_consumer(bus, transport, listeners=[events.append])
    await transport.ensure_group("orders", "billing")
    await publish(transport, OrderPlaced(order_id=1))
    async with running(consumer):
        await eventually(lambda: len(events) == 2)
    assert [(e.event, e.attempt) for e in events] == [
        ("message.retried", 1),
        ("message.acked", 2),
    ]
    assert await transport.dead_letters("orders") == []


async def test_a_command_without_a_handler_is_dead_lettered_at_once():
    transport = MemoryTransport()
    consumer = fast_consumer(Mediator(), transport)
    await transport.ensure_group("orders", "billing")
    await publish(transport, ReserveStock(order_id=1))
    await drain(consumer)
    [letter] = await transport.dead_letters("orders")
    assert letter.reason.startswith("no handler: HandlerNotFoundError: no handler registered")
    assert letter.attempts == 1


async def test_a_message_whose_consumers_keep_dying_is_dead_lettered_after_max_attempts():
    transport = MemoryTransport(claim_idle=0.05)
    await transport.ensure_group("orders", "billing")
    await publish(transport, OrderPlaced(order_id=1))
    for dying in ("a", "b", "c"):  # each takes it and dies before acknowledging
        await asyncio.sleep(0.06)
        assert len(await transport.receive("orders", "billing", dying, wait=0.2)) == 1
    handled: list[OrderPlaced] = []

    async def on_placed(event: OrderPlaced) -> None:
        handled.append(event)

    bus = Mediator()
    bus.subscribe(OrderPlaced, on_placed)
    await asyncio.sleep(0.06)
    await drain(fast_consumer(bus, transport, max_attempts=3))
    assert handled == []
    [letter] = await transport.dead_letters("orders")
    assert letter.reason.startswith("delivered 4 times without being acknowledged")


# -- hostile input ------------------------------------------------------------------------


async def test_hostile_input_is_dead_lettered_with_its_reason_and_the_consumer_keeps_running(
    make_transport: TransportFactory,
):
    transport = make_transport()
    bus = Mediator()
    handled: list[OrderPlaced] = []

    async def on_placed(event: OrderPlaced) -> None:
        handled.append(event)

    bus.subscribe(OrderPlaced, on_placed)
    events: list[DeliveryEvent] = []
    consumer = fast_consumer(bus, transport, listeners=[events.append])
    await transport.ensure_group("orders", "billing")
    good_headers, good_body = CODEC.encode(OrderPlaced(order_id=1), trace_context={})
    hostile = {
        "malformed id": ({**good_headers, "cqrs-message-id": "not-a-uuid\r\nX: y"}, good_body),
        "unknown type": ({**good_headers, "cqrs-message-type": "evil.Payload"}, good_body),
        "invalid body": (good_headers, b'{"order_id": "seven"}'),
        "not json": (good_headers, b"\xff\xfe{{{"),
        "huge body": (good_headers, b'{"order_id": 1, "note": "' + b"x" * 10_000_000 + b'"}'),
        "no headers": ({}, good_body),
        "tracing field in body": (good_headers, b'{"order_id": 1, "causation_id": "x"}'),
        "wrong kind": ({**good_headers, "cqrs-message-kind": "command"}, good_body),
        "control characters": ({**good_headers, "cqrs-requested-by": "a\x00b"}, good_body),
    }
    async with running(consumer) as task:
        for headers, body in hostile.values():
            await transport.publish("orders", headers, body)
        await publish(transport, OrderPlaced(order_id=42))
        await eventually(lambda: len(events) == len(hostile) + 1, timeout=20)
        assert not task.done()

    assert [event.order_id for event in handled] == [42]
    letters = await transport.dead_letters("orders", limit=100)
    reasons = {letter.reason for letter in letters}
    assert len(letters) == len(hostile)
    assert all(reason.startswith("undecodable: ") for reason in reasons)
    expected = [
        "header cqrs-message-id",
        "unknown message type 'evil.Payload'",
        "body field 'order_id'",
        "body: is not valid JSON",
        "body: is 10000027 bytes long; at most 1048576 are accepted",
        "header cqrs-message-type: is missing",
        "body field 'causation_id': is a tracing field",
        "header cqrs-message-kind: says 'command'",
        "header cqrs-requested-by",
    ]
    for fragment in expected:
        assert any(fragment in reason for reason in reasons), fragment
    assert all("\n" not in reason and "\r" not in reason for reason in reasons)
    huge = next(letter for letter in letters if "bytes long" in letter.reason)
    assert len(huge.body) == 10_000_027  # kept whole, for the operator
    dlq_events = [event for event in events if event.event == "message.dlq"]
    unknown = next(e for e in dlq_events if "evil.Payload" in (e.reason or ""))
    assert unknown.message_id == good_headers["cqrs-message-id"]
    assert unknown.message_type == "evil.Payload"
    malformed = next(e for e in dlq_events if "header cqrs-message-id" in (e.reason or ""))
    assert malformed.message_id is None


# -- idempotency ----------------------------------------------------------------------------


class CountingBus:
    """A bus whose OrderPlaced subscriber counts the messages it handled, by id."""

    def __init__(self) -> None:
        self.bus = Mediator()
        self.handled: list[UUID] = []

        async def on_placed(event: OrderPlaced) -> None:
            self.handled.append(event.request_id)

        self.bus.subscribe(OrderPlaced, on_placed)


async def test_a_redelivered_message_is_handled_once_per_group(make_transport: TransportFactory):
    transport = make_transport()
    billing, shipping = CountingBus(), CountingBus()
    inbox = MemoryInbox()
    consumers = [
        Consumer(billing.bus, transport, CODEC, "orders", "billing", inbox=inbox, wait=0.05),
        Consumer(shipping.bus, transport, CODEC, "orders", "shipping", inbox=inbox, wait=0.05),
    ]
    events: list[DeliveryEvent] = []
    consumers[0].add_listener(events.append)
    for consumer in consumers:
        await transport.ensure_group("orders", consumer.group)
    event = OrderPlaced(order_id=1)
    await publish(transport, event)
    await publish(transport, event)  # a relay published it twice
    for consumer in consumers:
        await drain(consumer)
    assert billing.handled == [event.request_id]
    assert shipping.handled == [event.request_id]
    assert [(e.event, e.duplicate) for e in events] == [
        ("message.acked", False),
        ("message.acked", True),
    ]
    assert events[1].reason is not None and "duplicate" in events[1].reason
    assert (consumers[0].acked, consumers[0].duplicates) == (2, 1)
    assert await transport.lag("orders", "billing") == 0


class FakeTransactionalInbox(Inbox):
    """An inbox whose marks live in the 'transaction' of FakeUnitOfWork."""

    transactional = True

    def __init__(self) -> None:
        self.committed: set[tuple[str, UUID]] = set()
        self.pending: set[tuple[str, UUID]] | None = None

    async def seen(self, group: str, message_id: UUID) -> bool:
        raise AssertionError("a transactional inbox is only marked, inside the transaction")

    async def mark(self, group: str, message_id: UUID) -> bool:
        assert self.pending is not None, "marked outside the unit of work"
        key = (group, message_id)
        if key in self.committed or key in self.pending:
            return False
        self.pending.add(key)
        return True


async def test_a_transactional_inbox_is_marked_inside_the_unit_of_work_and_rolls_back_with_it():
    transport = MemoryTransport()
    inbox = FakeTransactionalInbox()
    log: list[str] = []

    @contextlib.asynccontextmanager
    async def unit_of_work(delivery: Delivery) -> AsyncIterator[object]:
        log.append(f"begin {delivery.attempt}")
        inbox.pending = set()
        try:
            yield object()
        except BaseException:
            log.append("rollback")
            raise
        else:
            inbox.committed |= inbox.pending
            log.append("commit")
        finally:
            inbox.pending = None

    bus = Mediator()
    handled: list[int] = []

    async def on_placed(event: OrderPlaced) -> None:
        handled.append(event.order_id)
        log.append("handler")
        if len(handled) == 1:
            raise RuntimeError("deadlock detected")

    bus.subscribe(OrderPlaced, on_placed)
    with pytest.raises(ValueError, match="unit_of_work"):
        fast_consumer(bus, transport, inbox=inbox)
    consumer = fast_consumer(bus, transport, inbox=inbox, unit_of_work=unit_of_work)
    await transport.ensure_group("orders", "billing")
    event = OrderPlaced(order_id=9)
    await publish(transport, event)
    await drain(consumer)
    await publish(transport, event)  # redelivered after the commit: a duplicate
    await drain(consumer)

    assert handled == [9, 9]
    assert log == [
        "begin 1",
        "handler",
        "rollback",  # the mark of attempt 1 rolled back with the failed handler
        "begin 2",
        "handler",
        "commit",
        "begin 1",  # the duplicate: marked already, the handler does not run
        "commit",
    ]
    assert inbox.committed == {("billing", event.request_id)}


# -- running and stopping -----------------------------------------------------------------


async def test_stop_finishes_and_acknowledges_the_deliveries_in_flight(
    make_transport: TransportFactory,
):
    transport = make_transport()
    bus = Mediator()
    started, finished = asyncio.Event(), []

    async def on_placed(event: OrderPlaced) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(event.order_id)

    bus.subscribe(OrderPlaced, on_placed)
    consumer = fast_consumer(bus, transport)
    await transport.ensure_group("orders", "billing")
    task = consumer.start()
    await publish(transport, OrderPlaced(order_id=1))
    await asyncio.wait_for(started.wait(), 5)
    await publish(transport, OrderPlaced(order_id=2))  # not taken any more
    begun = time.monotonic()
    assert await consumer.stop(grace=5) is True
    assert time.monotonic() - begun < 2
    assert task.done() and task.exception() is None
    assert finished[0] == 1
    assert await transport.lag("orders", "billing") == (0 if finished == [1, 2] else 1)


async def test_stop_cancels_a_handler_that_outlives_the_grace_period_and_leaves_it_pending():
    transport = MemoryTransport()
    bus = Mediator()
    started = asyncio.Event()

    async def on_placed(event: OrderPlaced) -> None:
        started.set()
        await asyncio.sleep(30)

    bus.subscribe(OrderPlaced, on_placed)
    consumer = fast_consumer(bus, transport)
    await transport.ensure_group("orders", "billing")
    consumer.start()
    await publish(transport, OrderPlaced(order_id=1))
    await asyncio.wait_for(started.wait(), 5)
    assert await consumer.stop(grace=0.1) is False
    assert await transport.lag("orders", "billing") == 1  # delivered again later


class DeafTransport(MemoryTransport):
    """A memory transport whose receive loses the first cancellation it gets, as
    redis-py does when one arrives while a command waits on its socket."""

    async def receive(self, *args: object, **kwargs: object) -> list[Delivery]:
        try:
            return await super().receive(*args, **kwargs)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            await asyncio.sleep(30)  # the cancellation is gone; this wait is not cancelled
            raise


async def test_stop_does_not_hang_on_a_loop_whose_cancellation_is_lost(
    caplog: pytest.LogCaptureFixture,
):
    transport = DeafTransport()
    consumer = fast_consumer(Mediator(), transport, wait=5.0)  # receive waits 5 s
    await transport.ensure_group("orders", "billing")
    task = consumer.start()
    await asyncio.sleep(0.1)  # the loop waits in receive()
    begun = time.monotonic()
    assert await consumer.stop(grace=0.1) is False
    assert time.monotonic() - begun < 0.1 + CANCEL_WAIT + 0.5
    assert "did not end" in caplog.text and not task.done()
    task.cancel()  # the second cancellation reaches it
    with contextlib.suppress(asyncio.CancelledError):
        await task


class FlakyTransport(MemoryTransport):
    """A memory transport whose receive fails a few times, as a broker that restarts."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def receive(self, *args: object, **kwargs: object) -> list[Delivery]:
        if self.failures:
            self.failures -= 1
            raise TransportError("connection refused")
        return await super().receive(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_broker_that_fails_for_a_while_does_not_end_the_loop(
    caplog: pytest.LogCaptureFixture,
):
    transport = FlakyTransport(failures=3)
    counting = CountingBus()
    consumer = fast_consumer(counting.bus, transport)
    await transport.ensure_group("orders", "billing")
    event = OrderPlaced(order_id=1)
    await publish(transport, event)
    async with running(consumer) as task:
        await eventually(lambda: counting.handled == [event.request_id], timeout=10)
        assert not task.done()
    assert transport.failures == 0
    assert sum("the broker failed" in r.getMessage() for r in caplog.records) == 3


async def test_deliveries_of_one_correlation_are_handled_in_order_and_others_concurrently():
    transport = MemoryTransport()
    bus = Mediator()
    log: list[tuple[str, int, str]] = []

    async def on_placed(event: OrderPlaced) -> None:
        log.append((str(event.correlation_id), event.order_id, "start"))
        await asyncio.sleep(0.02)
        log.append((str(event.correlation_id), event.order_id, "end"))

    bus.subscribe(OrderPlaced, on_placed)
    consumer = fast_consumer(bus, transport)
    await transport.ensure_group("orders", "billing")
    for n in range(6):
        await publish(transport, OrderPlaced(order_id=n, correlation_id=f"op-{n % 2}"))
    await consumer.process_batch()
    for correlation in ("op-0", "op-1"):
        mine = [(n, step) for c, n, step in log if c == correlation]
        orders = [n for n, _ in mine]
        assert orders == sorted(orders)
        assert [step for _, step in mine] == ["start", "end"] * 3  # one at a time
    assert log[0][2] == log[1][2] == "start"  # the two correlations overlapped


async def test_a_listener_that_raises_does_not_disturb_the_consumer(
    caplog: pytest.LogCaptureFixture,
):
    transport = MemoryTransport()
    counting = CountingBus()

    def broken(event: DeliveryEvent) -> None:
        raise RuntimeError("listener bug")

    consumer = fast_consumer(counting.bus, transport, listeners=[broken])
    await transport.ensure_group("orders", "billing")
    await publish(transport, OrderPlaced(order_id=1))
    await drain(consumer)
    assert len(counting.handled) == 1
    assert await transport.lag("orders", "billing") == 0
    assert any("delivery listener" in r.getMessage() for r in caplog.records)


def test_backoff_grows_to_its_maximum_and_refuses_nonsense():
    backoff = Backoff(initial=1, factor=3, maximum=5)
    assert [backoff.delay(n) for n in (1, 2, 3, 1000)] == [1, 3, 5, 5]
    with pytest.raises(ValueError):
        Backoff(factor=0.5)
    with pytest.raises(ValueError):
        Backoff(initial=-1)


async def test_a_consumer_runs_one_loop_at_a_time():
    consumer = fast_consumer(Mediator(), MemoryTransport())
    consumer.start()
    with pytest.raises(RuntimeError, match="running already"):
        consumer.start()
    with pytest.raises(RuntimeError, match="running already"):
        await consumer.run()
    assert await consumer.stop(grace=5)
    assert await consumer.stop(grace=5)  # stopping a stopped consumer is harmless
    task = consumer.start()  # and it can run again
    await asyncio.sleep(0.1)
    assert not task.done()
    assert await consumer.stop(grace=5)


def test_consumer_options_are_checked():
    transport = MemoryTransport()
    with pytest.raises(ValueError, match="max_attempts"):
        Consumer(Mediator(), transport, CODEC, "orders", "g", max_attempts=0)
    with pytest.raises(ValueError, match="group"):
        Consumer(Mediator(), transport, CODEC, "orders", "two words")
    consumer = Consumer(Mediator(), transport, CODEC, "orders", "g")
    assert consumer.name  # host and pid by default
    assert "orders" in repr(consumer)


async def test_a_replayed_dead_letter_keeps_its_ids_and_its_chain_goes_on(
    make_transport: TransportFactory,
):
    transport = make_transport()
    bus = Mediator()
    fixed = False
    caused: list[ReserveStock] = []

    async def on_placed(event: OrderPlaced) -> None:
        if not fixed:
            raise RuntimeError("bug")
        await bus.send(ReserveStock(order_id=event.order_id))

    async def reserve(command: ReserveStock) -> None:
        caused.append(command)

    bus.subscribe(OrderPlaced, on_placed)
    bus.register(ReserveStock, reserve)
    consumer = fast_consumer(bus, transport, max_attempts=1)
    await transport.ensure_group("orders", "billing")
    event = OrderPlaced(order_id=2, correlation_id="req-2")
    await publish(transport, event)
    await drain(consumer)
    [letter] = await transport.dead_letters("orders")
    assert letter.reason == "failed once; last error: RuntimeError: bug"

    fixed = True  # the fix is deployed; the operator replays
    await transport.replay(letter)
    await drain(consumer)
    [command] = caused
    assert command.correlation_id == "req-2"
    assert command.causation_id == event.request_id
    assert await transport.dead_letters("orders") == []
