"""Recording what consumers give up on: every dead letter a delivery record in the store.

A consumer's :class:`~python_cqrs_core.store.MessageRecorder` records each attempt to
handle a consumed message (a :class:`~python_cqrs_core.store.DeliveryRecord` that
succeeded or failed).  What happens *after* the last attempt, when the consumer
dead-letters the message, is no dispatch: the consumer reports it to its listeners
(a :class:`~python_cqrs_core.transports.DeliveryEvent` named ``message.dlq``).  A
:class:`DeliveryRecorder` is such a listener: it records each dead letter as a
delivery with the outcome ``dead_lettered`` and the reason, so that the message's
node in ``cqrs trace`` shows where it ended, and its operation counts as failed
until the message is replayed and handled::

    consumer = Consumer(bus, transport, codec, "orders.events", "inventory")
    deliveries = DeliveryRecorder(store, service="inventory")
    consumer.add_listener(deliveries)
    ...
    await consumer.stop()
    await deliveries.close()          # written before the store is closed

A dead letter of a message that did not even carry a valid message id cannot be
placed in any chain: it is not recorded (the transport keeps it, with its reason,
for ``cqrs dlq``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID

from ..errors import exception_message
from ..names import EVENT_MESSAGE_DLQ, STORE_LOGGER
from ..validation import validate_type_name
from .base import MessageStore, ReadOnlyStoreError, StoreWriteError, url_without_password
from .records import DeliveryRecord, id_text

if TYPE_CHECKING:
    from ..transports.consumer import DeliveryEvent

__all__ = ["DeliveryRecorder"]

logger = logging.getLogger(STORE_LOGGER)


class DeliveryRecorder:
    """A consumer listener recording its dead letters into ``store`` (see the module
    documentation): ``consumer.add_listener(DeliveryRecorder(store, service=...))``.

    ``service`` names the consuming service, as its
    :class:`~python_cqrs_core.store.MessageRecorder` does.  Listeners are called
    inline, so a dead letter is only queued there; a task of the running loop writes
    the queue.  :meth:`flush` waits until it is written (and raises
    :class:`~python_cqrs_core.store.StoreWriteError` if a write failed since the last
    flush; each failure is also logged at ERROR when it happens); :meth:`close`
    flushes, then refuses further events.  The recorder does not own the store.
    """

    def __init__(self, store: MessageStore, *, service: str | None = None) -> None:
        if service is not None:
            try:
                validate_type_name(service)
            except ValueError as exc:
                raise ValueError(f"service {exc}, got {service!r}") from None
        self._where = url_without_password(store.url)
        if store.read_only:
            raise ReadOnlyStoreError(
                f"cannot record deliveries into {self._where}: it was opened read-only"
            )
        self.store = store
        self.service = service
        self._queue: list[DeliveryRecord] = []
        self._writer: asyncio.Task[None] | None = None
        self._errors: list[BaseException] = []
        self._closed = False

    def __call__(self, event: DeliveryEvent) -> None:
        """Queue the delivery record of ``event`` if it is a dead letter (other events
        are the recorder's: it records every attempt it dispatches)."""
        if event.event != EVENT_MESSAGE_DLQ:
            return
        if self._closed:
            raise RuntimeError("this DeliveryRecorder is closed")
        delivery = self.dead_letter(event)
        if delivery is None:
            logger.debug("dead letter %s has no valid message id: not recorded", event.delivery_id)
            return
        self._queue.append(delivery)
        writer = self._writer
        if writer is None or writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    def dead_letter(self, event: DeliveryEvent) -> DeliveryRecord | None:
        """The delivery record of a ``message.dlq`` event: outcome
        ``dead_lettered``, the reason as ``error_message``; ``None`` when the message
        carried no valid id (the consumer checked the ids it reports)."""
        if event.message_id is None:
            return None
        message_id = UUID(event.message_id)
        return DeliveryRecord(
            message_id=message_id,
            message_type=event.message_type,
            correlation_id=id_text(event.correlation_id or message_id),
            service=self.service,
            transport=event.transport or "unknown",
            destination=event.destination,
            group=event.group,
            attempt=max(event.attempt, 1),
            delivery_id=event.delivery_id,
            outcome="dead_lettered",
            handlers=(),
            error_type=None,
            error_message=event.reason,
            duration_ms=None,
            recorded_at=datetime.fromtimestamp(event.timestamp, UTC),
        )

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self.store.append_deliveries(batch)
            except Exception as exc:  # kept for flush(), logged now
                self._errors.append(exc)
                logger.error(
                    "the message store %s could not record %d dead letter(s): %s: %s",
                    self._where,
                    len(batch),
                    type(exc).__name__,
                    exception_message(exc),
                    exc_info=exc,
                )

    async def flush(self) -> None:
        """Wait until every dead letter queued so far is written; raise
        :class:`~python_cqrs_core.store.StoreWriteError` if a write failed since the
        last flush."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)
        if self._queue:  # queued from a loop whose writer is gone
            await self._write()
        if self._errors:
            errors, self._errors = self._errors, []
            raise StoreWriteError(
                f"{len(errors)} write(s) of dead letters to {self._where} failed"
            ) from errors[0]

    async def close(self) -> None:
        """Flush, then stop recording (events after this raise)."""
        try:
            await self.flush()
        finally:
            self._closed = True

    def __repr__(self) -> str:
        return f"<DeliveryRecorder of {self.service or 'a service'} into {self._where}>"
