"""Recording every dispatch of a :class:`~python_cqrs_core.Mediator` into a store.

::

    store = await open_store("sqlite:///cqrs.db")
    recorder = MessageRecorder(store).install(bus)
    await bus.send(PlaceOrder(order_id=7))   # returns once the whole chain is committed
    ...
    await recorder.close()                   # then store.close()

The recorder is a middleware (one record per message) plus a lifecycle listener (one
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

With ``durability="async"`` records are queued and written in the background;
:meth:`MessageRecorder.flush` and :meth:`MessageRecorder.close` wait for the queue to
drain.  A crash of the process then loses what was queued but not yet written (at
most the dispatches of the last few milliseconds).

**Failures.**  A failing handler is recorded as failed (error type and message) and
its exception reaches the caller unchanged.  When the store cannot take the records,
the root dispatch raises :class:`~python_cqrs_core.store.StoreWriteError` (with the
store's error chained) if the handlers succeeded; if they failed too, their exception
is re-raised unchanged with a note saying the record was lost, and the loss is logged
at ERROR.  Nothing the bus accepted is silently lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from ..headers import trace_headers
from ..lifecycle import HandlerEvent
from ..mediator import CallNext, Mediator
from ..messages import BaseMessage, MessageKind, message_type_name
from ..names import STORE_LOGGER, TRACING_FIELDS
from ..pii import pii_fields
from ..validation import validate_type_name
from .base import MessageAlreadyRecordedError, MessageStore, ReadOnlyStoreError, StoreWriteError
from .records import UNRECORDABLE_PAYLOAD, HandlerOutcome, MessageRecord, redact

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
    """The records of one root dispatch and everything dispatched inside it."""

    __slots__ = ("entries", "sealed")

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.sealed = False  # committed (or being committed): late entries write alone


class _Entry:
    """One message being dispatched: what becomes its record when it ends."""

    __slots__ = ("batch", "failure", "handlers", "headers", "message", "record", "start_ns")

    def __init__(self, message: BaseMessage, batch: _Batch) -> None:
        self.message = message
        self.batch = batch
        self.headers = trace_headers()
        self.handlers: list[HandlerOutcome] = []
        self.failure: HandlerOutcome | None = None  # the first handler that failed
        self.record: MessageRecord | None = None
        self.start_ns = _perf_ns()


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
        if store.read_only:
            raise ReadOnlyStoreError(
                f"cannot record into {store.url}: it was opened read-only "
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
        # durability="async": records waiting for the background writer
        self._queue: list[MessageRecord] = []
        self._queued = asyncio.Event()
        self._drained = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._write_errors: list[BaseException] = []
        self._closed = False
        # Messages whose records were written (or queued): dispatching one of them
        # again is refused before its handler runs.  Weak: nothing is kept alive.
        self._recorded: weakref.WeakSet[BaseMessage] = weakref.WeakSet()

    def install(self, bus: Mediator) -> MessageRecorder:
        """Add the recorder's middleware and listener to ``bus``; returns ``self``."""
        kinds: tuple[MessageKind, ...] = ("command", "event")
        if self.record_queries:
            kinds += ("query",)
        bus.add_middleware(self._record, kinds=kinds)
        bus.add_listener(self._on_handler_event)
        return self

    # -- the middleware ---------------------------------------------------------------

    async def _record(self, message: BaseMessage, call_next: CallNext) -> Any:
        if self._closed:
            raise RuntimeError("this MessageRecorder is closed")
        if message in self._recorded:
            raise MessageAlreadyRecordedError(
                f"{type(message).__name__} {message.request_id} was already dispatched and "
                "recorded; a message is recorded once, so dispatching it again would run "
                "its handler and then fail to record it. Build a new message to do it "
                "again (it gets a new request_id)."
            )
        current = self._current
        parent = current.get()
        root = parent is None or parent.batch.sealed
        batch = _Batch() if parent is None or root else parent.batch
        entry = _Entry(message, batch)
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

    def _on_handler_event(self, event: HandlerEvent) -> None:
        if event.phase == "started":
            return
        entry = self._current.get()
        if entry is None or entry.message.request_id != event.message.request_id:
            return
        error = event.error
        duration_ms = (event.duration_ns or 0) / 1e6
        if error is None:
            entry.handlers.append(HandlerOutcome(event.handler, "succeeded", duration_ms))
            return
        outcome = HandlerOutcome(
            event.handler, "failed", duration_ms, type(error).__name__, str(error)
        )
        entry.handlers.append(outcome)
        if entry.failure is None:
            entry.failure = outcome

    def _make_record(self, entry: _Entry, error: BaseException | None) -> MessageRecord:
        duration_ms = (_perf_ns() - entry.start_ns) / 1e6
        message = entry.message
        failed = entry.failure
        if failed is not None:
            error_type, error_message = failed.error_type, failed.error_message
        elif error is not None:  # raised outside any handler (e.g. an inner middleware)
            error_type, error_message = type(error).__name__, str(error)
        else:
            error_type = error_message = None
        causation = message.causation_id
        correlation = message.correlation_id  # always set once dispatched
        recorded = _recorded_type(type(message))
        redacted = self.redact_pii and bool(recorded.pii)
        return MessageRecord(
            message_id=message.request_id,
            kind=message.message_kind,
            message_type=recorded.name,
            correlation_id=str(message.request_id if correlation is None else correlation),
            causation_id=None if causation is None else str(causation),
            requested_by=message.requested_by,
            requested_at=message.requested_at,
            recorded_at=_now(UTC),
            payload=self._payload(message, recorded, redacted),
            outcome="failed" if error_type is not None else "succeeded",
            handlers=tuple(entry.handlers),
            error_type=error_type,
            error_message=error_message,
            duration_ms=duration_ms,
            headers=entry.headers,
            service=self.service,
            pii_fields=recorded.pii,
            payload_redacted=redacted,
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
            logger.warning(
                "payload of %s %s cannot be recorded as JSON: %s",
                recorded.name,
                message.request_id,
                exc,
            )
            return {UNRECORDABLE_PAYLOAD: f"{type(exc).__name__}: {exc}"}
        return redact(payload, recorded.pii) if redacted else payload

    # -- committing ---------------------------------------------------------------------

    async def _commit(self, batch: _Batch, error: BaseException | None) -> None:
        """Hand the batch of a finished root dispatch to the store."""
        batch.sealed = True
        records = [e.record for e in batch.entries if e.record is not None]
        # Entries point back at their batch: let the chain's messages and records go
        # as soon as they are written, not at the next cycle collection.
        messages = [e.message for e in batch.entries if e.record is not None]
        batch.entries.clear()
        if await self._write(records, error):
            self._recorded.update(messages)

    async def _commit_late(self, entry: _Entry, error: BaseException | None) -> None:
        assert entry.record is not None
        if await self._write([entry.record], error):
            self._recorded.add(entry.message)

    async def _write(self, records: list[MessageRecord], error: BaseException | None) -> bool:
        """Write (or queue) the records; False when the store refused them."""
        if self.durability == "async":
            self._queue.extend(records)
            self._drained.clear()
            self._queued.set()
            if self._writer is None:
                self._writer = asyncio.get_running_loop().create_task(self._background())
            return True
        try:
            await self.store.append(records)
        except Exception as store_error:  # noqa: BLE001 - raised or noted, see _report_loss
            self._report_loss(records, store_error, error)
            return False
        return True

    def _report_loss(
        self,
        records: Sequence[MessageRecord],
        store_error: BaseException,
        handler_error: BaseException | None,
    ) -> None:
        """Make a failed write loud: raise StoreWriteError, or annotate the handler's
        own exception (which the caller then receives unchanged)."""
        what = ", ".join(f"{r.message_type} {r.message_id}" for r in records[:5])
        if len(records) > 5:
            what += f" and {len(records) - 5} more"
        text = (
            f"the message store {self.store.url} could not record {len(records)} "
            f"message(s) ({what}): {type(store_error).__name__}: {store_error}"
        )
        logger.error("%s", text, exc_info=store_error)
        if handler_error is not None:
            handler_error.add_note(text)
            return
        raise StoreWriteError(text) from store_error

    # -- async durability -----------------------------------------------------------------

    async def _background(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                records, self._queue = self._queue, []
                try:
                    await self.store.append(records)
                except Exception as exc:
                    self._write_errors.append(exc)
                    logger.error(
                        "the message store %s could not record %d message(s) in the background",
                        self.store.url,
                        len(records),
                        exc_info=exc,
                    )
            self._drained.set()

    async def flush(self) -> None:
        """Wait until every record queued so far is written (``durability="async"``).

        Raises :class:`~python_cqrs_core.store.StoreWriteError` if a background write
        failed since the last flush.  With ``durability="sync"`` nothing is ever
        pending, and this returns at once.
        """
        if self._writer is not None:
            await self._drained.wait()
        if self._write_errors:
            errors, self._write_errors = self._write_errors, []
            raise StoreWriteError(
                f"{len(errors)} background write(s) to {self.store.url} failed; "
                "their records are lost"
            ) from errors[0]

    async def close(self) -> None:
        """Flush, then stop recording (dispatches through the bus then raise).

        The store stays open: it may be shared; close it after the recorder.
        """
        try:
            await self.flush()
        finally:
            self._closed = True
            if self._writer is not None:
                self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._writer
                self._writer = None
