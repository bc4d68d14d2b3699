"""Reading the store as a feed: which records a filter selects, and what a summary of a
business operation holds.

:meth:`~python_cqrs_core.store.MessageStore.read` pages through every record in
recorded order (``after`` a position, as a live web page or an outbox relay resumes),
and :meth:`~python_cqrs_core.store.MessageStore.correlations` lists business
operations newest first, one :class:`CorrelationSummary` each.  Both take the same
filters, checked once here as a :class:`RecordFilter`, so every backend receives
values it can trust::

    >>> from datetime import UTC, datetime
    >>> RecordFilter(requested_by="user:alice", outcome="failed").is_empty
    False
    >>> RecordFilter(outcome="maybe")
    Traceback (most recent call last):
        ...
    ValueError: outcome must be 'succeeded' or 'failed', got 'maybe'
    >>> RecordFilter(since=datetime(2026, 1, 2, tzinfo=UTC), until=datetime(2026, 1, 1, tzinfo=UTC))
    Traceback (most recent call last):
        ...
    ValueError: since (2026-01-02 00:00:00+00:00) must be before until (2026-01-01 00:00:00+00:00)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast
from uuid import UUID

from ..messages import MessageKind
from ..validation import validate_requested_by, validate_type_name
from .records import DeliveryRecord, MessageRecord, Outcome, failing_deliveries

__all__ = [
    "MAX_LIMIT",
    "CorrelationSummary",
    "RecordFilter",
    "check_after",
    "check_before",
    "check_limit",
]

MAX_LIMIT: Final = 10_000
"""The most records (or summaries) one call returns; page with ``after``/``before``."""

_OUTCOMES: Final = ("succeeded", "failed")
_KINDS: Final = ("command", "query", "event")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_limit(limit: object) -> int:
    """``limit`` if it is a whole number from 1 to :data:`MAX_LIMIT`, else a
    :class:`ValueError` saying so."""
    if not _is_int(limit) or not 1 <= cast(int, limit) <= MAX_LIMIT:
        raise ValueError(
            f"limit must be a whole number from 1 to {MAX_LIMIT:,} (page with after= or "
            f"before= for more), got {limit!r}"
        )
    return cast(int, limit)


def check_after(after: object) -> int:
    """``after`` if it is a position (a whole number, 0 for "from the start")."""
    if not _is_int(after) or cast(int, after) < 0:
        raise ValueError(f"after must be a position, a whole number >= 0, got {after!r}")
    return cast(int, after)


def check_before(before: object) -> int | None:
    """``before`` if it is ``None`` (from the newest) or a position >= 1."""
    if before is None:
        return None
    if not _is_int(before) or cast(int, before) < 1:
        raise ValueError(f"before must be None or a position >= 1, got {before!r}")
    return cast(int, before)


def _name(field: str, value: object) -> str:
    try:
        return validate_type_name(value)
    except ValueError as exc:
        raise ValueError(f"{field} {exc}, got {value!r}") from None


def _moment(field: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{field} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{field} must be timezone-aware (e.g. datetime.now(UTC)), got the naive {value}"
        )
    return value


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Which records a :meth:`~python_cqrs_core.store.MessageStore.read` returns, or
    which operations :meth:`~python_cqrs_core.store.MessageStore.correlations` lists.

    Every field is optional (``None``: no condition); the conditions given must all
    hold.  Values are checked when the filter is built: a wrong one is a
    :class:`ValueError` naming the field.

    - ``requested_by``: exactly this ``requested_by``;
    - ``message_type``: exactly this stable type name (``"orders.PlaceOrder"``);
    - ``outcome``: ``"succeeded"`` or ``"failed"``;
    - ``kind``: ``"command"``, ``"query"`` or ``"event"``;
    - ``service``: recorded by this service (``MessageRecorder(service=...)``);
    - ``since`` / ``until``: recorded at or after ``since``, before ``until``
      (timezone-aware datetimes).

    For :meth:`~python_cqrs_core.store.MessageStore.read` every condition applies to
    each record.  For :meth:`~python_cqrs_core.store.MessageStore.correlations` they
    apply to the record that *opened* the operation (its first record, normally the
    root command), except ``outcome``, which is the outcome of the whole operation
    (``"failed"`` if any of its records failed, or a consumer group left one of its
    messages unhandled: see :class:`CorrelationSummary`).
    """

    requested_by: str | None = None
    message_type: str | None = None
    outcome: Outcome | None = None
    kind: MessageKind | None = None
    service: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.requested_by is not None:
            try:
                validate_requested_by(self.requested_by)
            except ValueError as exc:
                raise ValueError(f"requested_by {exc}") from None
        if self.message_type is not None:
            _name("message_type", self.message_type)
        if self.service is not None:
            _name("service", self.service)
        if self.outcome is not None and self.outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be 'succeeded' or 'failed', got {self.outcome!r}")
        if self.kind is not None and self.kind not in _KINDS:
            raise ValueError(f"kind must be 'command', 'query' or 'event', got {self.kind!r}")
        if self.since is not None:
            _moment("since", self.since)
        if self.until is not None:
            _moment("until", self.until)
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError(f"since ({self.since}) must be before until ({self.until})")

    @property
    def is_empty(self) -> bool:
        """True when the filter sets no condition (every record matches)."""
        return (
            self.requested_by is None
            and self.message_type is None
            and self.outcome is None
            and self.kind is None
            and self.service is None
            and self.since is None
            and self.until is None
        )

    def matches(self, record: MessageRecord, *, outcome: Outcome | None = None) -> bool:
        """Whether ``record`` meets every condition.

        ``outcome`` replaces the record's own outcome in the test: the summaries pass
        the outcome of the whole operation while testing the record that opened it.
        """
        if self.requested_by is not None and record.requested_by != self.requested_by:
            return False
        if self.message_type is not None and record.message_type != self.message_type:
            return False
        if self.outcome is not None and (outcome or record.outcome) != self.outcome:
            return False
        if self.kind is not None and record.kind != self.kind:
            return False
        if self.service is not None and record.service != self.service:
            return False
        if self.since is not None and record.recorded_at < self.since:
            return False
        return not (self.until is not None and record.recorded_at >= self.until)


