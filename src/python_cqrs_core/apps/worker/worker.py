"""The worker: a service's consumers and outbox relay, run as one process that stops
cleanly.

A service module describes what its worker runs; ``cqrs worker module:attribute``
(or ``await worker.run()`` in a program of your own) runs it::

    worker = Worker(
        name="inventory",
        bus=bus, transport=transport, codec=codec,
        consumers=[Subscription("orders.events", group="inventory", inbox=RedisInbox(transport))],
        relay=OutboxRelay(outbox, transport),
        cleanup=[transport.close, outbox.close],
    )

:meth:`Worker.run` starts every consumer loop and the relay, and waits.  On
``SIGTERM`` or ``SIGINT`` it stops gracefully:

1. every consumer stops receiving, finishes the deliveries it holds and
   acknowledges them (:meth:`Consumer.stop <python_cqrs_core.transports.Consumer.stop>`);
2. the relay finishes the round in hand and stops;
3. the ``cleanup`` callables run, in order (close the transport, the pools, the store);
4. :meth:`~Worker.run` returns ``True``: a clean stop.

Whatever is still running when ``grace`` seconds have passed is cancelled and
:meth:`~Worker.run` returns ``False``: a delivery cancelled that way was not
acknowledged, and the broker delivers it again later (to this worker after a restart,
or to another one of its group), so nothing is lost, but it may be handled twice
where no inbox guards it.  A second signal during the stop cancels at once.

**Logs** go to the ``python_cqrs_core.worker`` logger, with the ids of the message
each line is about as ``extra`` fields (``correlation_id``, ``causation_id``,
``request_id``, ``message_type``: what
:class:`~python_cqrs_core.integrations.logging.CorrelationFilter` formats): a line
when the worker starts and stops, one per delivery outcome (acknowledged: DEBUG;
retried: INFO; dead-lettered: WARNING) and per outbox entry (published: DEBUG;
retried: INFO; failed: WARNING), and a status line every ``status_interval`` seconds
when something changed.

**Metrics**: :meth:`~Worker.status` measures the consumer lag of each group and the
relay backlog, and reads the counters (acknowledged, duplicates, retries, dead
letters; published, retried, failed).  :mod:`python_cqrs_core.apps.worker.metrics`
exposes them to Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from ...codec import EnvelopeCodec
from ...mediator import Mediator
from ...names import (
    EVENT_MESSAGE_ACKED,
    EVENT_MESSAGE_RETRIED,
    EVENT_OUTBOX_PUBLISHED,
    EVENT_OUTBOX_RETRIED,
    WORKER_LOGGER,
)
from ...outbox.relay import OutboxEvent, OutboxRelay
from ...transports import (
    Backoff,
    Consumer,
    DeliveryEvent,
    DeliveryListener,
    Inbox,
    Transport,
    UnitOfWork,
)
from ...transports.consumer import CANCEL_WAIT
from ...validation import validate_type_name

__all__ = [
    "ConsumerStatus",
    "RelayStatus",
    "Subscription",
    "Worker",
    "WorkerStatus",
]

logger = logging.getLogger(WORKER_LOGGER)

Cleanup = Callable[[], Awaitable[object]]
"""An async callable the worker awaits once it stopped: ``transport.close``,
``pool.close``..."""

_MEASURE_TIMEOUT: Final = 5.0  # seconds one lag or backlog query may take
_MIN_CLEANUP_TIME: Final = 5.0  # seconds the cleanup has even when the grace is spent


@dataclass(frozen=True, slots=True)
class Subscription:
    """One destination a worker consumes, as a member of ``group``, and how.

    The worker builds a :class:`~python_cqrs_core.transports.Consumer` from it, on the
    worker's ``bus``, ``transport`` and ``codec``; the other fields are the
    consumer's (``inbox``, ``unit_of_work``, ``max_attempts``, ``backoff``,
    ``batch_size``, ``wait``, and ``listeners`` of its delivery outcomes, such as a
    :class:`~python_cqrs_core.store.DeliveryRecorder` recording its dead letters).
    ``concurrency`` consumer loops of the subscription run side by side in the worker
    (each receives its own batches; a batch is already handled concurrently, one
    correlation id at a time).

    >>> Subscription("orders.events", group="inventory", concurrency=0)
    Traceback (most recent call last):
        ...
    ValueError: concurrency must be at least 1, got 0
    """

    destination: str
    group: str
    inbox: Inbox | None = None
    unit_of_work: UnitOfWork | None = None
    max_attempts: int = 5
    backoff: Backoff | None = None
    batch_size: int = 32
    wait: float = 1.0
    listeners: tuple[DeliveryListener, ...] = ()
    concurrency: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency!r}")


@dataclass(frozen=True, slots=True)
class ConsumerStatus:
    """One consumer loop of a worker: its counters, and the lag of its group (``None``
    when the broker could not be asked)."""

    consumer: str
    destination: str
    group: str
    acked: int
    duplicates: int
    retried: int
    dead_lettered: int
    lag: int | None


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """The worker's outbox relay: its counters, and the backlog of the outbox
    (``None`` when the database could not be asked)."""

    relay_id: str
    published: int
    retried: int
    failed: int
    backlog: int | None


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """What a worker did and how far behind it is, at ``taken_at``."""

    worker: str
    consumers: tuple[ConsumerStatus, ...]
    relay: RelayStatus | None
    taken_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def summary(self) -> str:
        """One line for a log: per destination and group, the lag and the counters,
        then the outbox.

        >>> status = WorkerStatus("inventory", (ConsumerStatus(
        ...     "w-1", "orders.events", "inventory", 12, 1, 2, 0, 3),), None)
        >>> status.summary()
        'orders.events/inventory: lag 3, 12 acknowledged (1 duplicate), 2 retried, 0 dead-lettered'
        """
        parts: list[str] = []
        groups: dict[tuple[str, str], list[ConsumerStatus]] = {}
        for consumer in self.consumers:
            groups.setdefault((consumer.destination, consumer.group), []).append(consumer)
        for (destination, group), loops in groups.items():
            lag = "?" if loops[0].lag is None else str(loops[0].lag)
            duplicates = sum(loop.duplicates for loop in loops)
            parts.append(
                f"{destination}/{group}: lag {lag}, "
                f"{sum(loop.acked for loop in loops)} acknowledged "
                f"({duplicates} duplicate{'' if duplicates == 1 else 's'}), "
                f"{sum(loop.retried for loop in loops)} retried, "
                f"{sum(loop.dead_lettered for loop in loops)} dead-lettered"
            )
        if self.relay is not None:
            backlog = "?" if self.relay.backlog is None else str(self.relay.backlog)
            parts.append(
                f"outbox: backlog {backlog}, {self.relay.published} published, "
                f"{self.relay.retried} retried, {self.relay.failed} failed"
            )
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "worker": self.worker,
            "taken_at": self.taken_at.isoformat(),
            "consumers": [
                {
                    "consumer": c.consumer,
                    "destination": c.destination,
                    "group": c.group,
                    "acked": c.acked,
                    "duplicates": c.duplicates,
                    "retried": c.retried,
                    "dead_lettered": c.dead_lettered,
                    "lag": c.lag,
                }
                for c in self.consumers
            ],
            "relay": None
            if self.relay is None
            else {
                "relay_id": self.relay.relay_id,
                "published": self.relay.published,
                "retried": self.relay.retried,
                "failed": self.relay.failed,
                "backlog": self.relay.backlog,
            },
        }


class Worker:
    """A service's consumers and outbox relay, run and stopped together (see the
    module documentation).

    - ``name``: the service's name (1-256 printable ASCII characters without
      whitespace); consumer loops are named ``<name>-<host>-<pid>`` (``-2``, ``-3``...
      for further loops of one subscription);
    - ``bus``, ``transport``, ``codec``: what the consumers of the ``consumers``
      given as :class:`Subscription` handle, receive and decode messages with;
    - ``consumers``: :class:`Subscription` objects, or
      :class:`~python_cqrs_core.transports.Consumer` objects built by hand (not
      started);
    - ``relay``: the service's :class:`~python_cqrs_core.outbox.OutboxRelay` (not
      running), if it has an outbox;
    - ``cleanup``: async callables awaited, in order, once everything stopped;
    - ``status_interval``: seconds between two measures of the lag and backlog (and
      status lines in the log).

    A worker runs once: build a new one to run again.
    """

    def __init__(
        self,
        *,
        name: str,
        bus: Mediator | None = None,
        transport: Transport | None = None,
        codec: EnvelopeCodec | None = None,
        consumers: Iterable[Subscription | Consumer] = (),
        relay: OutboxRelay | None = None,
        cleanup: Iterable[Cleanup] = (),
        status_interval: float = 15.0,
    ) -> None:
        try:
            self.name = validate_type_name(name)
        except ValueError as exc:
            raise ValueError(f"name: {exc}") from None
        if isinstance(status_interval, bool) or not status_interval > 0:
            raise ValueError(
                f"status_interval must be a positive number of seconds, got {status_interval!r}"
            )
        self.relay = relay
        self.status_interval = float(status_interval)
        self._cleanup = list(cleanup)
        self._consumers: list[Consumer] = []
        base = f"{self.name}-{socket.gethostname()}-{os.getpid()}"
        for item in consumers:
            if isinstance(item, Consumer):
                self._consumers.append(item)
                continue
            if not isinstance(item, Subscription):
                raise TypeError(f"consumers: expected Subscription or Consumer, got {item!r}")
            missing = [
                label
                for label, value in (("bus", bus), ("transport", transport), ("codec", codec))
                if value is None
            ]
            if missing:
                raise ValueError(
                    f"a Subscription is consumed on the worker's bus, transport and codec: "
                    f"give the worker {' and '.join(missing)}="
                )
            for index in range(item.concurrency):
                self._consumers.append(
                    Consumer(
                        bus,  # type: ignore[arg-type]  # checked above
                        transport,  # type: ignore[arg-type]
                        codec,  # type: ignore[arg-type]
                        item.destination,
                        item.group,
                        name=base if index == 0 else f"{base}-{index + 1}",
                        inbox=item.inbox,
                        unit_of_work=item.unit_of_work,
                        max_attempts=item.max_attempts,
                        backoff=item.backoff,
                        batch_size=item.batch_size,
                        wait=item.wait,
                        listeners=item.listeners,
                    )
                )
        if not self._consumers and relay is None:
            raise ValueError("a worker runs at least one consumer or an outbox relay")
        for consumer in self._consumers:
            consumer.add_listener(_log_delivery)
        if relay is not None:
            relay.add_listener(_log_outbox)
        self._stop_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._relay_task: asyncio.Task[None] | None = None
        self._status_task: asyncio.Task[None] | None = None
        self._started = False
        self._stopped: asyncio.Future[bool] | None = None
        self._forced = False
        self._forcing: set[asyncio.Task[bool]] = set()
        self._crashed = False
        self._last_status: WorkerStatus | None = None

    def __repr__(self) -> str:
        relay = "" if self.relay is None else " and an outbox relay"
        return f"<Worker {self.name!r}: {len(self._consumers)} consumer loops{relay}>"

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        """The consumer loops the worker runs."""
        return tuple(self._consumers)

    @property
    def last_status(self) -> WorkerStatus | None:
        """The status measured last (every ``status_interval`` seconds while it runs)."""
        return self._last_status

    # -- running ----------------------------------------------------------------------

    async def run(self, *, grace: float = 30.0, handle_signals: bool = True) -> bool:
        """Start, wait for ``SIGTERM``/``SIGINT`` (with ``handle_signals``) or
        :meth:`request_stop`, then stop within ``grace`` seconds (:meth:`stop`);
        returns whether the stop was clean.

        Signal handlers can only be installed by the main thread's event loop: in
        another thread, call :meth:`request_stop` yourself.
        """
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(signum, self._on_signal, signum)
                    installed.append(signum)
        try:
            await self.start()
            await self._stop_requested.wait()
            return await self.stop(grace)
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    async def start(self) -> None:
        """Start every consumer loop, the relay and the status measures, and return."""
        if self._started:
            raise RuntimeError(f"{self!r} was started already (a worker runs once)")
        self._started = True
        for consumer in self._consumers:
            task = consumer.start()
            task.add_done_callback(self._check_ended)
            self._tasks.append(task)
        if self.relay is not None:
            self._relay_task = asyncio.get_running_loop().create_task(
                self.relay.run(), name=f"{self.name} outbox relay"
            )
            self._relay_task.add_done_callback(self._check_ended)
        self._status_task = asyncio.get_running_loop().create_task(
            self._report(), name=f"{self.name} status"
        )
        destinations = sorted({f"{c.destination}/{c.group}" for c in self._consumers})
        logger.info(
            "worker %s started: %d consumer loop(s) on %s%s",
            self.name,
            len(self._consumers),
            ", ".join(destinations) or "nothing",
            "" if self.relay is None else f", outbox relay {self.relay.relay_id}",
        )

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (what ``SIGTERM`` does); returns at once."""
        self._stop_requested.set()

    async def stop(self, grace: float = 30.0) -> bool:
        """Stop gracefully (see the module documentation), within about ``grace``
        seconds (the cleanup gets at least 5 s more); returns ``True`` when everything
        stopped in time and nothing failed.  Calling it again returns the same
        answer."""
        if self._stopped is not None:
            return await asyncio.shield(self._stopped)
        self._stopped = asyncio.get_running_loop().create_future()
        self._stop_requested.set()
        try:
            clean = await self._stop(max(float(grace), 0.0))
        except BaseException:
            self._stopped.set_result(False)
            raise
        self._stopped.set_result(clean)
        return clean

    async def _stop(self, grace: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        logger.info(
            "worker %s stopping: no new messages; finishing those in flight (grace %g s)",
            self.name,
            grace,
        )
        stopped = await asyncio.gather(*(c.stop(grace) for c in self._consumers))
        clean = all(stopped) and not self._forced
        if self._relay_task is not None and self.relay is not None:
            self.relay.stop()
            clean &= await _finish(self._relay_task, deadline - loop.time())
        if self._status_task is not None:  # it ends at its next turn (stop was requested)
            await _finish(self._status_task, max(deadline - loop.time(), _MEASURE_TIMEOUT))
        try:  # the final figures, the lag left included, while the broker is still open
            async with asyncio.timeout(max(deadline - loop.time(), 1.0)):
                final = await self.status()
        except TimeoutError:
            final = self._counters()
        clean &= not self._crashed
        cleanup_deadline = max(deadline, loop.time() + _MIN_CLEANUP_TIME)
        for step in self._cleanup:
            try:
                async with asyncio.timeout(max(cleanup_deadline - loop.time(), 0.0)):
                    await step()
            except TimeoutError:
                clean = False
                logger.error("worker %s: cleanup %r did not finish in time", self.name, step)
            except Exception:
                clean = False
                logger.exception("worker %s: cleanup %r failed", self.name, step)
        logger.info(
            "worker %s stopped %s: %s",
            self.name,
            "cleanly" if clean else "NOT cleanly (work in flight was cancelled or failed)",
            final.summary() or "nothing ran",
        )
        return clean

    def _on_signal(self, signum: signal.Signals) -> None:
        if not self._stop_requested.is_set():
            logger.info("worker %s: %s received, stopping", self.name, signum.name)
            self._stop_requested.set()
            return
        logger.warning(
            "worker %s: %s received again, cancelling the work in flight now "
            "(unacknowledged deliveries are delivered again later)",
            self.name,
            signum.name,
        )
        self._force()

    def _force(self) -> None:
        self._forced = True
        loop = asyncio.get_running_loop()
        for consumer in self._consumers:
            task = loop.create_task(consumer.stop(0))
            self._forcing.add(task)
            task.add_done_callback(self._forcing.discard)
        if self._relay_task is not None:
            self._relay_task.cancel()

    def _check_ended(self, task: asyncio.Task[None]) -> None:
        """A consumer loop or the relay ended: expected during a stop, a failure
        otherwise (the worker then stops, and its run is not clean)."""
        if task.cancelled() or self._stop_requested.is_set():
            return
        self._crashed = True
        error = task.exception()
        logger.error(
            "worker %s: %s ended unexpectedly; stopping the worker",
            self.name,
            task.get_name(),
            exc_info=error,
        )
        self._stop_requested.set()

    # -- status -----------------------------------------------------------------------

    async def status(self) -> WorkerStatus:
        """Measure now: the lag of each consumer group and the relay backlog (each
        query bounded to 5 s; ``None`` when it failed), with the counters."""
        lags: dict[tuple[str, str], int | None] = {}
        for consumer in self._consumers:
            key = (consumer.destination, consumer.group)
            if key not in lags:
                lags[key] = await _measure(
                    consumer.transport.lag(*key), f"the lag of {key[0]}/{key[1]}"
                )
        backlog = None
        if self.relay is not None:
            backlog = await _measure(self.relay.backlog(), "the outbox backlog")
        status = self._counters(lags, backlog)
        self._last_status = status
        return status

    def _counters(
        self, lags: dict[tuple[str, str], int | None] | None = None, backlog: int | None = None
    ) -> WorkerStatus:
        lags = lags or {}
        relay = self.relay
        return WorkerStatus(
            self.name,
            tuple(
                ConsumerStatus(
                    c.name,
                    c.destination,
                    c.group,
                    c.acked,
                    c.duplicates,
                    c.retried,
                    c.dead_lettered,
                    lags.get((c.destination, c.group)),
                )
                for c in self._consumers
            ),
            None
            if relay is None
            else RelayStatus(relay.relay_id, relay.published, relay.retried, relay.failed, backlog),
        )

    async def _stop_within(self, seconds: float) -> bool:
        """Whether a stop is requested within ``seconds``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop_requested.wait()
        return self._stop_requested.is_set()

    async def _report(self) -> None:
        """Measure every ``status_interval`` seconds; log a status line when something
        changed since the last one."""
        last = ""
        # The first measure waits too: the consumers create their groups meanwhile.
        while not await self._stop_within(self.status_interval):
            status = await self.status()
            line = status.summary()
            if line != last:
                logger.info("worker %s: %s", self.name, line)
                last = line


async def _measure(query: Awaitable[int], what: str) -> int | None:
    try:
        async with asyncio.timeout(_MEASURE_TIMEOUT):
            return await query
    except Exception as exc:  # noqa: BLE001 - a metric is not worth a crash
        logger.warning("could not measure %s: %s: %s", what, type(exc).__name__, exc)
        return None


async def _finish(task: asyncio.Task[None], seconds: float) -> bool:
    """Wait up to ``seconds`` for ``task`` to end; cancel it after that.  True when it
    ended on its own.

    The cancelled task is waited for :data:`CANCEL_WAIT` seconds more, not for ever,
    as :meth:`Consumer.stop` does: a cancellation can be lost inside a driver
    (redis-py swallows one that arrives while a command waits on its socket timeout),
    and a stop must not hang on it.
    """
    done, _ = await asyncio.wait({task}, timeout=max(seconds, 0.0))
    if done:
        return not task.cancelled()
    task.cancel()
    await asyncio.wait({task}, timeout=CANCEL_WAIT)
    return False


def _ids(
    message_id: str | None,
    correlation_id: str | None,
    causation_id: str | None,
    message_type: str | None,
) -> dict[str, str]:
    """The log record fields of one message (the names CorrelationFilter uses)."""
    return {
        "request_id": message_id or "",
        "correlation_id": correlation_id or "",
        "causation_id": causation_id or "",
        "message_type": message_type or "",
    }


def _log_delivery(event: DeliveryEvent) -> None:
    extra = _ids(event.message_id, event.correlation_id, event.causation_id, event.message_type)
    where = f"{event.destination}/{event.group}"
    if event.event == EVENT_MESSAGE_ACKED:
        if logger.isEnabledFor(logging.DEBUG):
            what = "duplicate dropped" if event.duplicate else "handled"
            logger.debug(
                "%s %s %s (attempt %d)", where, what, event.message_type, event.attempt, extra=extra
            )
    elif event.event == EVENT_MESSAGE_RETRIED:
        logger.info("%s retrying %s: %s", where, event.message_type, event.reason, extra=extra)
    else:
        logger.warning(
            "%s dead-lettered %s after %d attempt(s): %s",
            where,
            event.message_type or "an undecodable message",
            event.attempt,
            event.reason,
            extra=extra,
        )


def _log_outbox(event: OutboxEvent) -> None:
    extra = _ids(event.message_id, event.correlation_id, event.causation_id, event.message_type)
    if event.name == EVENT_OUTBOX_PUBLISHED:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "outbox published %s to %s", event.message_type, event.destination, extra=extra
            )
    elif event.name == EVENT_OUTBOX_RETRIED:
        logger.info(
            "outbox will retry %s to %s (attempt %d): %s",
            event.message_type,
            event.destination,
            event.attempt,
            event.reason,
            extra=extra,
        )
    else:
        logger.warning(
            "outbox gave up on %s to %s after %d attempts: %s",
            event.message_type,
            event.destination,
            event.attempt,
            event.reason,
            extra=extra,
        )
