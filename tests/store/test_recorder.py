"""MessageRecorder through a real Mediator: what is recorded, when, and how failures
surface."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Annotated, Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from pydantic import Field

from python_cqrs_core import PII, BaseCommand, BaseEvent, BaseQuery, Mediator, message_type_name
from python_cqrs_core.mediator import CallNext
from python_cqrs_core.messages import BaseMessage
from python_cqrs_core.registry import MessageRegistry
from python_cqrs_core.store import (
    MemoryStore,
    MessageAlreadyRecordedError,
    MessageRecord,
    MessageRecorder,
    MessageStore,
    ReadOnlyStoreError,
    RecordNotReconstructibleError,
    StoreWriteError,
    open_store,
)


class PlaceOrder(BaseCommand):
    order_id: int
    email: Annotated[str, PII] = "ada@example.com"


class OrderPlaced(BaseEvent):
    order_id: int


class ReserveStock(BaseCommand):
    order_id: int


class GetOrder(BaseQuery):
    order_id: int


class SmtpError(Exception):
    pass


class PlaceOrderHandler:
    def __init__(self, bus: Mediator) -> None:
        self.bus = bus

    async def handle(self, command: PlaceOrder) -> int:
        await self.bus.publish(OrderPlaced(order_id=command.order_id))
        return command.order_id


class ReserveOnOrderPlaced:
    def __init__(self, bus: Mediator) -> None:
        self.bus = bus

    async def handle(self, event: OrderPlaced) -> None:
        await self.bus.send(ReserveStock(order_id=event.order_id))


class NotifyCustomer:
    def __init__(self) -> None:
        self.raised: list[SmtpError] = []

    async def handle(self, event: OrderPlaced) -> None:
        error = SmtpError(f"mail server refused order {event.order_id}")
        self.raised.append(error)
        raise error


class ReserveStockHandler:
    async def handle(self, command: ReserveStock) -> str:
        return "reserved"


class GetOrderHandler:
    async def handle(self, query: GetOrder) -> dict[str, int]:
        return {"order_id": query.order_id}


def order_bus(*, notifier: NotifyCustomer | None = None) -> Mediator:
    bus = Mediator()
    bus.register(PlaceOrder, PlaceOrderHandler(bus))
    bus.subscribe(OrderPlaced, ReserveOnOrderPlaced(bus))
    if notifier is not None:
        bus.subscribe(OrderPlaced, notifier)
    bus.register(ReserveStock, ReserveStockHandler())
    bus.register(GetOrder, GetOrderHandler())
    return bus


def by_type(records: Sequence[MessageRecord]) -> dict[type[BaseMessage], MessageRecord]:
    """The records by message class (recorded under its stable type name)."""
    classes = {message_type_name(cls): cls for cls in (PlaceOrder, OrderPlaced, ReserveStock)}
    return {classes[r.message_type]: r for r in records}


def type_names(*classes: type[BaseMessage]) -> list[str]:
    return [message_type_name(cls) for cls in classes]


class CountingStore(MemoryStore):
    """A real in-memory store that counts its appends (round trips)."""

    def __init__(self) -> None:
        super().__init__()
        self.appends: list[int] = []

    async def append(self, records: Sequence[MessageRecord]) -> None:
        self.appends.append(len(records))
        await super().append(records)


class BrokenStore(MemoryStore):
    """A store whose disk is gone: every append fails."""

    async def append(self, records: Sequence[MessageRecord]) -> None:
        raise OSError(28, "No space left on device")


# -- what a chain records -----------------------------------------------------------------


async def test_a_chain_records_outcomes_handlers_and_causation_of_every_message(
    store: MessageStore,
) -> None:
    notifier = NotifyCustomer()
    bus = order_bus(notifier=notifier)
    MessageRecorder(store).install(bus)
    command = PlaceOrder(order_id=7, requested_by="alice")

    with pytest.raises(SmtpError) as raised:
        await bus.send(command)

    assert raised.value is notifier.raised[0]  # the handler's own exception, unchanged
    records = await store.by_correlation(command.correlation_id)  # type: ignore[arg-type]
    assert [r.message_type for r in records] == type_names(PlaceOrder, OrderPlaced, ReserveStock)
    place, placed, reserve = records
    assert [r.kind for r in records] == ["command", "event", "command"]
    assert placed.causation_id == str(place.message_id)
    assert reserve.causation_id == str(placed.message_id)
    assert place.causation_id is None
    assert {r.requested_by for r in records} == {"alice"}
    assert [(h.handler, h.outcome, h.error_type) for h in placed.handlers] == [
        ("ReserveOnOrderPlaced", "succeeded", None),
        ("NotifyCustomer", "failed", "SmtpError"),
    ]
    assert placed.handler == "ReserveOnOrderPlaced, NotifyCustomer"
    assert (placed.outcome, placed.error_type, placed.error_message) == (
        "failed",
        "SmtpError",
        "mail server refused order 7",
    )
    assert (place.outcome, place.error_type, place.handler) == (
        "failed",
        "SmtpError",
        "PlaceOrderHandler",
    )
    assert (reserve.outcome, reserve.handler, reserve.error_type) == (
        "succeeded",
        "ReserveStockHandler",
        None,
    )
    assert place.payload == {"order_id": 7, "email": "ada@example.com"}  # business fields only
    assert all(r.duration_ms is not None and r.duration_ms >= 0 for r in records)
    assert place.duration_ms >= placed.duration_ms >= reserve.duration_ms  # type: ignore[operator]


async def test_a_handled_failure_deeper_in_the_chain_does_not_fail_the_root(
    store: MessageStore,
) -> None:
    bus = Mediator()

    class TolerantPlaceOrder:
        async def handle(self, command: PlaceOrder) -> int:
            with contextlib.suppress(SmtpError):
                await bus.publish(OrderPlaced(order_id=command.order_id))
            return command.order_id

    bus.register(PlaceOrder, TolerantPlaceOrder())
    bus.subscribe(OrderPlaced, NotifyCustomer())
    MessageRecorder(store).install(bus)
    command = PlaceOrder(order_id=1)
    assert await bus.send(command) == 1
    records = by_type(await store.by_correlation(command.correlation_id))  # type: ignore[arg-type]
    assert records[PlaceOrder].outcome == "succeeded"
    assert records[OrderPlaced].outcome == "failed"


async def test_a_failing_command_is_recorded_failed_and_its_exception_reaches_the_caller() -> None:
    store = MemoryStore()
    bus = Mediator()
    error = ValueError("order 3 is out of stock")

    async def refuse(command: ReserveStock) -> None:
        raise error

    bus.register(ReserveStock, refuse)
    MessageRecorder(store).install(bus)
    command = ReserveStock(order_id=3)
    with pytest.raises(ValueError) as raised:
        await bus.send(command)
    assert raised.value is error and not getattr(error, "__notes__", None)
    record = await store.get(command.request_id)
    assert record is not None
    assert (record.outcome, record.error_type, record.error_message) == (
        "failed",
        "ValueError",
        "order 3 is out of stock",
    )
    assert [h.outcome for h in record.handlers] == ["failed"]


async def test_an_event_without_subscribers_is_recorded_with_no_handler() -> None:
    store = MemoryStore()
    bus = Mediator()
    MessageRecorder(store).install(bus)
    event = OrderPlaced(order_id=1)
    await bus.publish(event)
    record = await store.get(event.request_id)
    assert record is not None
    assert (record.kind, record.outcome, record.handlers, record.handler) == (
        "event",
        "succeeded",
        (),
        None,
    )


async def test_positions_follow_dispatch_start_order_parent_before_child() -> None:
    store = MemoryStore()
    bus = order_bus()
    MessageRecorder(store).install(bus)
    command = PlaceOrder(order_id=1)
    await bus.send(command)
    records = await store.by_correlation(command.correlation_id)  # type: ignore[arg-type]
    # The child finishes first, but the parent started first and is recorded first.
    assert [r.message_type for r in records] == type_names(PlaceOrder, OrderPlaced, ReserveStock)
    assert [r.position for r in records] == sorted(r.position or 0 for r in records)


async def test_a_whole_chain_costs_one_store_round_trip() -> None:
    store = CountingStore()
    bus = order_bus()
    MessageRecorder(store).install(bus)
    await bus.send(PlaceOrder(order_id=1))
    await bus.send(PlaceOrder(order_id=2))
    assert store.appends == [3, 3]


async def test_concurrent_dispatches_inside_one_handler_join_the_chain_batch() -> None:
    store = CountingStore()
    bus = Mediator()

    async def fan_out(command: PlaceOrder) -> None:
        await asyncio.gather(*(bus.send(ReserveStock(order_id=n)) for n in range(5)))

    bus.register(PlaceOrder, fan_out)
    bus.register(ReserveStock, ReserveStockHandler())
    MessageRecorder(store).install(bus)
    command = PlaceOrder(order_id=1)
    await bus.send(command)
    assert store.appends == [6]
    (tree,) = await store.build_causation_tree(command.correlation_id)  # type: ignore[arg-type]
    assert [c.record.payload["order_id"] for c in tree.children] == [0, 1, 2, 3, 4]


# -- what is recorded, and how ------------------------------------------------------------------


async def test_queries_are_recorded_only_when_asked() -> None:
    for record_queries, expected in ((False, None), (True, message_type_name(GetOrder))):
        store = MemoryStore()
        bus = order_bus()
        MessageRecorder(store, record_queries=record_queries).install(bus)
        query = GetOrder(order_id=5)
        assert await bus.query(query) == {"order_id": 5}
        record = await store.get(query.request_id)
        assert (None if record is None else record.message_type) == expected


async def test_redact_pii_stores_stars_for_personal_fields_only() -> None:
    for redact, expected_email in ((False, "ada@example.com"), (True, "***")):
        store = MemoryStore()
        bus = order_bus()
        MessageRecorder(store, redact_pii=redact).install(bus)
        command = PlaceOrder(order_id=9, email="ada@example.com")
        await bus.send(command)
        record = await store.get(command.request_id)
        assert record is not None
        assert (record.payload["email"], record.payload["order_id"]) == (expected_email, 9)


async def test_headers_carry_the_traceparent_of_the_span_handling_the_message() -> None:
    store = MemoryStore()
    bus = order_bus()
    span_context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )

    async def tracing(message: BaseMessage, call_next: CallNext) -> Any:
        token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(span_context)))
        try:
            return await call_next(message)
        finally:
            otel_context.detach(token)

    bus.add_middleware(tracing)  # outside the recorder, as documented
    MessageRecorder(store).install(bus)
    command = PlaceOrder(order_id=1)
    await bus.send(command)
    record = await store.get(command.request_id)
    assert record is not None
    assert record.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_without_a_span_no_trace_headers_are_recorded() -> None:
    store = MemoryStore()
    bus = order_bus()
    MessageRecorder(store).install(bus)
    command = ReserveStock(order_id=1)
    await bus.send(command)
    record = await store.get(command.request_id)
    assert record is not None and record.traceparent is None


# -- store failures -----------------------------------------------------------------------


async def test_a_dispatch_whose_records_cannot_be_written_raises_store_write_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = order_bus()
    MessageRecorder(BrokenStore()).install(bus)
    with pytest.raises(StoreWriteError, match="could not record 3 message") as raised:
        await bus.send(PlaceOrder(order_id=1))
    assert isinstance(raised.value.__cause__, OSError)
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_a_recorded_message_dispatched_again_is_refused_before_its_handler_runs(
    store: MessageStore,
) -> None:
    bus = Mediator()
    handled: list[ReserveStock] = []

    async def reserve(command: ReserveStock) -> None:
        handled.append(command)

    bus.register(ReserveStock, reserve)
    MessageRecorder(store).install(bus)
    command = ReserveStock(order_id=1)
    await bus.send(command)
    with pytest.raises(MessageAlreadyRecordedError, match="Build a new message") as raised:
        await bus.send(command)
    assert isinstance(raised.value, StoreWriteError)
    assert handled == [command]  # the retry had no side effect
    assert [r.message_id for r in await store.by_correlation(command.request_id)] == [
        command.request_id
    ]
    await bus.send(ReserveStock(order_id=1))  # a new message is fine
    assert len(handled) == 2


async def test_a_duplicate_the_recorder_never_saw_fails_loudly_at_the_store(
    store: MessageStore,
) -> None:
    # E.g. the same message recorded by another process: only the store can tell.
    command = ReserveStock(order_id=1)
    first, second = order_bus(), order_bus()
    MessageRecorder(store).install(first)
    MessageRecorder(store).install(second)
    await first.send(command)
    with pytest.raises(StoreWriteError) as raised:
        await second.send(command)
    assert not isinstance(raised.value, MessageAlreadyRecordedError)
    assert isinstance(raised.value.__cause__, StoreWriteError)


async def test_when_handler_and_store_both_fail_the_handler_error_is_raised_with_a_note(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = NotifyCustomer()
    bus = order_bus(notifier=notifier)
    MessageRecorder(BrokenStore()).install(bus)
    with pytest.raises(SmtpError) as raised:
        await bus.send(PlaceOrder(order_id=4))
    assert raised.value is notifier.raised[0]
    (note,) = raised.value.__notes__
    assert "could not record 3 message(s)" in note and "No space left" in note
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "could not record" in errors[0].getMessage()


# -- spawned tasks and durability modes ---------------------------------------------------


async def test_a_dispatch_from_a_task_that_outlives_the_root_is_recorded_on_its_own() -> None:
    store = CountingStore()
    bus = Mediator()
    release = asyncio.Event()
    spawned: list[asyncio.Task[Any]] = []

    async def place(command: PlaceOrder) -> None:
        async def later() -> None:
            await release.wait()  # runs after the root dispatch returned
            await bus.send(ReserveStock(order_id=command.order_id))

        spawned.append(asyncio.create_task(later()))

    bus.register(PlaceOrder, place)
    bus.register(ReserveStock, ReserveStockHandler())
    MessageRecorder(store).install(bus)
    command = PlaceOrder(order_id=1)
    await bus.send(command)
    assert store.appends == [1]
    release.set()
    await spawned[0]
    assert store.appends == [1, 1]
    records = await store.by_correlation(command.correlation_id)  # type: ignore[arg-type]
    assert [r.message_type for r in records] == type_names(PlaceOrder, ReserveStock)
    assert records[1].causation_id == str(command.request_id)


async def test_a_task_whose_dispatch_is_still_running_at_root_commit_records_it_later() -> None:
    store = CountingStore()
    bus = Mediator()
    release = asyncio.Event()
    started = asyncio.Event()
    spawned: list[asyncio.Task[Any]] = []

    async def slow_reserve(command: ReserveStock) -> None:
        started.set()
        await release.wait()

    async def place(command: PlaceOrder) -> None:
        spawned.append(asyncio.create_task(bus.send(ReserveStock(order_id=1))))
        await started.wait()  # the child dispatch has begun inside the root's batch

    bus.register(PlaceOrder, place)
    bus.register(ReserveStock, slow_reserve)
    MessageRecorder(store).install(bus)
    command = PlaceOrder(order_id=1)
    await bus.send(command)
    assert store.appends == [1]  # the unfinished child is not in the root's commit
    release.set()
    await spawned[0]
    assert store.appends == [1, 1]
    assert len(await store.by_correlation(command.correlation_id)) == 2  # type: ignore[arg-type]


async def test_async_durability_writes_in_the_background_and_flush_waits_for_it() -> None:
    store = CountingStore()
    bus = order_bus()
    recorder = MessageRecorder(store, durability="async").install(bus)
    commands = [PlaceOrder(order_id=n) for n in range(20)]
    for command in commands:
        await bus.send(command)
    await recorder.flush()
    assert sum(store.appends) == 60
    assert len(store.appends) < 20  # queued chains were written together
    for command in commands:
        assert len(await store.by_correlation(command.correlation_id)) == 3  # type: ignore[arg-type]
    await recorder.close()


async def test_async_durability_reports_a_failed_background_write_on_flush(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = order_bus()
    recorder = MessageRecorder(BrokenStore(), durability="async").install(bus)
    await bus.send(PlaceOrder(order_id=1))  # returns before the write
    with pytest.raises(StoreWriteError, match="background write") as raised:
        await recorder.flush()
    assert isinstance(raised.value.__cause__, OSError)
    assert any("background" in r.getMessage() for r in caplog.records)
    await recorder.close()


async def test_a_closed_recorder_refuses_dispatches_instead_of_dropping_records() -> None:
    bus = order_bus()
    recorder = MessageRecorder(MemoryStore()).install(bus)
    await recorder.close()
    with pytest.raises(RuntimeError, match="closed"):
        await bus.send(ReserveStock(order_id=1))


async def test_a_payload_json_cannot_hold_is_replaced_by_a_note_not_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Opaque:
        pass

    class CarryOpaque(BaseCommand):
        model_config = {"arbitrary_types_allowed": True}
        thing: Opaque

    store = MemoryStore()
    bus = Mediator()

    async def handle(command: CarryOpaque) -> str:
        return "handled"

    bus.register(CarryOpaque, handle)
    MessageRecorder(store).install(bus)
    command = CarryOpaque(thing=Opaque())
    assert await bus.send(command) == "handled"
    record = await store.get(command.request_id)
    assert record is not None and record.outcome == "succeeded"
    assert "unrecordable_payload" in record.payload
    with pytest.raises(RecordNotReconstructibleError, match="could not be recorded"):
        record.to_message(MessageRegistry([CarryOpaque]))
    assert any("cannot be recorded as JSON" in r.getMessage() for r in caplog.records)


# -- what a record knows: its type, its service, its personal data -------------------------


class OrderShipped(BaseEvent):
    __message_type__ = "store_tests.OrderShipped"
    order_id: int
    tracking: str = Field(alias="trackingNumber")
    recipient: Annotated[str, PII] = Field(alias="recipientEmail")
    phone: Annotated[str | None, PII] = None


async def record_of(message: BaseMessage, **options: Any) -> MessageRecord:
    """The record of ``message`` dispatched through a recorder made with ``options``."""
    store = MemoryStore()
    bus = Mediator()

    async def handle(message: BaseMessage) -> None:
        return None

    if isinstance(message, BaseEvent):
        bus.subscribe(type(message), handle)
    else:
        bus.register(type(message), handle)
    MessageRecorder(store, **options).install(bus)
    await bus.process(message)
    record = await store.get(message.request_id)
    assert record is not None
    return record


async def test_records_carry_the_stable_type_name_of_their_message() -> None:
    assert (await record_of(ReserveStock(order_id=1))).message_type == (
        f"{ReserveStock.__module__}.ReserveStock"
    )
    shipped = OrderShipped(order_id=1, trackingNumber="T-1", recipientEmail="ada@example.com")
    assert (await record_of(shipped)).message_type == "store_tests.OrderShipped"


async def test_records_name_the_service_that_recorded_them() -> None:
    assert (await record_of(ReserveStock(order_id=1))).service is None
    assert (await record_of(ReserveStock(order_id=1), service="orders")).service == "orders"
    for bad in ("", "two words", "x" * 300, "tab\there"):
        with pytest.raises(ValueError, match="service"):
            MessageRecorder(MemoryStore(), service=bad)


async def test_the_payload_holds_the_business_fields_by_alias_and_names_the_personal_ones() -> None:
    shipped = OrderShipped(
        order_id=7, trackingNumber="T-7", recipientEmail="ada@example.com", requested_by="ada"
    )
    record = await record_of(shipped)
    assert record.payload == {
        "order_id": 7,
        "trackingNumber": "T-7",
        "recipientEmail": "ada@example.com",
        "phone": None,
    }
    assert record.pii_fields == ("phone", "recipientEmail")
    assert not record.payload_redacted
    assert record.redacted_payload() == {**record.payload, "recipientEmail": "***"}
    assert record.to_message(MessageRegistry([OrderShipped])) == shipped


async def test_redacted_records_say_so_and_cannot_be_turned_back_into_messages() -> None:
    shipped = OrderShipped(order_id=7, trackingNumber="T-7", recipientEmail="ada@example.com")
    record = await record_of(shipped, redact_pii=True)
    assert record.payload["recipientEmail"] == "***" and record.payload_redacted
    assert record.redacted_payload() == record.payload
    with pytest.raises(RecordNotReconstructibleError, match="redacted when it was recorded"):
        record.to_message(MessageRegistry([OrderShipped]))
    # A class without personal data loses nothing to redaction: it turns back fine.
    reserve = ReserveStock(order_id=3)
    plain = await record_of(reserve, redact_pii=True)
    assert not plain.payload_redacted and plain.pii_fields == ()
    assert plain.to_message(MessageRegistry([ReserveStock])) == reserve


def test_a_recorder_refuses_a_store_opened_read_only() -> None:
    with pytest.raises(ReadOnlyStoreError, match="read-only"):
        MessageRecorder(MemoryStore(read_only=True))


def test_durability_must_be_sync_or_async() -> None:
    with pytest.raises(ValueError, match="durability"):
        MessageRecorder(MemoryStore(), durability="eventually")  # type: ignore[arg-type]


# -- passwords stay out of errors and logs ---------------------------------------------------

SECRET = "s3cret-Pa55"


class BrokenStoreBehindAPassword(MemoryStore):
    """A store reached with a password, whose disk is gone."""

    def __init__(self) -> None:
        super().__init__(f"memory://app:{SECRET}@store-host")
        self.url = f"memory://app:{SECRET}@store-host"  # as a careless backend keeps it

    async def append(self, records: Sequence[MessageRecord]) -> None:
        raise OSError(28, "No space left on device")


async def test_a_failed_write_names_the_store_without_its_password_in_errors_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = order_bus()
    MessageRecorder(BrokenStoreBehindAPassword()).install(bus)
    with pytest.raises(StoreWriteError, match=r"memory://app:\*\*\*@store-host") as raised:
        await bus.send(PlaceOrder(order_id=1))
    assert SECRET not in str(raised.value)
    background = MessageRecorder(BrokenStoreBehindAPassword(), durability="async")
    background.install(bus2 := order_bus())
    await bus2.send(PlaceOrder(order_id=2))
    with pytest.raises(StoreWriteError) as flushed:
        await background.flush()
    assert SECRET not in str(flushed.value)
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) >= 2 and all(SECRET not in line for line in logged)
    with pytest.raises(ReadOnlyStoreError) as refused:
        MessageRecorder(MemoryStore(f"memory://app:{SECRET}@host", read_only=True))
    assert SECRET not in str(refused.value)


# -- exceptions and text no store can hold -------------------------------------------------


class UnprintableError(Exception):
    """An exception whose text cannot even be made: its ``__str__`` raises."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class ImportFile(BaseCommand):
    __message_type__ = "store_tests.ImportFile"
    path: str
    ratio: float