@dataclass(frozen=True, slots=True)
class CorrelationSummary:
    """One business operation (one correlation id) at a glance, as
    :meth:`~python_cqrs_core.store.MessageStore.correlations` lists them.

    The *opening* record is the first record the store holds for the correlation id:
    normally the root command.  ``requested_by``, ``service`` and the ``root_*``
    fields are those of that record; the counts, times and ``outcome`` cover every
    record of the correlation.  ``position`` is the opening record's: pass the last
    summary's as ``before=`` to get the next (older) page.

    ``failed_count`` counts the failures of the operation: its records that failed,
    plus the deliveries that leave one of its messages unhandled by a consumer group
    (the latest delivery of the message to that group failed or was dead-lettered;
    see :func:`~python_cqrs_core.store.records.failing_deliveries`).  ``outcome`` is
    ``"failed"`` when there is any.  A record's own outcome is that of the dispatch
    that recorded it (the producer's, for a message other services consumed); what
    became of it in the consuming services is in its deliveries, so an event
    published fine and failing in another service fails the operation here.
    """

    correlation_id: str
    root_message_id: UUID
    root_message_type: str
    outcome: Outcome
    message_count: int
    failed_count: int
    first_recorded_at: datetime
    last_recorded_at: datetime
    requested_by: str | None
    service: str | None
    position: int

    @property
    def failed(self) -> bool:
        """True when any record of the operation failed, or a consumer group left one
        of its messages unhandled."""
        return self.outcome == "failed"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the id and datetimes as strings."""
        return {
            "correlation_id": self.correlation_id,
            "root_message_id": str(self.root_message_id),
            "root_message_type": self.root_message_type,
            "outcome": self.outcome,
            "message_count": self.message_count,
            "failed_count": self.failed_count,
            "first_recorded_at": self.first_recorded_at.isoformat(),
            "last_recorded_at": self.last_recorded_at.isoformat(),
            "requested_by": self.requested_by,
            "service": self.service,
            "position": self.position,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CorrelationSummary:
        """Rebuild a summary from :meth:`to_dict` output."""
        outcome = data["outcome"]
        if outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be 'succeeded' or 'failed', got {outcome!r}")
        return cls(
            correlation_id=str(data["correlation_id"]),
            root_message_id=UUID(str(data["root_message_id"])),
            root_message_type=str(data["root_message_type"]),
            outcome=outcome,
            message_count=int(data["message_count"]),
            failed_count=int(data["failed_count"]),
            first_recorded_at=datetime.fromisoformat(data["first_recorded_at"]),
            last_recorded_at=datetime.fromisoformat(data["last_recorded_at"]),
            requested_by=data.get("requested_by"),
            service=data.get("service"),
            position=int(data["position"]),
        )

    @classmethod
    def of(
        cls, records: list[MessageRecord], deliveries: Iterable[DeliveryRecord] = ()
    ) -> CorrelationSummary:
        """The summary of one correlation's records and deliveries, each given in
        recorded order (the first record is the opening record); what the memory store
        computes, and what the SQL backends compute in their query."""
        opening = records[0]
        failed = sum(record.outcome == "failed" for record in records)
        failed += len(failing_deliveries(deliveries))
        times = [record.recorded_at for record in records]
        return cls(
            correlation_id=opening.correlation_id,
            root_message_id=opening.message_id,
            root_message_type=opening.message_type,
            outcome="failed" if failed else "succeeded",
            message_count=len(records),
            failed_count=failed,
            first_recorded_at=min(times),
            last_recorded_at=max(times),
            requested_by=opening.requested_by,
            service=opening.service,
            position=cast(int, opening.position),
        )
