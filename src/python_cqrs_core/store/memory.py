"""The in-process message store (``memory://``): lists and indexes, nothing on disk.

For tests, demos and notebooks.  It behaves exactly like the durable backends (it
passes the same contract, :mod:`python_cqrs_core.testing.store_contract`), and like
them answers traversal from indexes: the records in position order, a dict from
message id to position, lists of positions per correlation id and per causation id,
the positions of the records that open a correlation, and the message ids in sorted
order (for prefix lookups), so traversal, summaries and prefix lookups never scan the
store.  Deliveries are kept in their recorded order, with lists of positions per
message id and per correlation id.  Filters of :meth:`~MemoryStore.read` are tested
record by record from ``after`` on.

An append only checks the batch and takes it in: the records are escaped where they
must be (:func:`~python_cqrs_core.store.records.storable`), given their position and
indexed by the first read that comes after it, for every record appended since.  So
recording costs the least, and a read pays once for what was appended before it.

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
from .base import MessageStore, Statement, StoreWriteError, url_without_password
from .feed import CorrelationSummary, RecordFilter
from .records import DeliveryRecord, MessageRecord, id_text, storable, storable_delivery

__all__ = ["MemoryStore"]


class MemoryStore(MessageStore):
    """A :class:`~python_cqrs_core.store.MessageStore` held in memory.

    Each instance is a separate, initially empty store; it is lost with the process.
    One opened read-only stays empty (there is nothing to read that it did not write).
    """

    def __init__(self, url: str = "memory://", *, read_only: bool = False) -> None:
        self.url = url_without_password(url)
        self.read_only = read_only
        # Positions are 1, 2, 3...  Message ids are keyed by their int (hashed in C,
        # unlike a UUID).
        self._positions: dict[int, int] = {}  # message id -> position
        self._appended: list[MessageRecord] = []  # as given, not yet read
        # What the reads use, brought up to date by _catch_up: the stored records
        # (the record at position p is _records[p - 1]) and the indexes.
        self._records: list[MessageRecord] = []
        self._by_correlation: dict[str, list[int]] = {}  # -> positions
        self._by_causation: dict[str, list[int]] = {}  # -> positions
        self._openings: list[int] = []  # positions of the first record of each correlation
        self._sorted_ids: list[int] = []  # message ids in order, for prefix lookups
        # Deliveries, stored at once (a consumed message has one per attempt): the
        # delivery at position p is _deliveries[p - 1].
        self._deliveries: list[DeliveryRecord] = []
        self._deliveries_of: dict[int, list[int]] = {}  # message id -> positions
        self._deliveries_by_correlation: dict[str, list[int]] = {}  # -> positions
        self._closed = False

    @classmethod
    async def open(
        cls, url: str = "memory://", *, read_only: bool = False, **options: Any
    ) -> MemoryStore:
        """A new, empty store (``open_store("memory://")``); it takes no options."""
        if options:
            raise TypeError(f"memory:// takes no options, got {sorted(options)}")
        return cls(url, read_only=read_only)

    async def append(
        self,
        records: Sequence[MessageRecord],
        *,
        received: Sequence[MessageRecord] = (),
        deliveries: Sequence[DeliveryRecord] = (),
        statements: Sequence[Statement] = (),
    ) -> None:
        self._check_open()
        self.check_writable()
        if statements:
            self.check_statements(statements)
        positions = self._positions
        keys = [record.message_id.int for record in records]
        # Validate the whole batch first: all or nothing.
        if len(set(keys)) != len(keys):
            raise StoreWriteError("the batch holds the same message_id twice")
        for key in keys:
            if key in positions:
                raise StoreWriteError(f"message {UUID(int=key)} is already stored")
        if received:
            # Received first (a consumed message before its effects), if absent.
            taken = set(keys)
            absent: list[MessageRecord] = []
            for record in received:
                key = record.message_id.int
                if key not in positions and key not in taken:
                    taken.add(key)
                    absent.append(record)
            records = [*absent, *records]
            keys = [record.message_id.int for record in records]
        stored = [storable_delivery(delivery) for delivery in deliveries] if deliveries else None
        position = len(positions)
        for key in keys:
            position += 1
            positions[key] = position
        self._appended += records
        if stored:
            self._store_deliveries(stored)

    def _store_deliveries(self, deliveries: list[DeliveryRecord]) -> None:
        kept, of, by_correlation = (
            self._deliveries,
            self._deliveries_of,
            self._deliveries_by_correlation,
        )
        for delivery in deliveries:
            position = len(kept) + 1
            if delivery.position != position:
                delivery = dataclasses.replace(delivery, position=position)
            kept.append(delivery)
            of.setdefault(delivery.message_id.int, []).append(position)
            by_correlation.setdefault(delivery.correlation_id, []).append(position)

    def _catch_up(self) -> None:
        """Store and index the records appended since the last read: escaped as the
        SQL stores escape them, with their position (copying a frozen record on every
        append would be the store's main cost)."""
        self._check_open()
        appended = self._appended
        if not appended:
            return
        self._appended = []
        stored, by_correlation, by_causation = (
            self._records,
            self._by_correlation,
            self._by_causation,
        )
        position = len(stored)
        for given in appended:
            position += 1
            record = storable(given)
            if record.position != position:
                record = dataclasses.replace(record, position=position)
            stored.append(record)
            correlation = by_correlation.get(record.correlation_id)
            if correlation is None:
                by_correlation[record.correlation_id] = [position]
                self._openings.append(position)
            else:
                correlation.append(position)
            if record.causation_id is not None:
                by_causation.setdefault(record.causation_id, []).append(position)

    def _at(self, positions: Sequence[int]) -> list[MessageRecord]:
        stored = self._records
        return [stored[position - 1] for position in positions]

    async def get(self, message_id: UUID | str) -> MessageRecord | None:
        self._catch_up()
        position = self._positions.get(_key(message_id))
        return None if position is None else self._records[position - 1]

    async def by_correlation(self, correlation_id: str | UUID) -> list[MessageRecord]:
        self._catch_up()
        return self._at(self._by_correlation.get(id_text(correlation_id), ()))

    async def trace_causation(self, message_id: UUID | str) -> list[MessageRecord]:
        self._catch_up()
        chain: list[MessageRecord] = []
        seen: set[int] = set()
        position = self._positions.get(_key(message_id))
        while position is not None and position not in seen:
            seen.add(position)
            record = self._records[position - 1]
            chain.append(record)
            cause = record.causation_id
            position = None if cause is None else self._positions.get(_key(cause))
        chain.reverse()
        return chain

    async def trace_effects(self, message_id: UUID | str) -> list[MessageRecord]:
        self._catch_up()
        start = self._positions.get(_key(message_id))
        if start is None:
            return []
        seen = {start}
        found: list[int] = []
        frontier = [start]
        while frontier:
            parent = str(self._records[frontier.pop() - 1].message_id)
            for position in self._by_causation.get(parent, ()):
                if position not in seen:
                    seen.add(position)
                    found.append(position)
                    frontier.append(position)
        found.sort()
        return self._at(found)

    async def fetch_message_ids(self, low: UUID, high: UUID, limit: int) -> list[UUID]:
        self._catch_up()
        ids, positions = self._sorted_ids, self._positions
        if len(ids) < len(positions):
            # The ids appended since: one sort of a sorted run plus the new ones.
            ids += [record.message_id.int for record in self._records[len(ids) :]]
            ids.sort()
        matching = ids[bisect_left(ids, low.int) : bisect_right(ids, high.int)]
        matching.sort(key=positions.__getitem__)
        return [UUID(int=key) for key in matching[:limit]]

    async def fetch_records(
        self, after: int, limit: int, where: RecordFilter
    ) -> list[MessageRecord]:
        self._catch_up()
        found: list[MessageRecord] = []
        for record in self._records[after:]:
            if where.is_empty or where.matches(record):
                found.append(record)
                if len(found) == limit:
                    break
        return found

    async def last_position(self) -> int:
        self._check_open()
        return len(self._positions)

    async def fetch_deliveries_of(self, message_ids: list[str]) -> list[DeliveryRecord]:
        self._check_open()
        found: list[int] = []
        for text in message_ids:
            found += self._deliveries_of.get(_key(text), ())
        found.sort()
        return self._delivered(found)

    async def deliveries_by_correlation(self, correlation_id: str | UUID) -> list[DeliveryRecord]:
        self._check_open()
        return self._delivered(self._deliveries_by_correlation.get(id_text(correlation_id), ()))

    async def fetch_deliveries(self, after: int, limit: int) -> list[DeliveryRecord]:
        self._check_open()
        return self._deliveries[after : after + limit]

    def _delivered(self, positions: Sequence[int]) -> list[DeliveryRecord]:
        kept = self._deliveries
        return [kept[position - 1] for position in positions]

    async def fetch_correlations(
        self, limit: int, before: int | None, where: RecordFilter
    ) -> list[CorrelationSummary]:
        self._catch_up()
        openings = self._openings
        end = len(openings) if before is None else bisect_left(openings, before)
        summaries: list[CorrelationSummary] = []
        for index in range(end - 1, -1, -1):
            opening = self._records[openings[index] - 1]
            correlation = opening.correlation_id
            summary = CorrelationSummary.of(
                self._at(self._by_correlation[correlation]),
                self._delivered(self._deliveries_by_correlation.get(correlation, ())),
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
        return len(self._positions)

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