async def test_an_exception_whose_str_raises_reaches_the_caller_unchanged_and_is_recorded(
    store: MessageStore,
) -> None:
    raised: list[UnprintableError] = []

    async def refuse(command: ReserveStock) -> None:
        raised.append(UnprintableError())
        raise raised[0]

    bus = Mediator()
    bus.register(PlaceOrder, PlaceOrderHandler(bus))
    bus.subscribe(OrderPlaced, ReserveOnOrderPlaced(bus))
    bus.register(ReserveStock, refuse)
    MessageRecorder(store).install(bus)
    command = PlaceOrder(order_id=1)
    with pytest.raises(UnprintableError) as caught:
        await bus.send(command)
    assert caught.value is raised[0]
    records = await store.by_correlation(command.correlation_id)  # type: ignore[arg-type]
    assert [r.message_type for r in records] == type_names(PlaceOrder, OrderPlaced, ReserveStock)
    placeholder = "<unprintable UnprintableError: its __str__ raised RuntimeError>"
    assert [(r.outcome, r.error_type, r.error_message) for r in records] == [
        ("failed", "UnprintableError", placeholder)
    ] * 3
    assert records[2].handlers[0].error_message == placeholder


async def test_a_store_failure_whose_str_raises_is_reported_with_placeholder_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class UnprintableStore(MemoryStore):
        async def append(self, records: Sequence[MessageRecord]) -> None:
            raise UnprintableError

    bus = order_bus()
    MessageRecorder(UnprintableStore()).install(bus)
    with pytest.raises(StoreWriteError, match="unprintable UnprintableError") as raised:
        await bus.send(ReserveStock(order_id=1))
    assert isinstance(raised.value.__cause__, UnprintableError)
    assert any("could not record 1 message" in r.getMessage() for r in caplog.records)


