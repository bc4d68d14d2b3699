"""The relay: publishes committed outbox entries to a broker, at least once, in order
per correlation id.

::

    storage = await PostgresOutbox.connect("postgresql://app@db/orders")
    relay = OutboxRelay(storage, transport)
    relay.add_listener(print)          # OutboxEvent: outbox.published / .retry / .failed
    task = asyncio.create_task(relay.run())
    ...
    relay.stop()                       # finishes the batch in hand, then returns
    await task

One round (:meth:`OutboxRelay.run_once`) claims a batch (the heads of up to
``batch_size`` correlations, each with the run of entries behind it; see
:mod:`python_cqrs_core.outbox.storage`), publishes each correlation's run in order
(correlations side by side), and marks what the broker took as delivered, in one
statement.  A relay killed between publishing and marking leaves its claims to expire
(``lease`` seconds); the entries are then published again: consumers drop the
duplicate through their inbox.

**Broker down.**  A publish that fails counts one attempt on its entry, which is
retried after a backoff (``retry_initial`` doubling up to ``retry_max`` seconds);
the rest of the batch is released untried and the relay pauses with the same backoff,
so an outage costs the entries that happened to be tried one attempt per pause, not
every entry one attempt per round.  An entry that fails ``max_attempts`` times is
marked ``failed``: logged at ERROR, reported as :data:`~python_cqrs_core.names.EVENT_OUTBOX_FAILED`,
kept, and retried when an operator asks (:meth:`OutboxStorage.retry_failed
<python_cqrs_core.outbox.OutboxStorage.retry_failed>`).  Nothing is dropped.

**Tracing.**  With OpenTelemetry installed, each round is an ``outbox.process`` span
(its correlation and causation ids set only when every entry of the batch shares them,
"when uniform") and each publish an ``outbox.publish`` ``PRODUCER`` span, child of the
context stored with the entry (the span that dispatched the message) and linked to the
round's span; the published headers carry the producer span's ``traceparent``, so the
consumer's span is its child.

**Metrics.**  :meth:`OutboxRelay.backlog` (entries waiting), and the counters
:attr:`~OutboxRelay.published`, :attr:`~OutboxRelay.retried`, :attr:`~OutboxRelay.failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ..errors import exception_message
from ..names import (
    EVENT_OUTBOX_FAILED,
    EVENT_OUTBOX_PUBLISHED,
    EVENT_OUTBOX_RETRIED,
    OUTBOX_LOGGER,
)
from ..transports.base import Transport
from .schema import FAILED
from .storage import OutboxEntry, OutboxStorage

__all__ = ["OutboxEvent", "OutboxListener", "OutboxRelay"]

logger = logging.getLogger(OUTBOX_LOGGER)

_MAX_ERROR_LENGTH = 1000


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """What happened to one outbox entry: published, to be retried, or failed.

    ``name`` is :data:`~python_cqrs_core.names.EVENT_OUTBOX_PUBLISHED`,
    :data:`~python_cqrs_core.names.EVENT_OUTBOX_RETRIED` or
    :data:`~python_cqrs_core.names.EVENT_OUTBOX_FAILED`; ``attempt`` counts from 1;
    ``reason`` says why an attempt failed (``None`` once published).
    """

    name: str
    message_id: str
    message_type: str
    correlation_id: str
    causation_id: str | None
    destination: str
    position: int
    attempt: int
    reason: str | None = None
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))


OutboxListener = Callable[[OutboxEvent], None]
"""``listener(event)``: called inline by the relay; keep it quick (hand off to a queue)."""


class _Round(Protocol):
    """The tracing of one round: a context manager per publish, yielding the headers
    to send (the stored ones, with the producer span's trace context when traced)."""

    def publish(self, entry: OutboxEntry) -> contextlib.AbstractContextManager[Mapping[str, str]]:
        """Trace the publish of ``entry``."""


class _Tracing(Protocol):
    def round(self, entries: Sequence[OutboxEntry]) -> contextlib.AbstractContextManager[_Round]:
        """Trace one round over ``entries``."""


class _Untraced:
    """No OpenTelemetry: publish the stored headers as they are."""

    @contextlib.contextmanager
    def round(self, entries: Sequence[OutboxEntry]) -> Iterator[_Round]:
        yield self

    @contextlib.contextmanager
    def publish(self, entry: OutboxEntry) -> Iterator[Mapping[str, str]]:
        yield entry.headers


def _tracing(tracer_provider: Any, system: str) -> _Tracing:
    try:
        from .tracing import RelayTracing
    except ImportError:  # the [otel] extra is not installed
        return _Untraced()
    return RelayTracing(tracer_provider, system)


def _default_relay_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class _Outage:
    """Set by the first failed publish of a round: the runs not started yet are
    released untried."""

    __slots__ = ("down",)

    def __init__(self) -> None:
        self.down = False


class OutboxRelay:
    """Publishes the entries of an :class:`~python_cqrs_core.outbox.OutboxStorage` to a
    :class:`~python_cqrs_core.transports.Transport` (see the module documentation).

    - ``batch_size``: correlations claimed per round; ``run_limit``: entries of one
      correlation published per round;
    - ``lease``: seconds a claim holds; longer than a round can take (a relay whose
      lease runs out while it still publishes may duplicate entries);
    - ``poll_interval``: seconds to wait when nothing was due;
    - ``max_attempts``, ``retry_initial``, ``retry_max``: the retry policy;
    - ``relay_id``: this relay's name in ``claimed_by`` (host, pid and a random
      suffix by default);
    - ``tracer_provider``: OpenTelemetry's (the global one by default; ignored
      without the ``[otel]`` extra).

    The relay does not own the storage nor the transport: close them after it.
    """

    def __init__(
        self,
        storage: OutboxStorage,
        transport: Transport,
        *,
        batch_size: int = 100,
        run_limit: int = 100,
        lease: float = 30.0,
        poll_interval: float = 0.2,
        max_attempts: int = 12,
        retry_initial: float = 0.5,
        retry_max: float = 60.0,
        relay_id: str | None = None,
        tracer_provider: Any = None,
    ) -> None:
        for name, value in (
            ("batch_size", batch_size),
            ("run_limit", run_limit),
            ("max_attempts", max_attempts),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, seconds in (
            ("lease", lease),
            ("poll_interval", poll_interval),
            ("retry_initial", retry_initial),
            ("retry_max", retry_max),
        ):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
        self.storage = storage
        self.transport = transport
        self.batch_size = batch_size
        self.run_limit = run_limit
        self.lease = float(lease)
        self.poll_interval = float(poll_interval)
        self.max_attempts = max_attempts
        self.retry_initial = float(retry_initial)
        self.retry_max = float(retry_max)
        self.relay_id = relay_id or _default_relay_id()
        self.published = 0
        """Entries published (and marked delivered) by this relay."""
        self.retried = 0
        """Failed attempts that will be retried."""
        self.failed = 0
        """Entries this relay marked ``failed``."""
        self._listeners: list[OutboxListener] = []
        self._tracing = _tracing(tracer_provider, transport.name)
        self._stopping = asyncio.Event()
        self._failing_rounds = 0

    def add_listener(self, listener: OutboxListener) -> None:
        """Call ``listener(OutboxEvent)`` for every entry published, retried or failed."""
        self._listeners.append(listener)

    def remove_listener(self, listener: OutboxListener) -> None:
        """Stop calling ``listener``; :class:`ValueError` if it was not added."""
        self._listeners.remove(listener)

    async def backlog(self) -> int:
        """Entries waiting to be published: the relay backlog metric."""
        return await self.storage.backlog()

    # -- running ---------------------------------------------------------------------

    async def run(self) -> None:
        """Relay until :meth:`stop` is called; the round in hand is finished first.

        A storage error (database down) is logged and the round retried after the
        backoff; the relay keeps running.  A relay that was stopped stays stopped (a
        :meth:`stop` that comes before :meth:`run` starts is not lost).
        """
        while not self._stopping.is_set():
            try:
                published = await self.run_once()
            except Exception:
                self._failing_rounds += 1
                logger.exception("outbox relay %s: a round failed; retrying", self.relay_id)
                await self._pause(self._backoff(self._failing_rounds))
                continue
            if self._failing_rounds:
                await self._pause(self._backoff(self._failing_rounds))
            elif published == 0:
                await self._pause(self.poll_interval)

    def stop(self) -> None:
        """Ask :meth:`run` to return after the round in hand."""
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def run_once(self) -> int:
        """One round: claim, publish, mark delivered; returns how many entries were
        published.  A round in which a publish failed leaves :meth:`run` pausing."""
        entries = await self.storage.claim(
            self.relay_id, limit=self.batch_size, run_limit=self.run_limit, lease=self.lease
        )
        if not entries:
            return 0
        runs: dict[str, list[OutboxEntry]] = {}
        for entry in entries:
            runs.setdefault(entry.correlation_id, []).append(entry)
        outage = _Outage()
        with self._tracing.round(entries) as traced:
            results = await asyncio.gather(
                *(self._publish_run(run, traced, outage) for run in runs.values())
            )
        delivered = [entry for published in results for entry in published]
        if delivered:
            kept = await self.storage.mark_delivered(
                self.relay_id, [entry.position for entry in delivered]
            )
            if kept < len(delivered):
                logger.warning(
                    "outbox relay %s: %d of %d published entries had been claimed by another "
                    "relay meanwhile (lease %.1fs too short?); they may be published twice",
                    self.relay_id,
                    len(delivered) - kept,
                    len(delivered),
                    self.lease,
                )
            self.published += len(delivered)
            for entry in delivered:
                self._emit(EVENT_OUTBOX_PUBLISHED, entry, entry.attempts + 1, None)
        self._failing_rounds = self._failing_rounds + 1 if outage.down else 0
        return len(delivered)

    async def _publish_run(
        self, run: list[OutboxEntry], traced: _Round, outage: _Outage
    ) -> list[OutboxEntry]:
        """Publish one correlation's entries in order; stop at the first failure."""
        published: list[OutboxEntry] = []
        for index, entry in enumerate(run):
            if outage.down:
                await self.storage.release(self.relay_id, [e.position for e in run[index:]])
                break
            try:
                with traced.publish(entry) as headers:
                    await self.transport.publish(entry.destination, headers, entry.body)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                outage.down = True
                await self._failed_attempt(entry, exc)
                rest = [e.position for e in run[index + 1 :]]
                if rest:
                    await self.storage.release(self.relay_id, rest)
                break
            published.append(entry)
        return published

    async def _failed_attempt(self, entry: OutboxEntry, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exception_message(exc)}"[:_MAX_ERROR_LENGTH]
        attempt = entry.attempts + 1
        status = await self.storage.record_failure(
            self.relay_id,
            entry.position,
            reason,
            retry_in=self._backoff(attempt),
            max_attempts=self.max_attempts,
        )
        if status is None:
            return  # another relay holds it now
        if status == FAILED:
            self.failed += 1
            logger.error(
                "outbox entry %s (%s %s, correlation %s) failed %d times and will not be "
                "retried until an operator retries it: %s",
                entry.position,
                entry.message_type,
                entry.message_id,
                entry.correlation_id,
                attempt,
                reason,
            )
            self._emit(EVENT_OUTBOX_FAILED, entry, attempt, reason)
        else:
            self.retried += 1
            logger.warning(
                "outbox entry %s (%s %s) could not be published (attempt %d of %d), "
                "retried later: %s",
                entry.position,
                entry.message_type,
                entry.message_id,
                attempt,
                self.max_attempts,
                reason,
            )
            self._emit(EVENT_OUTBOX_RETRIED, entry, attempt, reason)

    def _backoff(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1, 2, ...): doubling, capped."""
        return float(min(self.retry_initial * 2 ** min(attempt - 1, 32), self.retry_max))

    def _emit(self, name: str, entry: OutboxEntry, attempt: int, reason: str | None) -> None:
        if not self._listeners:
            return
        event = OutboxEvent(
            name,
            entry.message_id,
            entry.message_type,
            entry.correlation_id,
            entry.causation_id,
            entry.destination,
            entry.position,
            attempt,
            reason,
        )
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("outbox listener %r failed on %s", listener, name)

    def __repr__(self) -> str:
        return (
            f"<OutboxRelay {self.relay_id} from {self.storage.url} to {self.transport.name}: "
            f"{self.published} published, {self.failed} failed>"
        )
