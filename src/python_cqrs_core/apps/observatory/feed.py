"""Following the store live, for every viewer at once, and reading it newest first.

**One reader, many viewers.**  :class:`FeedFollower` reads the store's feed
(:meth:`~python_cqrs_core.store.MessageStore.read` ``after`` its cursor) every
``poll_interval`` seconds and keeps the newest records in memory.  Each browser's
event stream (:func:`record_events`) is served from that memory, filtered there, so the
store answers one small query per interval whether one page or fifty are open: the
application that writes the store never feels the viewers.  It works the same on every
backend, and sees what other processes record (the feed's cursor is the store's order,
not this process's).

**Nothing lost, nothing twice.**  Each event carries the record's position as its
server-sent event ``id``.  A browser that reconnects sends the last one back
(``Last-Event-ID``), and the stream resumes after it: from memory when it still holds
those records, else from the store, then from memory again.  Positions grow in commit
order on every backend, so resuming after a position misses nothing.

**Newest first.**  The store's feed reads forwards.  :func:`newest_records` finds the
newest records that match a filter by probing the feed backwards, each probe a small
indexed read, so the timeline opens on the latest records however large the store is.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from ...names import LOGGER
from ...store import MessageRecord, MessageStore, RecordFilter

__all__ = [
    "FeedFollower",
    "SeenKey",
    "filter_arguments",
    "newest_records",
    "record_events",
]

logger = logging.getLogger(f"{LOGGER}.observatory")

SeenKey = tuple[str, str, str, str]
"""``(kind, message_type, outcome, service)`` of the records counted for ``/metrics``."""

_CATCH_UP_PAGE: Final = 500  # records one catch-up read of a resuming stream takes
_NO_SERVICE: Final = ""


def filter_arguments(where: RecordFilter) -> dict[str, Any]:
    """``where`` as the keyword arguments of
    :meth:`~python_cqrs_core.store.MessageStore.read`."""
    return {
        "requested_by": where.requested_by,
        "message_type": where.message_type,
        "outcome": where.outcome,
        "kind": where.kind,
        "service": where.service,
        "since": where.since,
        "until": where.until,
    }


class FeedFollower:
    """Follows a store's feed from the moment it starts, keeping the newest
    ``capacity`` records in memory for the live streams.

    ``start()`` sets its cursor at the store's last position and starts the polling
    task; ``close()`` stops it and ends every stream waiting on it.  A failing read
    (the database restarting) is logged once, counted in ``errors``, shown as
    ``error``, and retried every interval: the follower never stops on its own.

    ``seen`` counts the records followed by ``(kind, message_type, outcome,
    service)``, for ``/metrics``.
    """

    def __init__(
        self,
        store: MessageStore,
        *,
        poll_interval: float = 0.25,
        capacity: int = 20_000,
        page: int = 2_000,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(
                f"poll_interval must be a positive number of seconds, got {poll_interval}"
            )
        if capacity < page:
            raise ValueError(f"capacity ({capacity}) must hold at least one page ({page})")
        self.store = store
        self.poll_interval = poll_interval
        self.capacity = capacity
        self.page = page
        self.seen: Counter[SeenKey] = Counter()
        self.errors = 0
        self.error: str | None = None
        self.closed = False
        self._records: list[MessageRecord] = []
        self._positions: list[int] = []
        self._start_after = 0
        self._position = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def position(self) -> int:
        """The position of the newest record followed: the store's last position as of
        the latest poll."""
        return self._position

    @property
    def start_after(self) -> int:
        """Memory holds every record after this position (up to :attr:`position`)."""
        return self._start_after

    async def start(self) -> None:
        """Start following, from the store's current last position."""
        self._position = self._start_after = await self.store.last_position()
        self._task = asyncio.create_task(self._follow(), name="cqrs-observatory-feed")

    def stop(self) -> None:
        """End every stream (the server is stopping: its open connections must finish
        for it to stop quickly); the follower itself is stopped by :meth:`close`."""
        self.closed = True
        self._notify()

    async def close(self) -> None:
        """Stop following, and wake every stream so that it ends."""
        self.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def after(self, cursor: int) -> list[MessageRecord]:
        """The records in memory positioned after ``cursor``, oldest first."""
        return self._records[bisect.bisect_right(self._positions, cursor) :]

    async def wait(self, cursor: int, seconds: float) -> bool:
        """Wait until a record after ``cursor`` is followed, at most ``seconds``;
        ``True`` if one is (or the follower closed), ``False`` when time ran out."""
        changed = self._changed
        if self._position > cursor or self.closed:
            return True
        try:
            async with asyncio.timeout(seconds):
                await changed.wait()
        except TimeoutError:
            return False
        return True

    async def _follow(self) -> None:
        while True:
            try:
                batch = await self.store.read(self._position, limit=self.page)
            except Exception as exc:  # noqa: BLE001 - any failure of the store: retry
                self._failed(exc)
                await asyncio.sleep(self.poll_interval)
                continue
            if self.error is not None:
                logger.warning("the Observatory reads the message store again")
                self.error = None
            if batch:
                self._keep(batch)
            if len(batch) < self.page:
                await asyncio.sleep(self.poll_interval)

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if self.error is None:
            logger.warning(
                "the Observatory cannot read the message store %s (%s); retrying every %s s",
                self.store.url,
                type(exc).__name__,
                self.poll_interval,
            )
        self.error = f"cannot read the message store ({type(exc).__name__})"

    def _keep(self, batch: list[MessageRecord]) -> None:
        for record in batch:
            self.seen[
                (record.kind, record.message_type, record.outcome, record.service or _NO_SERVICE)
            ] += 1
        self._records.extend(batch)
        self._positions.extend(record.position or 0 for record in batch)
        self._position = self._positions[-1]
        excess = len(self._records) - self.capacity
        if excess > 0:
            self._start_after = self._positions[excess - 1]
            del self._records[:excess]
            del self._positions[:excess]
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


