"""An in-memory transport with a real broker's semantics, for tests and examples.

:class:`MemoryTransport` keeps everything in the process, and behaves like the Redis
Streams transport in every way a consumer can observe:

- every consumer group of a destination receives every message published after the
  group was created; the consumers of one group share them;
- a delivery stays *pending* until it is acknowledged; one left pending longer than
  ``claim_idle`` seconds (its consumer died) is delivered again, to whichever
  consumer of the group asks next, with its attempt count increased;
- :meth:`~MemoryTransport.retry` delivers the message to the same group only, after
  the delay, as the next attempt;
- :meth:`~MemoryTransport.dead_letter` keeps it with the reason;
  :meth:`~MemoryTransport.replay` hands it back to its group, unchanged;
- :meth:`~MemoryTransport.lag` counts what the group has not acknowledged yet.

::

    transport = MemoryTransport(claim_idle=0.5)
    await transport.ensure_group("orders.events", "billing")
    await transport.publish("orders.events", headers, body)
    [delivery] = await transport.receive("orders.events", "billing", "worker-1")
    await transport.ack(delivery)

It is bound to no event loop, holds no thread and needs no cleanup; a test builds a
fresh one.  Headers and body are copied in and handed out as they were published.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from ._common import check_headers, check_name, safe_reason
from .base import DeadLetter, Delivery, Transport, TransportError

__all__ = ["MemoryTransport"]


@dataclass(frozen=True, slots=True)
class _Message:
    headers: Mapping[str, str]
    body: bytes


@dataclass(slots=True)
class _Pending:
    message: _Message
    attempt: int
    consumer: str
    delivered_at: float


@dataclass(slots=True)
class _Group:
    cursor: int  # sequence number of the next entry of the stream to deliver
    pending: dict[str, _Pending] = field(default_factory=dict)
    # (due time, sequence, message, attempt): retries and replays for this group only
    scheduled: list[tuple[float, int, _Message, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Stream:
    entries: deque[tuple[int, _Message]] = field(default_factory=deque)
    groups: dict[str, _Group] = field(default_factory=dict)
    dead: dict[int, DeadLetter] = field(default_factory=dict)
    waiters: set[asyncio.Future[None]] = field(default_factory=set)


class MemoryTransport(Transport):
    """A broker in the process's memory (see the module documentation).

    ``claim_idle`` is how long a delivery may stay pending before another consumer of
    its group gets it again; ``max_length`` trims each destination to its newest
    entries (as ``MAXLEN`` does in Redis; deliveries already pending are kept).
    ``clock`` is the monotonic clock it measures idle times and delays with.

    >>> import asyncio
    >>> async def demo():
    ...     transport = MemoryTransport()
    ...     await transport.ensure_group("orders", "billing")
    ...     await transport.publish("orders", {"cqrs-message-id": "m-1"}, b"{}")
    ...     [delivery] = await transport.receive("orders", "billing", "w-1", wait=0)
    ...     lag_before = await transport.lag("orders", "billing")
    ...     await transport.ack(delivery)
    ...     return delivery.attempt, lag_before, await transport.lag("orders", "billing")
    >>> asyncio.run(demo())
    (1, 1, 0)
    """

    name = "memory"

    def __init__(
        self,
        *,
        claim_idle: float = 30.0,
        max_length: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if claim_idle <= 0:
            raise ValueError(f"claim_idle must be a positive number of seconds, got {claim_idle}")
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length}")
        self.claim_idle = claim_idle
        self.max_length = max_length
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._sequence = itertools.count(1)
        self._closed = False

    def __repr__(self) -> str:
        return f"<MemoryTransport of {len(self._streams)} destinations>"

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, destination: str, headers: Mapping[str, str], body: bytes) -> str:
        stream = self._stream(check_name(destination, "destination"))
        check_headers(headers)
        sequence = next(self._sequence)
        stream.entries.append((sequence, _Message(MappingProxyType(dict(headers)), bytes(body))))
        if self.max_length is not None:
            while len(stream.entries) > self.max_length:
                stream.entries.popleft()
        self._wake(stream)
        return str(sequence)

    # -- consuming ----------------------------------------------------------------------

    async def ensure_group(self, destination: str, group: str) -> None:
        stream = self._stream(check_name(destination, "destination"))
        self._group(stream, check_name(group, "group"))

    async def receive(
        self, destination: str, group: str, consumer: str, *, count: int = 10, wait: float = 1.0
    ) -> list[Delivery]:
        check_name(consumer, "consumer")
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        stream = self._stream(check_name(destination, "destination"))
        state = stream.groups.get(check_name(group, "group"))
        if state is None:
            raise TransportError(
                f"destination {destination!r} has no group {group!r}: call ensure_group first"
            )
        deadline = self._clock() + max(wait, 0.0)
        while True:
            deliveries = self._take(destination, group, state, stream, consumer, count)
            now = self._clock()
            if deliveries or now >= deadline:
                return deliveries
            timeout = min(deadline, self._next_due(state)) - now
            await self._wait(stream, max(timeout, 0.0))

    async def ack(self, delivery: Delivery) -> None:
        self._settle(delivery)

    async def retry(self, delivery: Delivery, *, delay: float, reason: str) -> None:
        settled = self._settle(delivery)
        if settled is None:
            return
        state, pending = settled
        due = self._clock() + max(delay, 0.0)
        heapq.heappush(
            state.scheduled, (due, next(self._sequence), pending.message, delivery.attempt + 1)
        )
        self._wake(self._stream(delivery.destination))

    async def dead_letter(self, delivery: Delivery, *, reason: str) -> None:
        settled = self._settle(delivery)
        if settled is None:
            return
        _, pending = settled
        sequence = next(self._sequence)
        self._stream(delivery.destination).dead[sequence] = DeadLetter(
            dead_letter_id=str(sequence),
            destination=delivery.destination,
            group=delivery.group,
            headers=pending.message.headers,
            body=pending.message.body,
            reason=safe_reason(reason),
            attempts=delivery.attempt,
            dead_lettered_at=datetime.now(UTC),
            original_delivery_id=delivery.delivery_id,
        )

    async def dead_letters(
        self, destination: str, *, limit: int = 50, after: str | None = None
    ) -> list[DeadLetter]:
        stream = self._stream(check_name(destination, "destination"))
        start = 0 if after is None else _sequence_of(after, "after")
        found = [letter for sequence, letter in sorted(stream.dead.items()) if sequence > start]
        return found[: max(limit, 0)]

    async def replay(self, dead_letter: DeadLetter) -> str:
        """Hand a dead letter back to the group that gave up on it, as a first attempt
        (other groups of the destination handled it already), and forget it."""
        stream = self._stream(check_name(dead_letter.destination, "destination"))
        sequence = _sequence_of(dead_letter.dead_letter_id, "dead_letter_id")
        kept = stream.dead.pop(sequence, None)
        if kept is None:
            raise LookupError(
                f"{dead_letter.destination!r} has no dead letter {dead_letter.dead_letter_id!r} "
                "(replayed already?)"
            )
        state = self._group(stream, kept.group)
        replayed = next(self._sequence)
        heapq.heappush(
            state.scheduled, (self._clock(), replayed, _Message(kept.headers, kept.body), 1)
        )
        self._wake(stream)
        return str(replayed)

    async def lag(self, destination: str, group: str) -> int:
        stream = self._stream(check_name(destination, "destination"))
        state = stream.groups.get(check_name(group, "group"))
        if state is None:
            raise TransportError(f"destination {destination!r} has no group {group!r}")
        unread = sum(1 for sequence, _ in stream.entries if sequence >= state.cursor)
        return len(state.pending) + unread + len(state.scheduled)

    async def close(self) -> None:
        self._closed = True
        for stream in self._streams.values():
            self._wake(stream)

    # -- internals ----------------------------------------------------------------------

    def _stream(self, destination: str) -> _Stream:
        if self._closed:
            raise TransportError("the memory transport is closed")
        stream = self._streams.get(destination)
        if stream is None:
            stream = self._streams[destination] = _Stream()
        return stream

    def _group(self, stream: _Stream, group: str) -> _Group:
        state = stream.groups.get(group)
        if state is None:
            last = stream.entries[-1][0] if stream.entries else 0
            # A new group starts after what was published before it (Redis's "$").
            state = stream.groups[group] = _Group(cursor=max(last + 1, 1))
        return state

    def _take(
        self,
        destination: str,
        group: str,
        state: _Group,
        stream: _Stream,
        consumer: str,
        count: int,
    ) -> list[Delivery]:
        now = self._clock()
        received_at = datetime.now(UTC)
        taken: list[Delivery] = []

        def deliver(delivery_id: str, message: _Message, attempt: int) -> None:
            state.pending[delivery_id] = _Pending(message, attempt, consumer, now)
            taken.append(
                Delivery(
                    transport=self.name,
                    destination=destination,
                    group=group,
                    delivery_id=delivery_id,
                    headers=message.headers,
                    body=message.body,
                    attempt=attempt,
                    received_at=received_at,
                )
            )

        # 1. deliveries a consumer left pending too long (it died): delivered again
        for delivery_id, pending in list(state.pending.items()):
            if len(taken) >= count:
                return taken
            if now - pending.delivered_at >= self.claim_idle:
                deliver(delivery_id, pending.message, pending.attempt + 1)
        # 2. retries and replays that are due
        while state.scheduled and state.scheduled[0][0] <= now and len(taken) < count:
            _, sequence, message, attempt = heapq.heappop(state.scheduled)
            deliver(str(sequence), message, attempt)
        # 3. new messages
        for sequence, message in stream.entries:
            if len(taken) >= count:
                break
            if sequence >= state.cursor:
                state.cursor = sequence + 1
                deliver(str(sequence), message, 1)
        return taken

    def _next_due(self, state: _Group) -> float:
        """When something of the group becomes deliverable without a publish."""
        due = state.scheduled[0][0] if state.scheduled else float("inf")
        for pending in state.pending.values():
            due = min(due, pending.delivered_at + self.claim_idle)
        return due

    def _settle(self, delivery: Delivery) -> tuple[_Group, _Pending] | None:
        stream = self._streams.get(delivery.destination)
        state = None if stream is None else stream.groups.get(delivery.group)
        if state is None:
            return None
        pending = state.pending.pop(delivery.delivery_id, None)
        return None if pending is None else (state, pending)

    async def _wait(self, stream: _Stream, seconds: float) -> None:
        """Until something is published, retried or replayed, or ``seconds`` pass."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stream.waiters.add(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except TimeoutError:
            pass
        finally:
            stream.waiters.discard(waiter)

    @staticmethod
    def _wake(stream: _Stream) -> None:
        for waiter in stream.waiters:
            if not waiter.done():
                waiter.set_result(None)


def _sequence_of(identifier: str, what: str) -> int:
    if not (isinstance(identifier, str) and identifier.isdigit() and len(identifier) < 20):
        raise ValueError(f"{what}: not an id of the memory transport: {identifier!r:.40}")
    return int(identifier)
