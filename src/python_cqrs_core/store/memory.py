"""The in-process message store (``memory://``): dicts and indexes, nothing on disk.

For tests, demos and notebooks.  It behaves exactly like the durable backends (it
passes the same contract, :mod:`python_cqrs_core.testing.store_contract`), and like
them answers traversal from indexes: one dict from message id to record, lists of
message ids per correlation id and per causation id, the list of records that open
a correlation, and the message ids in sorted order (for prefix lookups), so
traversal, summaries and prefix lookups never scan the store.  Filters of
:meth:`~MemoryStore.read` are tested record by record from ``after`` on.

>>> import asyncio
>>> store = MemoryStore()
>>> asyncio.run(store.by_correlation("nothing-here"))
[]
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from ..validation import validate_correlation_id
from .base import MessageStore, StoreWriteError
from .feed import CorrelationSummary, RecordFilter
from .records import MessageRecord, id_text

__all__ = ["MemoryStore"]


class MemoryStore(MessageStore):
    """A :class:`~python_cqrs_core.store.MessageStore` held in memory.

    Each instance is a separate, initially empty store; it is lost with the process.
    One opened read-only stays empty (there is nothing to read that it did not write).
    """

    def __init__(self, url: str = "memory://", *, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        # Records as appended, keyed by their message id as an int (hashed in C, unlike
        # a UUID); their position is applied when first read (copying a frozen record
        # on every append would be the store's main cost).  Positions are 1, 2, 3...:
        # the record at position p is the key _order[p - 1].
        self._records: dict[int, MessageRecord] = {}
        self._positions: dict[int, int] = {}
        self._order: list[int] = []
        self._by_correlation: dict[str, list[int]] = {}
        self._by_causation: dict[str, list[int]] = {}
        self._openings: list[int] = []  # positions of the first record of each correlation
        # The message ids in order, for prefix lookups: the first _sorted_count
        # records of _order, merged in (one sort of a sorted run plus the new ones)
        # when a lookup comes, so that appends do not pay for it.
        self._sorted_ids: list[int] = []
        self._sorted_count = 0
        self._closed = False

    @classmethod
    async def open(
        cls, url: str = "memory://", *, read_only: bool = False, **options: Any
    ) -> MemoryStore:
        """A new, empty store (``open_store("memory://")``); it takes no options."""
        if options:
            raise TypeError(f"memory:// takes no options, got {sorted(options)}")
        return cls(url, read_only=read_only)

    async def append(self, records: Sequence[MessageRecord]) -> None:
        self._check_open()
        self.check_writable()
        keys = [record.message_id.int for record in records]
        stored = self._records
        # Validate the whole batch first: all or nothing.
        if len(set(keys)) != len(keys):
            raise StoreWriteError("the batch holds the same message_id twice")
        for key in keys:
            if key in stored:
                raise StoreWriteError(f"message {UUID(int=key)} is already stored")
        positions, order = self._positions, self._order
        by_correlation, by_causation = self._by_correlation, self._by_causation
        position = len(order)
        for key, record in zip(keys, records, strict=True):
            position += 1
            stored[key] = record
            positions[key] = position
            order.append(key)
            correlation = by_correlation.get(record.correlation_id)
            if correlation is None:
                by_correlation[record.correlation_id] = [key]
                self._openings.append(position)
            else:
                correlation.append(key)
            cause = record.causation_id
            if cause is not None:
                children = by_causation.get(cause)
                if children is None:
                    by_causation[cause] = [key]
                else:
                    children.append(key)

    async def get(self, message_id: UUID | str) -> MessageRecord | None:
        self._check_open()
        key = _key(message_id)
        return self._read(key) if key in self._records else None

    async def by_correlation(self, correlation_id: str | UUID) -> list[MessageRecord]:
        self._check_open()
        keys = self._by_correlation.get(id_text(correlation_id), ())
        return [self._read(key) for key in keys]

    async def trace_causation(self, message_id: UUID | str) -> list[MessageRecord]:
        self._check_open()
        chain: list[MessageRecord] = []
        seen: set[int] = set()
        key: int | None = _key(message_id)
        while key is not None and key in self._records and key not in seen:
            seen.add(key)
            record = self._read(key)
            chain.append(record)
            key = None if record.causation_id is None else _key(record.causation_id)
        chain.reverse()
        return chain

    async def trace_effects(self, message_id: UUID | str) -> list[MessageRecord]:
        self._check_open()
        start = _key(message_id)
        if start not in self._records:
            return []
        seen = {start}
        found: list[int] = []
        frontier = [start]
        while frontier:
            parent = str(UUID(int=frontier.pop()))
            for key in self._by_causation.get(parent, ()):
                if key not in seen:
                    seen.add(key)
                    found.append(key)
                    frontier.append(key)
        found.sort(key=self._positions.__getitem__)
        return [self._read(key) for key in found]

    async def fetch_message_ids(self, low: UUID, high: UUID, limit: int) -> list[UUID]:
        self._check_open()
        order, ids = self._order, self._sorted_ids
        if self._sorted_count < len(order):
            ids += order[self._sorted_count :]
            ids.sort()
            self._sorted_count = len(order)
        matching = ids[bisect_left(ids, low.int) : bisect_right(ids, high.int)]
        matching.sort(key=self._positions.__getitem__)
        return [UUID(int=key) for key in matching[:limit]]

    async def fetch_records(
        self, after: int, limit: int, where: RecordFilter
    ) -> list[MessageRecord]:
        self._check_open()
        found: list[MessageRecord] = []
        for key in self._order[after:]:
            record = self._read(key)
            if where.is_empty or where.matches(record):
                found.append(record)
                if len(found) == limit:
                    break
        return found

    async def last_position(self) -> int:
        self._check_open()
        return len(self._order)

    async def fetch_correlations(
        self, limit: int, before: int | None, where: RecordFilter
    ) -> list[CorrelationSummary]:
        self._check_open()
        openings = self._openings
        end = len(openings) if before is None else bisect_left(openings, before)
        summaries: list[CorrelationSummary] = []
        for index in range(end - 1, -1, -1):
            opening = self._read(self._order[openings[index] - 1])
            summary = CorrelationSummary.of(
                [self._read(key) for key in self._by_correlation[opening.correlation_id]]
            )
            if where.is_empty or where.matches(opening, outcome=summary.outcome):
                summaries.append(summary)
                if len(summaries) == limit:
                    break
        return summaries

    async def close(self) -> None:
        self._closed = True

    def __len__(self) -> int:
        """The number of stored records."""
        return len(self._records)

    def _read(self, key: int) -> MessageRecord:
        record, position = self._records[key], self._positions[key]
        if record.position != position:
            record = self._records[key] = dataclasses.replace(record, position=position)
        return record

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")


def _key(message_id: UUID | str) -> int:
    """The key of a message id given as a UUID or text; ``-1`` (never stored) for
    text that is not a UUID."""
    if type(message_id) is UUID:
        return message_id.int
    try:
        found = validate_correlation_id(message_id)
    except ValueError:
        return -1
    return found.int if type(found) is UUID else -1