async def test_exception_text_and_payload_a_store_cannot_hold_keep_the_whole_chain(
    store: MessageStore,
) -> None:
    """A file name decoded with surrogateescape, a NUL, a NaN: the chain is recorded,
    escaped the same way by every backend, and reads back as strict JSON."""
    bus = Mediator()
    name = b"caf\xe9.csv".decode("utf-8", "surrogateescape")

    async def import_file(command: ImportFile) -> None:
        await bus.publish(OrderPlaced(order_id=1))
        raise OSError(f"cannot read {command.path}\x00")

    bus.register(ImportFile, import_file)
    bus.subscribe(OrderPlaced, ReserveOnOrderPlaced(bus))
    bus.register(ReserveStock, ReserveStockHandler())
    MessageRecorder(store).install(bus)
    command = ImportFile(path=name, ratio=float("nan"))
    with pytest.raises(OSError, match="cannot read"):
        await bus.send(command)
    records = await store.by_correlation(command.correlation_id)  # type: ignore[arg-type]
    assert len(records) == 3
    imported = records[0]
    assert imported.payload == {"path": "caf\\udce9.csv", "ratio": "NaN"}
    assert imported.error_message == "cannot read caf\\udce9.csv\\u0000"
    assert imported.escaped_fields == ("error_message", "handlers", "payload")
    assert [r.escaped_fields for r in records[1:]] == [(), ()]
    json.dumps([r.to_dict() for r in records], allow_nan=False, ensure_ascii=False).encode()


