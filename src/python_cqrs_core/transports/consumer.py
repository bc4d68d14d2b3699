"""The consumer: messages from a broker, handled through the bus, acknowledged after.

A :class:`Consumer` is one loop for one ``(destination, group, consumer name)``::

    consumer = Consumer(
        bus, transport, codec, "orders.events", "billing",
        inbox=RedisInbox(transport),        # handle a redelivered message once
        max_attempts=5, backoff=Backoff(initial=0.5),
    )
    task = consumer.start()                 # or: await consumer.run()
    ...
    await consumer.stop()                   # finish and ack what is in flight

For every delivery it:

1. **decodes** headers and body with the :class:`~python_cqrs_core.codec.EnvelopeCodec`.
   Anything that does not decode (malformed headers, an unknown type name, a body
   that fails validation, a body over the codec's ``max_body_bytes``) is
   dead-lettered at once with the codec's reason: retrying would not help.  A
   *foreign* message (from a producer that does not set ``cqrs-correlation-id``)
   starts a chain of its own: its correlation id is its own message id, as for any
   root message (:mod:`python_cqrs_core.propagation`, rule 4);
2. **checks the inbox**: a message the group handled already (same message id) is
   acknowledged and not handled again;
3. **dispatches** it with ``bus.process(message)``, so it is the parent of everything
   its handlers dispatch: they inherit its correlation id and take its id as their
   causation id.  The broker's delivery id is never a causation id.  The dispatch
   runs inside :func:`~python_cqrs_core.context.consuming` (a
   :class:`~python_cqrs_core.context.Consumption`: the message, the transport,
   destination, group, attempt, delivery id, and the producing service when the
   ``cqrs-service`` header named it), so that a
   :class:`~python_cqrs_core.store.MessageRecorder` on the bus records this
   *delivery* rather than the message a second time;
4. **acknowledges** it after the handlers succeeded, and marks it in the inbox.  A
   failing handler gets the delivery retried after a backoff, until ``max_attempts``;
   then it is dead-lettered with the last error.  A delivery the broker hands over
   after ``max_attempts`` deliveries (its consumers kept dying on it) is
   dead-lettered too.

Nothing a message contains can stop the loop: every failure is dead-lettered,
retried or (when the broker itself fails) left pending for a later delivery, and
logged.  Each outcome is also a :class:`DeliveryEvent` for the listeners
(``message.acked``, ``message.retried``, ``message.dlq``);
:class:`~python_cqrs_core.store.DeliveryRecorder` is the listener that records dead
letters in the message store.

**Idempotency.**  With a non-transactional :class:`~python_cqrs_core.transports.Inbox`
(memory, Redis) the consumer checks it before the handlers and marks it after they
succeeded: a crash between the two lets the message be handled again (at least
once).  With a *transactional* inbox, pass ``unit_of_work``: per delivery the
consumer runs ``async with unit_of_work(delivery):`` and inside it
``inbox.mark(group, message_id)`` then the handlers, so the mark commits with the
handlers' writes, or neither does (exactly once, in effect).

**Tracing.**  With the ``[otel]`` extra and an instrumented bus, each message is
handled in a ``CONSUMER`` span, child of the producer's span whose context travelled
in the headers, with the messaging attributes (system, destination, consumer group,
client id, message id, conversation id = correlation id, operation ``process``).

**Order.**  A batch is handled concurrently, except that deliveries of one correlation
id are handled one after another, in the order received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias
from uuid import UUID

from ..codec import EnvelopeCodec, MessageDecodeError
from ..context import Consumption
from ..context import consuming as consumption_scope
from ..errors import HandlerNotFoundError, exception_message
from ..mediator import Mediator
from ..messages import BaseMessage, message_type_name, tracing_fields
from ..names import (
    EVENT_MESSAGE_ACKED,
    EVENT_MESSAGE_DLQ,
    EVENT_MESSAGE_RETRIED,
    TRANSPORT_LOGGER,
    WIRE_CORRELATION_ID,
    WIRE_MESSAGE_ID,
    WIRE_MESSAGE_TYPE,
)
from ..registry import UnknownMessageTypeError
from ..validation import validate_correlation_id, validate_request_id
from ._common import check_name, safe_reason
from ._tracing import consuming
from .base import Delivery, Inbox, Transport, TransportError

__all__ = [
    "Backoff",
    "Consumer",
    "DeliveryEvent",
    "DeliveryListener",
    "UnitOfWork",
    "current_delivery",
]

logger = logging.getLogger(TRANSPORT_LOGGER)

UnitOfWork: TypeAlias = Callable[[Delivery], AbstractAsyncContextManager[object]]
"""Opens the application's transaction for one delivery; commits on success, rolls
back on an exception (the outbox package provides them)."""

_current: ContextVar[tuple[Delivery, UUID] | None] = ContextVar("cqrs_delivery", default=None)

CANCEL_WAIT: Final = 1.0
"""Seconds :meth:`Consumer.stop` waits for the loop it cancelled once the grace ran out."""


def current_delivery() -> Delivery | None:
    """The delivery whose message is being handled in this context, or ``None``.

    Handlers may read it (its ``attempt``, its ``destination``); the direct publisher
    uses it never to publish back the very message it is consuming.
    """
    current = _current.get()
    return None if current is None else current[0]


def _consumed_message_id() -> UUID | None:
    current = _current.get()
    return None if current is None else current[1]


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before the next attempt: ``initial * factor ** (attempt - 1)``,
    at most ``maximum`` seconds.

    >>> backoff = Backoff(initial=0.5, factor=2.0, maximum=4.0)
    >>> [backoff.delay(attempt) for attempt in (1, 2, 3, 4, 5)]
    [0.5, 1.0, 2.0, 4.0, 4.0]
    """

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < 0:
            raise ValueError("backoff delays must not be negative")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be at least 1, got {self.factor}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
        exponent = min(max(attempt - 1, 0), 64)
        return float(min(self.initial * self.factor**exponent, self.maximum))


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    """What a consumer did with one delivery: acknowledged, retried or dead-lettered.

    ``event`` is the trace event name (``message.acked``, ``message.retried``,
    ``message.dlq``).  The ids are text, as the message carried them; they are
    ``None`` when a message did not decode and its header was not a valid id either.
    ``reason`` says why it was retried or dead-lettered; for an ack it is ``None``,
    or says that the message was a duplicate (``duplicate`` is then true).
    ``transport`` is the name of the consumer's transport (``"redis"``).
    """

    event: str
    destination: str
    group: str
    consumer: str
    delivery_id: str
    attempt: int
    message_id: str | None
    message_type: str | None
    correlation_id: str | None
    causation_id: str | None
    reason: str | None = None
    duplicate: bool = False
    timestamp: float = field(default_factory=time.time)
    transport: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, e.g. for a server-sent event."""
        return {
            "event": self.event,
            "destination": self.destination,
            "group": self.group,
            "consumer": self.consumer,
            "delivery_id": self.delivery_id,
            "attempt": self.attempt,
            "message_id": self.message_id,
            "message_type": self.message_type,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "reason": self.reason,
            "duplicate": self.duplicate,
            "timestamp": self.timestamp,
            "transport": self.transport,
        }


DeliveryListener: TypeAlias = Callable[[DeliveryEvent], None]
"""``listener(event)``, called inline: keep it quick (hand off to a queue)."""

_DUPLICATE: Final = "duplicate: this group handled the message already"


class _Outcome:
    """How the handling of one decoded message ended."""

    __slots__ = ("duplicate", "error")

    def __init__(self, *, duplicate: bool = False, error: Exception | None = None) -> None:
        self.duplicate = duplicate
        self.error = error


class Consumer:
    """One consumer loop (see the module documentation).

    ``bus`` handles the messages, ``transport`` and ``codec`` receive and decode them
    from ``destination`` as a member of ``group``; ``name`` is this consumer's name in
    the group (default: host and process id).  ``inbox`` makes it idempotent;
    ``unit_of_work`` is required with a transactional inbox.  A failing handler is
    retried after ``backoff.delay(attempt)`` until ``max_attempts``, then
    dead-lettered.  Each receive asks for up to ``batch_size`` deliveries and waits
    up to ``wait`` seconds; :meth:`stop` takes at most about ``wait`` plus the time
    the deliveries in flight need.

    The counters :attr:`acked`, :attr:`duplicates`, :attr:`retried` and
    :attr:`dead_lettered` feed metrics; ``await transport.lag(destination, group)``
    is the consumer lag.
    """

    def __init__(
        self,
        bus: Mediator,
        transport: Transport,
        codec: EnvelopeCodec,
        destination: str,
        group: str,
        *,
        name: str | None = None,
        inbox: Inbox | None = None,
        unit_of_work: UnitOfWork | None = None,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
        batch_size: int = 32,
        wait: float = 1.0,
        listeners: Iterable[DeliveryListener] = (),
    ) -> None:
        if inbox is not None and inbox.transactional and unit_of_work is None:
            raise ValueError(
                "a transactional inbox marks messages inside the application's transaction: "
                "pass unit_of_work= (the outbox package provides one)"
            )
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if wait < 0:
            raise ValueError(f"wait must not be negative, got {wait}")
        self.bus = bus
        self.transport = transport
        self.codec = codec
        self.destination = check_name(destination, "destination")
        self.group = check_name(group, "group")
        self.name = check_name(name or f"{socket.gethostname()}-{os.getpid()}", "name")
        self.inbox = inbox
        self.unit_of_work = unit_of_work
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self.batch_size = batch_size
        self.wait = wait
        self._listeners = list(listeners)
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._task: asyncio.Task[None] | None = None  # the task that runs the loop
        self._running = False
        self._group_ensured = False
        self.acked = 0
        """Deliveries acknowledged (handled, or dropped as duplicates) since it was built."""
        self.duplicates = 0
        """Of those, the duplicates the inbox dropped."""
        self.retried = 0
        """Deliveries given back to the broker for a later attempt."""
        self.dead_lettered = 0
        """Deliveries dead-lettered (undecodable, out of attempts, no handler)."""

    def __repr__(self) -> str:
        return (
            f"<Consumer {self.name!r} of group {self.group!r} on {self.destination!r} "
            f"via {self.transport.name}>"
        )

    # -- listeners ----------------------------------------------------------------------

    def add_listener(self, listener: DeliveryListener) -> None:
        """Call ``listener(DeliveryEvent)`` after every ack, retry and dead letter."""
        self._listeners.append(listener)

    def remove_listener(self, listener: DeliveryListener) -> None:
        """Stop calling ``listener``; raises :class:`ValueError` if it was not added."""
        self._listeners.remove(listener)

    # -- running ------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run the loop in a task of the running event loop; returns the task."""
        if self._running:
            raise RuntimeError(f"{self!r} is running already")
        task = asyncio.get_running_loop().create_task(self.run(), name=repr(self))
        self._task = task
        self._running = True  # at once: a second start() before the task runs is refused
        self._finished.clear()
        return task

    async def run(self) -> None:
        """Receive and handle deliveries until :meth:`stop` is called.

        Broker failures (Redis unreachable, restarting) are logged and waited out,
        with a growing pause (up to 5 s): the loop never ends because of them.
        """
        if self._running and self._task is not asyncio.current_task():
            raise RuntimeError(f"{self!r} is running already")
        self._running = True
        self._task = asyncio.current_task()
        self._finished.clear()
        pause = 0.0
        try:
            while not self._stopping.is_set():
                try:
                    if pause:  # the broker failed: make sure the group is there again
                        await self.transport.ensure_group(self.destination, self.group)
                    else:
                        await self._ensure_group_once()
                    handled = await self.process_batch()
                except TransportError as exc:
                    pause = min(max(pause * 2, 0.1), 5.0)
                    logger.warning(
                        "%r: the broker failed (%s); trying again in %.1f s", self, exc, pause
                    )
                    await self._sleep(pause)
                    continue
                pause = 0.0
                if handled == 0 and self.wait == 0:
                    await asyncio.sleep(0)  # let other tasks run between empty polls
        finally:
            self._running = False
            self._stopping.clear()  # it may be run again
            self._finished.set()

    async def stop(self, grace: float = 30.0) -> bool:
        """Stop receiving, finish and acknowledge the deliveries in flight, and return
        once the loop ended: ``True`` if it ended within ``grace`` seconds.  After
        that, the task running the loop is cancelled (what it was handling is not
        acknowledged, and the broker delivers it again later) and waited for at most
        :data:`CANCEL_WAIT` seconds more: a cancellation can be lost inside a driver
        (redis-py swallows one that arrives while a command waits on its socket), and
        a stop must not hang on it.  Such a loop is logged, and left to end (or not)
        on its own."""
        if not self._running:
            return True
        self._stopping.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), grace)
            return True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=CANCEL_WAIT)
            if not done:
                logger.error(
                    "%r: the loop did not end %.1f s after it was cancelled (a cancellation "
                    "lost in the broker's client?); stop() returns without it",
                    self,
                    CANCEL_WAIT,
                )
        return False

    async def process_batch(self, wait: float | None = None) -> int:
        """Receive one batch (waiting up to ``wait``, default the consumer's) and handle
        it; returns how many deliveries were received.  What :meth:`run` repeats; a
        test can call it directly."""
        await self._ensure_group_once()
        deliveries = await self.transport.receive(
            self.destination,
            self.group,
            self.name,
            count=self.batch_size,
            wait=self.wait if wait is None else wait,
        )
        if len(deliveries) == 1:
            await self._settle(deliveries[0])
        elif deliveries:
            await asyncio.gather(*(self._in_order(part) for part in _by_correlation(deliveries)))
        return len(deliveries)

    # -- one delivery -------------------------------------------------------------------

    async def _ensure_group_once(self) -> None:
        if not self._group_ensured:
            await self.transport.ensure_group(self.destination, self.group)
            self._group_ensured = True

    async def _in_order(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            await self._settle(delivery)

    async def _settle(self, delivery: Delivery) -> None:
        """Handle one delivery and settle it; never raises (but on cancellation)."""
        try:
            await self._handle(delivery)
        except TransportError as exc:
            # The broker (or the inbox) failed: the delivery stays pending, and is
            # delivered again once the broker is back (after the claim idle time).
            logger.warning(
                "%r: could not settle delivery %s (%s); it stays pending",
                self,
                delivery.delivery_id,
                exc,
            )
        except Exception:
            logger.exception("%r: unexpected failure on delivery %s", self, delivery.delivery_id)

    async def _handle(self, delivery: Delivery) -> None:
        if delivery.attempt > self.max_attempts:
            await self._dead_letter(
                delivery,
                None,
                f"delivered {delivery.attempt} times without being acknowledged (its "
                f"consumers died while handling it?); max_attempts is {self.max_attempts}",
            )
            return
        try:
            decoded = self.codec.decode(_with_correlation(delivery.headers), delivery.body)
        except (MessageDecodeError, UnknownMessageTypeError) as exc:
            await self._dead_letter(delivery, None, f"undecodable: {exc}")
            return
        except RecursionError:
            await self._dead_letter(delivery, None, "undecodable: the body nests too deeply")
            return
        message = decoded.message
        outcome = await self._handle_message(
            delivery, message, decoded.trace_context, decoded.service
        )
        if outcome.error is None:
            await self.transport.ack(delivery)
            self._emit(
                EVENT_MESSAGE_ACKED,
                delivery,
                message,
                _DUPLICATE if outcome.duplicate else None,
                duplicate=outcome.duplicate,
            )
            return
        error = outcome.error
        reason = f"{type(error).__name__}: {exception_message(error)}"
        if isinstance(error, HandlerNotFoundError):
            await self._dead_letter(delivery, message, f"no handler: {reason}")
        elif delivery.attempt >= self.max_attempts:
            await self._dead_letter(
                delivery, message, f"{_failed(delivery.attempt)}; last error: {reason}"
            )
        else:
            delay = self.backoff.delay(delivery.attempt)
            reason = safe_reason(f"attempt {delivery.attempt} failed: {reason}")
            await self.transport.retry(delivery, delay=delay, reason=reason)
            logger.info("%r: %s; retrying in %.2f s", self, reason, delay)
            self._emit(EVENT_MESSAGE_RETRIED, delivery, message, reason)

    async def _handle_message(
        self,
        delivery: Delivery,
        message: BaseMessage,
        trace_context: Mapping[str, str],
        service: str | None,
    ) -> _Outcome:
        """Inbox check, dispatch, inbox mark; a handler's exception is returned."""
        inbox, group, message_id = self.inbox, self.group, message.request_id
        if self.unit_of_work is None:
            if inbox is not None and await inbox.seen(group, message_id):
                return _Outcome(duplicate=True)
            try:
                await self._dispatch(delivery, message, trace_context, service)
            except Exception as exc:  # noqa: BLE001 - any handler failure is retried
                return _Outcome(error=exc)
            if inbox is not None:
                await inbox.mark(group, message_id)
            return _Outcome()
        transactional = inbox is not None and inbox.transactional
        if inbox is not None and not transactional and await inbox.seen(group, message_id):
            return _Outcome(duplicate=True)
        duplicate = False
        try:
            async with self.unit_of_work(delivery):
                if inbox is not None and transactional:
                    duplicate = not await inbox.mark(group, message_id)
                if not duplicate:
                    await self._dispatch(delivery, message, trace_context, service)
        except Exception as exc:  # noqa: BLE001 - rolled back: retried
            return _Outcome(error=exc)
        if inbox is not None and not transactional:
            await inbox.mark(group, message_id)
        return _Outcome(duplicate=duplicate)

    async def _dispatch(
        self,
        delivery: Delivery,
        message: BaseMessage,
        trace_context: Mapping[str, str],
        service: str | None,
    ) -> None:
        token = _current.set((delivery, message.request_id))
        consumption = Consumption(
            message_id=message.request_id,
            message_type=message_type_name(message),
            correlation_id=message.correlation_id or message.request_id,
            causation_id=message.causation_id,
            requested_by=message.requested_by,
            transport=self.transport.name,
            destination=delivery.destination,
            group=self.group,
            attempt=delivery.attempt,
            delivery_id=delivery.delivery_id,
            service=service,
        )
        try:
            with (
                consumption_scope(consumption),
                consuming(
                    trace_context,
                    message,
                    system=self.transport.name,
                    destination=delivery.destination,
                    group=self.group,
                    consumer=self.name,
                ),
            ):
                await self.bus.process(message)
        finally:
            _current.reset(token)

    async def _dead_letter(
        self, delivery: Delivery, message: BaseMessage | None, reason: str
    ) -> None:
        reason = safe_reason(reason)
        await self.transport.dead_letter(delivery, reason=reason)
        logger.warning("%r: dead-lettered delivery %s: %s", self, delivery.delivery_id, reason)
        self._emit(EVENT_MESSAGE_DLQ, delivery, message, reason)

    def _emit(
        self,
        event: str,
        delivery: Delivery,
        message: BaseMessage | None,
        reason: str | None,
        *,
        duplicate: bool = False,
    ) -> None:
        if event == EVENT_MESSAGE_ACKED:
            self.acked += 1
            self.duplicates += duplicate
        elif event == EVENT_MESSAGE_RETRIED:
            self.retried += 1
        else:
            self.dead_lettered += 1
        if not self._listeners:
            return
        ids: tuple[str | None, str | None, str | None]
        if message is not None:
            fields = tracing_fields(message)
            ids = (fields.request_id, fields.message_type, fields.correlation_id)
            causation = fields.causation_id
        else:
            ids = _ids_from_headers(delivery.headers)
            causation = None
        notice = DeliveryEvent(
            event=event,
            destination=delivery.destination,
            group=delivery.group,
            consumer=self.name,
            delivery_id=delivery.delivery_id,
            attempt=delivery.attempt,
            message_id=ids[0],
            message_type=ids[1],
            correlation_id=ids[2],
            causation_id=causation,
            reason=reason,
            duplicate=duplicate,
            transport=self.transport.name,
        )
        for listener in self._listeners:
            try:
                listener(notice)
            except Exception:
                logger.exception("delivery listener %r failed on %s", listener, event)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up at once when the consumer is stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def _failed(attempts: int) -> str:
    return "failed once" if attempts == 1 else f"failed {attempts} times"


def _with_correlation(headers: Mapping[str, str]) -> Mapping[str, str]:
    """The headers, with a correlation id for a foreign message that has none: its own
    message id (it is the root of a new chain).  Anything else is left to the codec."""
    if WIRE_CORRELATION_ID in headers:
        return headers
    lowered = {name.lower(): name for name in headers if isinstance(name, str)}
    if WIRE_CORRELATION_ID in lowered or WIRE_MESSAGE_ID not in lowered:
        return headers
    return {**headers, WIRE_CORRELATION_ID: headers[lowered[WIRE_MESSAGE_ID]]}


def _ids_from_headers(headers: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """Message id, type name and correlation id of a message that did not decode, each
    only if it is valid (they go into events, logs and stores)."""
    message_id = type_name = correlation_id = None
    raw_id = headers.get(WIRE_MESSAGE_ID)
    if isinstance(raw_id, str) and len(raw_id) <= 64:
        with contextlib.suppress(ValueError):
            message_id = str(validate_request_id(raw_id))
    raw_type = headers.get(WIRE_MESSAGE_TYPE)
    if isinstance(raw_type, str):
        with contextlib.suppress(ValueError):
            type_name = check_name(raw_type, "type")
    raw_correlation = headers.get(WIRE_CORRELATION_ID)
    if isinstance(raw_correlation, str) and len(raw_correlation) <= 128:
        with contextlib.suppress(ValueError):
            correlation_id = str(validate_correlation_id(raw_correlation))
    return message_id, type_name, correlation_id


def _by_correlation(deliveries: list[Delivery]) -> Iterable[list[Delivery]]:
    """The deliveries grouped by their correlation id header, each group in order."""
    groups: dict[object, list[Delivery]] = {}
    for index, delivery in enumerate(deliveries):
        key: object = delivery.headers.get(WIRE_CORRELATION_ID) or ("no correlation", index)
        groups.setdefault(key, []).append(delivery)
    return groups.values()
