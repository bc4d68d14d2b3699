"""The in-process message store (``memory://``): dicts and indexes, nothing on disk.

For tests, demos and notebooks.  It behaves exactly like the durable backends (it
passes the same behaviour suite), and like them answers traversal from indexes:
one dict from message id to record, and lists of message ids per correlation id and
per causation id, so no query ever scans the store.

>>> import asyncio
>>> store = MemoryStore()
>>> asyncio.run(store.by_correlation("nothing-here"))
[]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from .base import MessageStore, StoreWriteError
from .records import MessageRecord, id_text, order_chain

__all__ = ["MemoryStore"]


class MemoryStore(MessageStore):
    """A :class:`~python_cqrs_core.store.MessageStore` held in memory.

    Each instance is a separate, initially empty store; it is lost with the process.
    """

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        # Records as appended; their position is applied when first read (copying a
        # frozen record on every append would be the store's main cost).
        self._records: dict[str, MessageRecord] = {}
        self._positions: dict[str, int] = {}
        self._by_correlation: dict[str, list[str]] = {}
        self._by_causation: dict[str, list[str]] = {}
        # correlation id -> [first recorded_at, message count], in first-seen order
        self._correlations: dict[str, tuple[datetime, int]] = {}
        self._closed = False

    async def append(self, records: Sequence[MessageRecord]) -> None:
        self._check_open()
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
            self._by_correlation.setdefault(record.correlation_id, []).append(key)
            if record.causation_id is not None:
                self._by_causation.setdefault(record.causation_id, []).append(key)
            first, count = self._correlations.get(record.correlation_id, (record.recorded_at, 0))
            self._correlations[record.correlation_id] = (first, count + 1)

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

    async def recent_correlations(self, limit: int = 20) -> list[tuple[str, datetime, int]]:
        self._check_open()
        if limit <= 0:
            return []
        newest = list(self._correlations.items())[-limit:]  # insertion order = first seen
        newest.reverse()
        return [(cid, first, count) for cid, (first, count) in newest]

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
