"""The in-process message store (``memory://``): dicts and indexes, nothing on disk.

For tests, demos and notebooks.  It behaves exactly like the durable backends (it
passes the same contract, :mod:`python_cqrs_core.testing.store_contract`), and like
them answers traversal from indexes: one dict from message id to record, lists of
message ids per correlation id and per causation id, and the list of records that
open a correlation, so traversal and summaries never scan the store.  Filters of
:meth:`~MemoryStore.read` are tested record by record from ``after`` on.

>>> import asyncio
>>> store = MemoryStore()
>>> asyncio.run(store.by_correlation("nothing-here"))
[]
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from .base import MessageStore, StoreWriteError
from .feed import CorrelationSummary, RecordFilter
from .records import MessageRecord, id_text, order_chain

__all__ = ["MemoryStore"]


class MemoryStore(MessageStore):
    """A :class:`~python_cqrs_core.store.MessageStore` held in memory.

    Each instance is a separate, initially empty store; it is lost with the process.
    One opened read-only stays empty (there is nothing to read that it did not write).
    """

    def __init__(self, url: str = "memory://", *, read_only: bool = False) -> None:
        self.url = url
        self.read_only = read_only
        # Records as appended; their position is applied when first read (copying a
        # frozen record on every append would be the store's main cost).  Positions
        # are 1, 2, 3...: the record at position p is the key _order[p - 1].
        self._records: dict[str, MessageRecord] = {}
        self._positions: dict[str, int] = {}
        self._order: list[str] = []
        self._by_correlation: dict[str, list[str]] = {}
        self._by_causation: dict[str, list[str]] = {}
        self._openings: list[int] = []  # positions of the first record of each correlation
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
        keys = [str(record.message_id) for record in records]
        # Validate the whole batch first: all or nothing.
        if len(set(keys)) != len(keys):
            raise StoreWriteError("the batch holds the same message_id twice")
        for key in keys:
            if key in self._records:
                raise StoreWriteError(f"message {key} is already stored")
        position = len(self._records)
        for key, record in zip(keys, records, strict=True):
            position += 1
            self._records[key] = record
            self._positions[key] = position
            self._order.append(key)
            correlation = self._by_correlation.get(record.correlation_id)
            if correlation is None:
                self._by_correlation[record.correlation_id] = [key]
                self._openings.append(position)
            else:
                correlation.append(key)
            if record.causation_id is not None:
                self._by_causation.setdefault(record.causation_id, []).append(key)

    async def get(self, message_id: UUID | str) -> MessageRecord | None:
        self._check_open()
        key = id_text(message_id)
        return self._read(key) if key in self._records else None

    async def by_correlation(self, correlation_id: str | UUID) -> list[MessageRecord]:
        self._check_open()
        keys = self._by_correlation.get(id_text(correlation_id), ())
        return [self._read(key) for key in keys]

    async def trace_causation(self, message_id: UUID | str) -> list[MessageRecord]:
        self._check_open()
        return [self._read(str(r.message_id)) for r in order_chain(message_id, self._records)]

    async def trace_effects(self, message_id: UUID | str) -> list[MessageRecord]:
        self._check_open()
        start = id_text(message_id)
        if start not in self._records:
            return []
        seen = {start}
        found: list[str] = []
        frontier = [start]
        while frontier:
            parent = frontier.pop()
            for key in self._by_causation.get(parent, ()):
                if key not in seen:
                    seen.add(key)
                    found.append(key)
                    frontier.append(key)
        found.sort(key=self._positions.__getitem__)
        return [self._read(key) for key in found]

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

    def _read(self, key: str) -> MessageRecord:
        record, position = self._records[key], self._positions[key]
        if record.position != position:
            record = self._records[key] = dataclasses.replace(record, position=position)
        return record

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
