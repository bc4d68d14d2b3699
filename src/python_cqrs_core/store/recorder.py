"""Recording every dispatch of a :class:`~python_cqrs_core.Mediator` into a store.

::

    store = await open_store("sqlite:///cqrs.db")
    recorder = MessageRecorder(store).install(bus)
    await bus.send(PlaceOrder(order_id=7))   # returns once the whole chain is committed
    ...
    await recorder.close()                   # then store.close()

The recorder is a middleware (one record per message) plus a handler middleware (one
:class:`~python_cqrs_core.store.HandlerOutcome` per handler that ran).

**Group commit.**  The *root* dispatch of a chain (the one its caller awaits) opens a
batch; every dispatch nested inside its handlers adds its record to that batch, in
dispatch *start* order (a parent before its children).  When the root dispatch ends,
successfully or not, the batch goes to the store in one ``append``, one round trip
per chain.  With ``durability="sync"`` (the default) the root dispatch returns only
after that commit: *every dispatch that returned to its caller is durably recorded*.

A task spawned inside a handler (``asyncio.create_task``) inherits the batch; if it
dispatches after the root committed, or is still running then, its records are
committed on their own when its dispatches end, never dropped.

**Consumed messages.**  When the root dispatch is a message received from a broker
(a consumer describes the delivery with :func:`~python_cqrs_core.context.consuming`,
and the message dispatched is the one :func:`~python_cqrs_core.context.current_consumption`
names), the recorder records the *delivery*:

- the message's record only if the store does not hold it yet (the producer, when it
  records into the same store, recorded it when it published it; a retry finds the
  record of the first attempt): never a collision, never a second record.  Recorded
  here, it is the message *as received*: outcome ``succeeded``, no handlers, the
  producer's ``service`` if the wire named it; a record's outcome is always that of
  the dispatch that published the message;
- a :class:`~python_cqrs_core.store.DeliveryRecord` of this attempt: this service,
  the transport, destination, group, attempt and delivery id, and how its handlers
  ended (what a local dispatch keeps in the record's ``handlers`` and ``outcome``),

in the same commit as the records of what its handlers dispatched, which are
ordinary records.  A retry of the message (same id) records one more delivery.

**Writes of your own** (SQLite).  :meth:`MessageRecorder.attach` adds a SQL statement
to the commit of the chain running in this context, kept only if the chain's root
dispatch succeeds (a failed root rolls it back, as an application transaction would;
its records are still written): the embedded outbox commits its entries and inbox
marks this way.  :meth:`MessageRecorder.chain` opens a block whose next root dispatch
takes the statements attached in the block before it started.

**Background writes** (``durability="async"``).  Records are queued and written by a
task of the running event loop; :meth:`MessageRecorder.flush` and
:meth:`MessageRecorder.close` wait until the queue is written.  What is still queued
when the program ends is written anyway:

- when the event loop shuts down (``asyncio.run()`` returning, whether or not the
  program closed the recorder), in the loop's own shutdown of asynchronous
  generators, before it closes;
- at the normal exit of the process, if the loop was left unclosed (it is run once
  more to write them);
- if neither is possible (the loop was closed with records still queued), the loss
  is logged at ERROR on ``python_cqrs_core.store`` with the number of records lost.

A crash of the process (``SIGKILL``, power loss) loses what was queued and not yet
written: at most the dispatches of the last few milliseconds.  The recorder may be
used from one event loop after another (a test suite's loops): each loop gets a
writer of its own, and :meth:`~MessageRecorder.flush` never waits for a loop that is
not running.

**Failures.**  A failing handler is recorded as failed (error type and message) and
its exception reaches the caller unchanged, the same object, whatever it is (an
exception whose ``__str__`` itself raises is recorded with placeholder text, see
:func:`~python_cqrs_core.errors.exception_message`).  When the store cannot take the
records, the root dispatch raises :class:`~python_cqrs_core.store.StoreWriteError`
(with the store's error chained) if the handlers succeeded; if they failed too, their
exception is re-raised unchanged with a note saying the record was lost, and the loss
is logged at ERROR.  Nothing the bus accepted is silently lost.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Iterator, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from .._optional_otel import otel_api
from ..context import Consumption, _consumption, current_consumption
from ..errors import exception_message
from ..headers import trace_headers
from ..mediator import CallNext, Mediator
from ..messages import BaseMessage, MessageKind, message_type_name
from ..names import STORE_LOGGER, TRACING_FIELDS
from ..pii import pii_fields
from ..validation import validate_type_name
from .base import (
    MessageAlreadyRecordedError,
    MessageStore,
    ReadOnlyStoreError,
    Statement,
    StoreWriteError,
    url_without_password,
)
from .records import UNRECORDABLE_PAYLOAD, DeliveryRecord, HandlerOutcome, MessageRecord, redact

__all__ = ["Durability", "MessageRecorder"]

logger = logging.getLogger(STORE_LOGGER)

Durability = Literal["sync", "async"]

_perf_ns = time.perf_counter_ns
_now = datetime.now
_TRACING_FIELDS: set[str] = set(TRACING_FIELDS)  # pydantic takes a set


class _RecordedType:
    """What recording needs of a message class, worked out once per class: its stable
    type name, the payload keys of its personal data, and its serializer."""

    __slots__ = ("dump", "name", "pii")

    def __init__(self, cls: type[BaseMessage]) -> None:
        self.name = message_type_name(cls)
        fields = cls.model_fields
        # The payload is dumped by alias (as model_validate takes it back): PII fields
        # are named by the key they have there.
        keys = [fields[n].serialization_alias or fields[n].alias or n for n in pii_fields(cls)]
        self.pii = tuple(sorted(keys))
        self.dump = cls.__pydantic_serializer__.to_python


_TYPES: dict[type[BaseMessage], _RecordedType] = {}


def _recorded_type(cls: type[BaseMessage]) -> _RecordedType:
    try:
        return _TYPES[cls]
    except KeyError:
        _TYPES[cls] = found = _RecordedType(cls)
        return found


class _Batch:
    """The records of one root dispatch and everything dispatched inside it, and the
    statements attached to it."""

    __slots__ = ("consumed", "entries", "sealed", "started", "statements")

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.sealed = False  # committed (or being committed): late entries write alone
        self.started = False  # a root dispatch took it (a batch opened by chain())
        self.consumed = False  # its root is a message received from a broker
        self.statements: list[Statement] | None = None  # attached ones, once there are


class _Entry:
    """One message being dispatched: what becomes its record when it ends."""

    __slots__ = (
        "batch", "consumption", "delivery", "failure", "handlers", "id_text", "message",
        "parent", "record", "start_ns",
    )  # fmt: skip

    def __init__(self, message: BaseMessage, batch: _Batch, parent: _Entry | None) -> None:
        self.message = message
        self.batch = batch
        self.parent = parent
        self.handlers: list[HandlerOutcome] = []
        self.failure: HandlerOutcome | None = None  # the first handler that failed
        self.id_text: str | None = None  # str(request_id), once a record needed it
        self.record: MessageRecord | None = None  # built when its dispatch ends
        self.consumption: Consumption | None = None  # the delivery, for a consumed root
        self.delivery: DeliveryRecord | None = None  # ... and its record, at its end
        self.start_ns = _perf_ns()

    def text_of_id(self) -> str:
        """``str(message.request_id)``, worked out once (a child's causation id and
        the root's correlation id are this text)."""
        text = self.id_text
        if text is None:
            text = self.id_text = str(self.message.request_id)
        return text


class MessageRecorder:
    """Records the commands and events (and, if asked, queries) of a mediator.

    - ``record_queries``: also record queries (off by default: reads are many and
      change nothing);
    - ``redact_pii``: store the payload with the fields marked
      :data:`~python_cqrs_core.PII` replaced by ``"***"`` (such records say so,
      ``payload_redacted``, and cannot be turned back into their message); without
      it the payload is whole, and ``record.redacted_payload()`` hides the same
      fields in any view;
    - ``durability``: ``"sync"`` (a dispatch returns after its chain is committed) or
      ``"async"`` (written in the background; see the module documentation);
    - ``service``: the name of the service recording (``"orders"``), kept in every
      record so that stores shared by several services tell them apart.

    Each record holds the message's stable type name
    (:func:`~python_cqrs_core.message_type_name`) and its business fields as JSON, by
    alias (the tracing fields have columns of their own).

    Install it *after* a tracing middleware, so that the recorded ``traceparent`` is
    the one of the span that handles the message.  The recorder does not own the
    store: close the recorder first, then the store.
    """

    def __init__(
        self,
        store: MessageStore,
        *,
        record_queries: bool = False,
        redact_pii: bool = False,
        durability: Durability = "sync",
        service: str | None = None,
    ) -> None:
        if durability not in ("sync", "async"):
            raise ValueError(f"durability must be 'sync' or 'async', got {durability!r}")
        if service is not None:
            try:
                validate_type_name(service)
            except ValueError as exc:
                raise ValueError(f"service {exc}, got {service!r}") from None
        self._where = url_without_password(store.url)  # for messages and logs
        if store.read_only:
            raise ReadOnlyStoreError(
                f"cannot record into {self._where}: it was opened read-only "
                "(open_store(url, read_only=True))"
            )
        self.store = store
        self.service = service
        self.record_queries = record_queries
        self.redact_pii = redact_pii
        self.durability: Durability = durability
        # The entry of the message this recorder is recording in the current context;
        # one variable per recorder, so two recorders on one bus do not mix.
        self._current: ContextVar[_Entry | None] = ContextVar(
            f"cqrs_recorder_{id(self):x}", default=None
        )
        # The batch a chain() block opened for its next root dispatch.
        self._opening: ContextVar[_Batch | None] = ContextVar(
            f"cqrs_recorder_chain_{id(self):x}", default=None
        )
        # durability="async": records waiting for a writer, the writer task (of the
        # loop that last queued), what writers are writing now, and failures not yet
        # reported by flush().  See _queue_records.
        self._queue: list[MessageRecord] = []
        self._queue_received: list[MessageRecord] = []
        self._queue_deliveries: list[DeliveryRecord] = []
        self._queue_statements: list[Statement] = []
        self._writer: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._write_errors: list[BaseException] = []
        # One shutdown hook per event loop the recorder wrote from (see _watch).
        self._hooks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncGenerator[None, None]
        ] = weakref.WeakKeyDictionary()
        self._closed = False
        # Messages whose records were written (or queued), by request_id: dispatching
        # one of them again is refused before its handler runs.  Weak: nothing is kept
        # alive; references to messages gone are dropped when the dict has doubled.
        self._recorded: dict[int, weakref.ref[BaseMessage]] = {}
        self._forget_at = _FORGET_AT_LEAST

    def install(self, bus: Mediator) -> MessageRecorder:
        """Add the recorder's middleware (around each message) and handler middleware
        (around each handler) to ``bus``; returns ``self``."""
        kinds: tuple[MessageKind, ...] = ("command", "event")
        if self.record_queries:
            kinds += ("query",)
        bus.add_middleware(self._record, kinds=kinds)
        bus.add_handler_middleware(self._observe, kinds=kinds)
        # Each record takes the trace headers of its dispatch: look for OpenTelemetry
        # now (an import of ~10 ms when it is installed), not inside the first dispatch,
        # whose recorded duration would include it.
        otel_api()
        return self

    # -- writes of your own, in the chain's commit ----------------------------------------

    async def attach(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Commit the SQL statement ``sql`` (``?`` placeholders, values in ``params``)
        with the chain running in this context, in the same transaction as its
        records, if and only if the chain's root dispatch succeeds.

        - inside a dispatch this recorder records, the statement joins that chain's
          batch (returns at once; it is written when the root dispatch ends);
        - inside a :meth:`chain` block before its root dispatch started, it joins
          the batch that dispatch will commit;
        - otherwise (no chain, or one already committed: a task that outlived its
          root) it is committed on its own, now.

        A root dispatch that fails discards its statements, as a rolled-back
        transaction would (its records are written all the same: they record the
        failure).  A batch the store refuses takes its statements with it, and the
        dispatch raises as for any refused batch.  Only a store that runs statements
        takes them (:attr:`~python_cqrs_core.store.MessageStore.runs_statements`:
        SQLite); any other raises :class:`TypeError` here::

            async def write(self, message):   # the embedded outbox, inside a handler
                await recorder.attach(
                    "INSERT INTO cqrs_outbox (...) VALUES (?, ?, ...)", (message_id, ...))
        """
        if not self.store.runs_statements:
            raise TypeError(
                f"{type(self.store).__name__} ({self._where}) runs no statements in its "
                "commits; MessageRecorder.attach needs the SQLite store"
            )
        if not isinstance(sql, str):
            raise TypeError(f"sql must be text, got {type(sql).__name__}")
        statement = Statement(sql, tuple(params))
        entry = self._current.get()
        batch = None if entry is None else entry.batch
        if batch is None or batch.sealed:
            batch = self._opening.get()
        if batch is not None and not batch.sealed:
            if batch.statements is None:
                batch.statements = [statement]
            else:
                batch.statements.append(statement)
            return
        if self._closed:
            raise RuntimeError("this MessageRecorder is closed")
        await self._write([], None, statements=[statement])

    @contextlib.contextmanager
    def chain(self) -> Iterator[None]:
        """A block whose first root dispatch commits, with its records, the statements
        attached (:meth:`attach`) in the block *before* it started: what a consumer's
        unit of work marks in its inbox before it dispatches the message it received::

            with recorder.chain():
                await recorder.attach(MARK_HANDLED, (group, message_id, now))
                await bus.process(message)     # the mark commits with this chain

        If the block ends without a root dispatch (a duplicate, an error before it),
        what was attached is dropped: nothing of it is written.  Later root
        dispatches in the block are chains of their own, as anywhere.
        """
        token = self._opening.set(_Batch())
        try:
            yield
        finally:
            self._opening.reset(token)

    # -- the middleware ---------------------------------------------------------------

    async def _record(self, message: BaseMessage, call_next: CallNext) -> Any:
        if self._closed:
            raise RuntimeError("this MessageRecorder is closed")
        seen = self._recorded.get(message.request_id.int)
        if seen is not None and seen() is not None and _consumed(message) is None:
            raise MessageAlreadyRecordedError(
                f"{type(message).__name__} {message.request_id} was already dispatched and "
                "recorded; a message is recorded once, so dispatching it again would run "
                "its handler and then fail to record it. Build a new message to do it "
                "again (it gets a new request_id)."
            )
        current = self._current
        parent = current.get()
        root = parent is None or parent.batch.sealed
        if root:
            batch = self._opening.get()  # a chain() block's, unless taken already
            if batch is None or batch.started:
                batch = _Batch()
            else:
                batch.started = True
            entry = _Entry(message, batch, parent)
            consumption = _consumption.get()
            if consumption is not None and consumption.message_id == message.request_id:
                entry.consumption = consumption  # a delivery from a broker
                batch.consumed = True
        else:
            batch = parent.batch  # type: ignore[union-attr]
            entry = _Entry(message, batch, parent)
        batch.entries.append(entry)
        token = current.set(entry)
        try:
            result = await call_next(message)
        except BaseException as exc:
            current.reset(token)
            entry.record = self._make_record(entry, exc)
            if root:
                await self._commit(batch, exc)
            elif batch.sealed:  # a late dispatch: its batch is gone, it commits alone
                await self._commit_late(entry, exc)
            raise
        current.reset(token)
        entry.record = self._make_record(entry, None)
        if root:
            await self._commit(batch, None)
        elif batch.sealed:
            await self._commit_late(entry, None)
        return result

    async def _observe(self, message: BaseMessage, handler: str, call_next: CallNext) -> Any:
        """The handler middleware: how each handler of the current message ended."""
        entry = self._current.get()
        if entry is None or (
            entry.message is not message and entry.message.request_id != message.request_id
        ):
            return await call_next(message)  # not a message this recorder records
        start = _perf_ns()
        try:
            result = await call_next(message)
        except BaseException as error:
            outcome = HandlerOutcome(
                handler,
                "failed",
                (_perf_ns() - start) / 1e6,
                type(error).__name__,
                exception_message(error),
            )
            entry.handlers.append(outcome)
            if entry.failure is None:
                entry.failure = outcome
            raise
        entry.handlers.append(HandlerOutcome(handler, "succeeded", (_perf_ns() - start) / 1e6))
        return result

    def _make_record(self, entry: _Entry, error: BaseException | None) -> MessageRecord:
        message = entry.message
        failed = entry.failure
        if failed is not None:
            error_type, error_message = failed.error_type, failed.error_message
        elif error is not None:  # raised outside any handler (e.g. an inner middleware)
            error_type, error_message = type(error).__name__, exception_message(error)
        else:
            error_type = error_message = None
        duration = (_perf_ns() - entry.start_ns) / 1e6
        recorded_at = _now(UTC)
        request_id = message.request_id
        # The texts of the ids, each worked out once per chain: the correlation id
        # is normally the root's request_id, the causation id the parent's.
        correlation = message.correlation_id  # always set once dispatched
        if correlation is None or correlation is request_id:
            correlation_text = entry.text_of_id()
        else:
            correlation_text = _id_text_in(entry, correlation)
        causation = message.causation_id
        parent = entry.parent
        if causation is None:
            causation_text = None
        elif parent is not None and causation is parent.message.request_id:
            causation_text = parent.text_of_id()
        else:
            causation_text = str(causation)
        recorded = _recorded_type(type(message))
        redacted = self.redact_pii and bool(recorded.pii)
        consumption = entry.consumption
        if consumption is not None:
            # A consumed message: how its handlers ended is this delivery's; its record
            # (stored only if absent) is the message as it was received.
            entry.delivery = DeliveryRecord(
                request_id,
                recorded.name,
                correlation_text,
                self.service,
                consumption.transport,
                consumption.destination,
                consumption.group,
                consumption.attempt,
                consumption.delivery_id,
                "failed" if error_type is not None else "succeeded",
                tuple(entry.handlers),
                error_type,
                error_message,
                duration,
                recorded_at,
            )
            return MessageRecord(
                request_id,
                message.message_kind,
                recorded.name,
                correlation_text,
                causation_text,
                message.requested_by,
                message.requested_at,
                recorded_at,
                self._payload(message, recorded, redacted),
                "succeeded",
                (),
                None,
                None,
                None,
                trace_headers(),
                None,
                consumption.service,
                recorded.pii,
                redacted,
            )
        return MessageRecord(
            request_id,
            message.message_kind,
            recorded.name,
            correlation_text,
            causation_text,
            message.requested_by,
            message.requested_at,
            recorded_at,
            self._payload(message, recorded, redacted),
            "failed" if error_type is not None else "succeeded",
            tuple(entry.handlers),
            error_type,
            error_message,
            duration,
            trace_headers(),
            None,
            self.service,
            recorded.pii,
            redacted,
        )

    @staticmethod
    def _payload(message: BaseMessage, recorded: _RecordedType, redacted: bool) -> dict[str, Any]:
        """The business fields as JSON, by alias, in round-trip mode (what
        ``model_validate`` takes back), personal data redacted if asked."""
        try:
            payload: dict[str, Any] = recorded.dump(
                message, mode="json", exclude=_TRACING_FIELDS, by_alias=True, round_trip=True
            )
        except Exception as exc:  # noqa: BLE001 - a field JSON cannot represent
            # Never lose the record (nor mask a handler's exception) over its payload.
            reason = f"{type(exc).__name__}: {exception_message(exc)}"
            logger.warning(
                "payload of %s %s cannot be recorded as JSON: %s",
                recorded.name,
                message.request_id,
                reason,
            )
            return {UNRECORDABLE_PAYLOAD: reason}
        return redact(payload, recorded.pii) if redacted else payload

    # -- committing ---------------------------------------------------------------------

    async def _commit(self, batch: _Batch, error: BaseException | None) -> None:
        """Hand the batch of a finished root dispatch to the store."""
        batch.sealed = True
        entries, batch.entries = batch.entries, []
        # An entry still running (in a task that outlived the root) commits on its own
        # when it ends.
        done = [entry for entry in entries if entry.record is not None]
        for entry in done:  # let the chain go as soon as it is written (no cycles)
            entry.parent = None
        # Statements attached to the chain commit only if its root dispatch succeeded.
        statements = batch.statements if batch.statements and error is None else ()
        if not batch.consumed:
            records: list[MessageRecord] = [entry.record for entry in done]  # type: ignore[misc]
            written = (
                await self._write(records, error, statements=statements)
                if statements
                else await self._write(records, error)
            )
            if written:
                self._remember([entry.message for entry in done])
            return
        # The root is a consumed message: its record if absent, and its delivery.
        received = [entry for entry in done if entry.delivery is not None]
        others = [entry for entry in done if entry.delivery is None]
        written = await self._write(
            [entry.record for entry in others],  # type: ignore[misc]
            error,
            received=[entry.record for entry in received],  # type: ignore[misc]
            deliveries=[entry.delivery for entry in received],  # type: ignore[misc]
            statements=statements,
        )
        if written:  # a consumed message may come again (a retry): never remembered
            self._remember([entry.message for entry in others])

    async def _commit_late(self, entry: _Entry, error: BaseException | None) -> None:
        entry.parent = None
        assert entry.record is not None
        if await self._write([entry.record], error):
            self._remember([entry.message])

    def _remember(self, messages: list[BaseMessage]) -> None:
        recorded, ref = self._recorded, weakref.ref
        for message in messages:
            recorded[message.request_id.int] = ref(message)
        if len(recorded) > self._forget_at:
            alive = {key: seen for key, seen in recorded.items() if seen() is not None}
            self._recorded = alive
            self._forget_at = max(_FORGET_AT_LEAST, 2 * len(alive))

    async def _write(
        self,
        records: list[MessageRecord],
        error: BaseException | None,
        *,
        received: Sequence[MessageRecord] = (),
        deliveries: Sequence[DeliveryRecord] = (),
        statements: Sequence[Statement] = (),
    ) -> bool:
        """Write (or queue) the records; False when the store refused them."""
        if self.durability == "async":
            self._queue_records(records, received, deliveries, statements)
            return True
        try:
            if received or deliveries or statements:
                await self.store.append(
                    records, received=received, deliveries=deliveries, statements=statements
                )
            else:
                await self.store.append(records)
        except Exception as store_error:  # noqa: BLE001 - raised or noted, see _report_loss
            self._report_loss([*received, *records], store_error, error, len(statements))
            return False
        return True

    def _report_loss(
        self,
        records: Sequence[MessageRecord],
        store_error: BaseException,
        handler_error: BaseException | None,
        statements: int = 0,
    ) -> None:
        """Make a failed write loud: raise StoreWriteError, or annotate the handler's
        own exception (which the caller then receives unchanged)."""
        what = ", ".join(f"{r.message_type} {r.message_id}" for r in records[:5])
        if len(records) > 5:
            what += f" and {len(records) - 5} more"
        attached = f" and {statements} attached statement(s)" if statements else ""
        text = (
            f"the message store {self._where} could not record {len(records)} "
            f"message(s) ({what}){attached}: {type(store_error).__name__}: "
            f"{exception_message(store_error)}"
        )
        logger.error("%s", text, exc_info=store_error)
        if handler_error is not None:
            handler_error.add_note(text)
            return
        raise StoreWriteError(text) from store_error

    # -- durability="async" ---------------------------------------------------------------

    def _queue_records(
        self,
        records: list[MessageRecord],
        received: Sequence[MessageRecord] = (),
        deliveries: Sequence[DeliveryRecord] = (),
        statements: Sequence[Statement] = (),
    ) -> None:
        self._queue.extend(records)
        if received or deliveries or statements:
            self._queue_received.extend(received)
            self._queue_deliveries.extend(deliveries)
            self._queue_statements.extend(statements)
        loop = asyncio.get_running_loop()
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not loop:
            self._start_writer(loop)

    def _start_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        """A writer task on ``loop``; it ends when the queue is empty (a writer of a
        loop that stopped is left behind: this one takes over the queue)."""
        self._writer = loop.create_task(self._write_queue())
        if loop not in self._hooks:
            self._watch(loop)
        _unwritten.add(self)

    async def _write_queue(self) -> None:
        while (
            self._queue
            or self._queue_received
            or self._queue_deliveries
            or (self._queue_statements)
        ):
            records, self._queue = self._queue, []
            received, self._queue_received = self._queue_received, []
            deliveries, self._queue_deliveries = self._queue_deliveries, []
            statements, self._queue_statements = self._queue_statements, []
            count = len(records) + len(received) + len(deliveries) + len(statements)
            self._in_flight += count
            try:
                if received or deliveries or statements:
                    await self.store.append(
                        records, received=received, deliveries=deliveries, statements=statements
                    )
                else:
                    await self.store.append(records)
            except Exception as exc:  # kept for flush(), logged now
                self._write_errors.append(exc)
                logger.error(
                    "the message store %s could not record %d message(s), %d deliveries "
                    "and %d statement(s) in the background: %s: %s",
                    self._where,
                    len(records) + len(received),
                    len(deliveries),
                    len(statements),
                    type(exc).__name__,
                    exception_message(exc),
                    exc_info=exc,
                )
            finally:
                # Written, refused (reported), or, when the loop is shutting down and
                # cancels this task, written before the store let the cancel through.
                self._in_flight -= count

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make the shutdown of ``loop`` write what is still queued.

        ``asyncio.run()`` (and any runner) ends by closing the loop's asynchronous
        generators, awaiting each one's ``finally``, before it closes the loop.  An
        asynchronous generator of the recorder, started here so that the loop knows
        it, is such a ``finally``; the recorder holds it (the loop only refers to it
        weakly).
        """
        hook = self._on_loop_shutdown()
        step = hook.__anext__()  # the first iteration registers it with the loop
        with contextlib.suppress(StopIteration):
            step.send(None)  # runs it to its yield (it does not await before)
        self._hooks[loop] = hook

    async def _on_loop_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await self._drain()

    async def _drain(self) -> None:
        """Write everything queued, from the running loop (whatever started it)."""
        loop = asyncio.get_running_loop()
        while self._queued() or _writing_on(self._writer, loop):
            writer = self._writer
            if writer is None or writer.done() or writer.get_loop() is not loop:
                self._start_writer(loop)
            try:
                await asyncio.shield(self._writer)  # type: ignore[arg-type]
            except asyncio.CancelledError:
                if not _writing_on(self._writer, loop):  # the writer was cancelled
                    continue
                raise

    async def flush(self) -> None:
        """Wait until every record queued so far is written (``durability="async"``).

        Raises :class:`~python_cqrs_core.store.StoreWriteError` if a background write
        failed since the last flush.  With ``durability="sync"`` nothing is ever
        pending, and this returns at once.  It waits for writes of the running loop
        only, never for a loop that is not running.
        """
        await self._drain()
        if self._write_errors:
            errors, self._write_errors = self._write_errors, []
            raise StoreWriteError(
                f"{len(errors)} background write(s) to {self._where} failed; their records are lost"
            ) from errors[0]

    async def close(self) -> None:
        """Flush, then stop recording (dispatches through the bus then raise).

        The store stays open: it may be shared; close it after the recorder.
        """
        try:
            await self.flush()
        finally:
            self._closed = True
            _unwritten.discard(self)

    def _queued(self) -> int:
        """Records, deliveries and statements waiting for the background writer."""
        return (
            len(self._queue)
            + len(self._queue_received)
            + len(self._queue_deliveries)
            + len(self._queue_statements)
        )

    def _unwritten(self) -> int:
        """Records queued or being written (for the report at exit)."""
        return self._queued() + self._in_flight

    def _write_at_exit(self) -> None:
        """At the exit of the process: write what is left, on the loop that queued it
        if it can still run, else report the loss."""
        if not self._unwritten():
            return
        writer = self._writer
        loop = None if writer is None else writer.get_loop()
        if loop is not None and not loop.is_closed() and not loop.is_running():
            try:
                loop.run_until_complete(asyncio.wait_for(self._drain(), _EXIT_TIMEOUT))
            except Exception:  # reported below, with what is left
                logger.exception("writing the queued records at exit failed")
        lost = self._unwritten()
        if lost:
            logger.error(
                "%d record(s) queued for the message store %s were never written: the "
                "event loop that queued them was closed first (await recorder.close(), "
                "or flush(), before the loop closes); they are lost",
                lost,
                self._where,
            )


_FORGET_AT_LEAST = 1024
"""Recorded messages remembered before references to those gone are dropped."""

_EXIT_TIMEOUT = 30.0
"""Seconds the exit of the process waits for queued records to be written."""

_unwritten: weakref.WeakSet[MessageRecorder] = weakref.WeakSet()
"""The recorders with background writes that may not be written yet."""


@atexit.register
def _write_everything_at_exit() -> None:
    for recorder in list(_unwritten):
        recorder._write_at_exit()


def _consumed(message: BaseMessage) -> Consumption | None:
    """The delivery of ``message`` being handled in this context, if it is one: a
    consumer's :func:`~python_cqrs_core.context.consuming` names this very message."""
    consumption = current_consumption()
    if consumption is None or consumption.message_id != message.request_id:
        return None
    return consumption


def _writing_on(writer: asyncio.Task[None] | None, loop: asyncio.AbstractEventLoop) -> bool:
    return writer is not None and not writer.done() and writer.get_loop() is loop


def _id_text_in(entry: _Entry, correlation: UUID | str) -> str:
    """The text of a correlation id that is not the message's own id: the root's
    text when it is the root's id (an inherited correlation), else its own."""
    root = entry
    while root.parent is not None:
        root = root.parent
    if correlation is root.message.request_id:
        return root.text_of_id()
    return str(correlation)