def _frame(record: MessageRecord, view: Callable[[MessageRecord], dict[str, Any]]) -> str:
    """One server-sent event: ``id`` is the record's position, ``data`` its view as
    one line of JSON (``ensure_ascii``: no character of stored text can end a line)."""
    return f"id: {record.position}\nevent: record\ndata: {json.dumps(view(record))}\n\n"


async def record_events(
    follower: FeedFollower,
    after: int,
    where: RecordFilter,
    view: Callable[[MessageRecord], dict[str, Any]],
    *,
    heartbeat: float = 15.0,
    retry_ms: int = 1_000,
) -> AsyncIterator[str]:
    """The server-sent events of the records after position ``after`` that match
    ``where``, oldest first, then live as they are recorded; ends when ``follower``
    closes.

    Records still in the follower's memory are served from there; older ones (a
    browser resuming after a long disconnection, or after a burst larger than the
    memory) are read from the store first, a page at a time.  A comment line is sent
    after ``heartbeat`` seconds of silence, so proxies keep the connection and a
    vanished client is noticed.  ``view`` turns a record into its JSON.
    """
    yield f"retry: {retry_ms}\n\n"
    scanned = after  # every matching record up to here was sent
    arguments = filter_arguments(where)
    while not follower.closed:
        if scanned < follower.start_after:
            ceiling = follower.position
            page = await follower.store.read(scanned, limit=_CATCH_UP_PAGE, **arguments)
            for record in page:
                yield _frame(record, view)
            # An empty page: nothing matches after ``scanned`` in the store, which holds
            # at least everything the follower had read before the page was asked for.
            scanned = (page[-1].position or scanned) if page else max(scanned, ceiling)
            continue
        fresh = follower.after(scanned)
        if fresh:
            for record in fresh:
                if where.matches(record):
                    yield _frame(record, view)
            scanned = fresh[-1].position or scanned
            continue
        if not await follower.wait(scanned, heartbeat):
            yield ": keep-alive\n\n"


async def newest_records(
    store: MessageStore, limit: int, before: int | None, where: RecordFilter
) -> list[MessageRecord]:
    """The newest ``limit`` records that match ``where`` and are positioned before
    ``before`` (``None``: the newest of all), newest first.

    The feed reads forwards from a position, so this looks for the position ``a``
    after which exactly ``limit`` matching records remain below the ceiling: a first
    probe ``limit`` positions down (enough when nothing is filtered out), then
    steps four times longer, then halving.  Each probe is one indexed
    :meth:`~python_cqrs_core.store.MessageStore.read` of at most ``limit + 1``
    records, and a sparse filter costs a few dozen of them on a store of millions.
    """
    if not 1 <= limit < 10_000:
        raise ValueError(f"limit must be a whole number from 1 to 9,999, got {limit}")
    ceiling = await store.last_position() if before is None else before - 1
    arguments = filter_arguments(where)

    async def probe(after: int) -> list[MessageRecord]:
        page = await store.read(after, limit=limit + 1, **arguments)
        return [record for record in page if (record.position or 0) <= ceiling]

    if ceiling <= 0:
        return []
    low, high = 0, ceiling  # too many after ``low`` (or it is 0); too few after ``high``
    step = limit
    while True:
        candidate = max(ceiling - step, 0)
        found = await probe(candidate)
        if len(found) == limit or (candidate == 0 and len(found) < limit):
            return found[::-1]
        if len(found) > limit:
            low = candidate
            break
        high = candidate
        if candidate == 0:
            return found[::-1]
        step *= 4
    while high - low > 1:
        middle = (low + high) // 2
        found = await probe(middle)
        if len(found) == limit:
            return found[::-1]
        if len(found) > limit:
            low = middle
        else:
            high = middle
    # Unreachable with a consistent store (one position apart, the counts differ by
    # at most one); a store answering inconsistently still gets a page, not a loop.
    return (await probe(high))[::-1]