# -- background writes from one event loop after another -----------------------------------


def dispatch_in_background(bus: Mediator, first: int) -> None:
    """Dispatch ten chains in a loop of their own, which ends without a flush."""

    async def dispatch() -> None:
        for order_id in range(first, first + 10):
            await bus.send(PlaceOrder(order_id=order_id))

    asyncio.run(dispatch())


@pytest.mark.parametrize("backend", ["memory", "sqlite"], indirect=True)
def test_a_recorder_used_from_a_second_event_loop_keeps_writing_and_flush_returns(
    backend_location: str,
) -> None:
    store = asyncio.run(open_store(backend_location))
    bus = order_bus()
    recorder = MessageRecorder(store, durability="async").install(bus)
    dispatch_in_background(bus, 0)  # the first loop ends: its writes are made

    async def second_loop() -> list[int]:
        for order_id in range(10, 20):
            await bus.send(PlaceOrder(order_id=order_id))
        await asyncio.wait_for(recorder.flush(), 10)  # never waits for the first loop
        summaries = await store.correlations(limit=100)
        await recorder.close()
        return sorted(s.message_count for s in summaries)

    assert asyncio.run(second_loop()) == [3] * 20
    asyncio.run(store.close())


def test_flush_from_a_new_loop_does_not_wait_for_a_loop_that_stopped() -> None:
    store = CountingStore()
    bus = order_bus()
    recorder = MessageRecorder(store, durability="async").install(bus)
    stopped = asyncio.new_event_loop()  # run once, then never again (nor closed)

    async def dispatch() -> None:
        await bus.send(PlaceOrder(order_id=1))

    stopped.run_until_complete(dispatch())  # the writer task never got to run

    async def later() -> int:
        await bus.send(PlaceOrder(order_id=2))
        await asyncio.wait_for(recorder.flush(), 10)
        return len(await store.correlations())

    assert asyncio.run(later()) == 2  # the new loop's writer took over the whole queue
    stopped.close()


# -- many chains at once ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_a_thousand_concurrent_chains_keep_causation_inside_their_correlation(
    store: MessageStore,
) -> None:
    bus = order_bus()
    MessageRecorder(store).install(bus)
    commands = [PlaceOrder(order_id=n) for n in range(1000)]
    await asyncio.gather(*(bus.send(command) for command in commands))

    recent = await store.correlations(limit=2000)
    assert sorted(s.correlation_id for s in recent) == sorted(
        str(c.correlation_id) for c in commands
    )
    assert {summary.message_count for summary in recent} == {3}
    for command in commands:
        records = await store.by_correlation(command.correlation_id)  # type: ignore[arg-type]
        by_id = {str(r.message_id): r for r in records}
        for record in records:
            if record.causation_id is not None:
                parent = by_id[record.causation_id]  # in the same correlation
                assert parent.correlation_id == record.correlation_id
        (tree,) = await store.build_causation_tree(command.correlation_id)  # type: ignore[arg-type]
        assert [n.record.message_type for _, n in tree.walk()] == type_names(
            PlaceOrder, OrderPlaced, ReserveStock
        )
