"""What the relay needs of an outbox table: claim, mark, retry, report.

Each SQL backend implements :class:`OutboxStorage` on its own connection (never the
application's): :class:`~python_cqrs_core.outbox.postgres.PostgresOutbox` and
:class:`~python_cqrs_core.outbox.sqlite.SQLiteOutbox`.

**Claims.**  A relay *claims* entries before publishing them: it writes its id in
``claimed_by`` and a lease in ``claimed_until``, in a short transaction of its own
(PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: under the database write lock).  An
entry claimed by a live lease is not claimed again, so relays running side by side
publish different entries; a relay that dies leaves its leases to run out, after which
the entries are claimed again (and published again: at least once).

**Order per correlation id.**  Only the *head* of a correlation, its oldest entry not
delivered yet, can be claimed, together with the pending entries that follow it (a
*run*, in order).  Whoever holds a correlation's head holds the whole correlation, so
two relays never publish entries of one correlation at the same time, and an entry is
published only after every older entry of its correlation was delivered.  A failed
entry stays the head of its correlation: the entries behind it wait until it is
retried (:meth:`OutboxStorage.retry_failed`), rather than overtake it.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from .schema import EntryStatus

__all__ = ["OutboxEntry", "OutboxStorage"]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One row of ``cqrs_outbox``, as the relay reads it."""

    position: int
    message_id: str
    message_type: str
    destination: str
    correlation_id: str
    causation_id: str | None
    headers: Mapping[str, str]
    body: bytes
    status: EntryStatus
    attempts: int
    created_at: datetime
    last_error: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any], created_at: datetime) -> OutboxEntry:
        """An entry from a row of the backends' ``SELECT`` (columns in field order,
        ``headers`` as JSON text), with ``created_at`` as the backend decoded it."""
        return cls(
            position=row[0],
            message_id=row[1],
            message_type=row[2],
            destination=row[3],
            correlation_id=row[4],
            causation_id=row[5],
            headers=json.loads(row[6]),
            body=bytes(row[7]),
            status=row[8],
            attempts=row[9],
            created_at=created_at,
            last_error=row[11],
        )


class OutboxStorage(ABC):
    """An outbox table, as relays and operators use it (see the module docs).

    ``owner`` is a relay's id: only the relay holding a claim can settle it, so a
    relay whose lease ran out (and whose entries another relay claimed) changes
    nothing when it finally reports.
    """

    url: str
    """Where the table is (passwords masked), for messages."""

    async def __aenter__(self) -> OutboxStorage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    async def claim(
        self, owner: str, *, limit: int, run_limit: int, lease: float
    ) -> list[OutboxEntry]:
        """Claim, for ``lease`` seconds, the heads of up to ``limit`` correlations that
        are due, each with up to ``run_limit - 1`` pending entries following it; in
        position order."""

    @abstractmethod
    async def mark_delivered(self, owner: str, positions: Sequence[int]) -> int:
        """Mark the claimed entries delivered; returns how many were still ``owner``'s."""

    @abstractmethod
    async def release(self, owner: str, positions: Sequence[int]) -> None:
        """Give up the claims (the entries were not attempted)."""

    @abstractmethod
    async def record_failure(
        self, owner: str, position: int, error: str, *, retry_in: float, max_attempts: int
    ) -> EntryStatus | None:
        """Count a failed attempt: the entry is retried after ``retry_in`` seconds, or is
        ``failed`` once it made ``max_attempts`` attempts.  Returns the new status, or
        ``None`` when the claim was no longer ``owner``'s."""

    @abstractmethod
    async def backlog(self) -> int:
        """Entries waiting to be published (pending, claimed or not): the relay backlog
        metric."""

    @abstractmethod
    async def failed_entries(self, limit: int = 100) -> list[OutboxEntry]:
        """The failed entries, oldest first, with their last error."""

    @abstractmethod
    async def retry_failed(self, positions: Sequence[int] | None = None) -> int:
        """Make failed entries pending again (all of them, or those at ``positions``),
        with their attempts reset; returns how many."""

    @abstractmethod
    async def prune(self, *, delivered_before: datetime, handled_before: datetime) -> int:
        """Delete entries delivered before ``delivered_before`` and inbox marks made
        before ``handled_before``; returns how many rows went.  A redelivery of a
        message whose mark was pruned is handled again: keep marks longer than the
        broker can redeliver."""

    @abstractmethod
    async def close(self) -> None:
        """Release the connections; idempotent."""
