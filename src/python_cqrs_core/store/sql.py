r"""The feed's SQL, shared by the SQLite and PostgreSQL stores: one builder of
:meth:`~python_cqrs_core.store.MessageStore.read` and
:meth:`~python_cqrs_core.store.MessageStore.correlations` queries for both dialects.

Every value is a parameter (``?`` for SQLite, ``$1``... for PostgreSQL); the only
text put into the SQL is column names and the two outcome words, taken from the
checked :class:`~python_cqrs_core.store.feed.RecordFilter`, never from the caller.
The outcome is written as a literal so that the planner can use the partial index of
failed records (a bound parameter would hide which value it is).

Which index serves which filter is listed in
:mod:`python_cqrs_core.store.migrations`; ``tests/store/test_query_plans.py`` pins it
with ``EXPLAIN``.

>>> sql, params = feed_query("*", SQLITE, 2, after=10, limit=50,
...                          where=RecordFilter(requested_by="ada", outcome="failed"))
>>> print(sql.replace(" AND ", "\n    AND "))
SELECT * FROM cqrs_messages WHERE position > ?
    AND requested_by = ?
    AND outcome = 'failed' ORDER BY position LIMIT ?
>>> params
[10, 'ada', 50]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from uuid import UUID

from .columns import COLUMNS, POSTGRES, SQLITE, TIME, Dialect
from .feed import CorrelationSummary, RecordFilter
from .migrations import DELIVERIES_SINCE

__all__ = ["FAILING_DELIVERY", "feed_query", "summaries_query", "summary_from_row"]

_SINCE: Final = {column.name: column.since for column in COLUMNS}
# Filters compared for equality, in the order they are written into the SQL.
_EQUALITY: Final = ("requested_by", "message_type", "kind", "service")

FAILING_DELIVERY: Final = (
    "d.outcome IN ('failed', 'dead_lettered') AND NOT EXISTS (SELECT 1 FROM cqrs_deliveries "
    "AS l WHERE l.message_id = d.message_id AND l.consumer_group = d.consumer_group "
    "AND l.position > d.position)"
)
"""The condition on a delivery ``d`` that leaves its message unhandled by its group:
it failed or was dead-lettered, and no later delivery of the message to the group was
recorded (:func:`~python_cqrs_core.store.records.failing_deliveries`, in SQL)."""


class _Parameters:
    """Collects parameter values, giving each its placeholder in the dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return "?" if self.dialect == SQLITE else f"${len(self.values)}"


def _conditions(where: RecordFilter, version: int, parameter: _Parameters, alias: str) -> list[str]:
    """The conditions of ``where`` on one record, except its outcome.

    A column the store's schema ``version`` lacks holds its default (``NULL``) in
    every record, so a condition on it selects nothing, as it should.
    """
    found: list[str] = []
    for name in _EQUALITY:
        value = getattr(where, name)
        if value is not None:
            column = f"{alias}{name}" if _SINCE[name] <= version else "NULL"
            found.append(f"{column} = {parameter(value)}")
    encode = TIME.encoder(parameter.dialect) or (lambda moment: moment)
    if where.since is not None:
        found.append(f"{alias}recorded_at >= {parameter(encode(where.since))}")
    if where.until is not None:
        found.append(f"{alias}recorded_at < {parameter(encode(where.until))}")
    return found


def feed_query(
    select: str, dialect: Dialect, version: int, *, after: int, limit: int, where: RecordFilter
) -> tuple[str, list[Any]]:
    """The SQL and parameters of ``read(after, limit, **filters)``, selecting
    ``select`` (a :class:`~python_cqrs_core.store.columns.RowReader` ``select``)."""
    parameter = _Parameters(dialect)
    conditions = [f"position > {parameter(after)}", *_conditions(where, version, parameter, "")]
    if where.outcome is not None:
        conditions.append(f"outcome = '{where.outcome}'")
    table = "cqrs_messages"
    if dialect == SQLITE and version >= _SINCE["service"] and _by_time(where):
        # Without statistics SQLite would rather walk the records in position order
        # (no sort) and test each one's time: the whole store, for a recent range.
        table += " INDEXED BY cqrs_messages_recorded_at"
    sql = (
        f"SELECT {select} FROM {table} WHERE {' AND '.join(conditions)} "  # noqa: S608
        f"ORDER BY position LIMIT {parameter(limit)}"
    )
    return sql, parameter.values


def _by_time(where: RecordFilter) -> bool:
    """Whether the time range is the best index ``where`` has: a time bound, and no
    condition served by an index of its own (the equality filters, failures)."""
    if where.since is None and where.until is None:
        return False
    if where.outcome == "failed":
        return False
    return all(getattr(where, name) is None for name in _EQUALITY if name != "kind")


def summaries_query(
    dialect: Dialect, version: int, *, limit: int, before: int | None, where: RecordFilter
) -> tuple[str, list[Any]]:
    """The SQL and parameters of ``correlations(limit, before, **filters)``: one
    query, whose rows :func:`summary_from_row` reads.

    The newest ``limit`` records that open a correlation and meet the filters are
    found first (the partial index of openings, or a filter's index); only their
    correlations' records are then counted, through the correlation index, and their
    failing deliveries (schema 4 on) through the deliveries' correlation index.
    """
    parameter = _Parameters(dialect)
    opening = "o.opens_correlation = 1" if dialect == SQLITE else "o.opens_correlation"
    conditions = [opening, *_conditions(where, version, parameter, "o.")]
    if before is not None:
        conditions.append(f"o.position < {parameter(before)}")
    deliveries = version >= DELIVERIES_SINCE
    if where.outcome is not None:
        failures = (
            "EXISTS (SELECT 1 FROM cqrs_messages AS f "
            "WHERE f.correlation_id = o.correlation_id AND f.outcome = 'failed')"
        )
        if deliveries:
            failures = (
                f"({failures} OR EXISTS (SELECT 1 FROM cqrs_deliveries AS d "  # noqa: S608
                f"WHERE d.correlation_id = o.correlation_id AND {FAILING_DELIVERY}))"
            )
        conditions.append(failures if where.outcome == "failed" else f"NOT {failures}")
    if dialect == POSTGRES:
        # Two transactions opening one correlation at the same moment may both flag
        # their first record; the earlier one opens it.
        conditions.append(
            "NOT EXISTS (SELECT 1 FROM cqrs_messages AS e WHERE e.correlation_id = "
            "o.correlation_id AND e.opens_correlation AND e.position < o.position)"
        )
    service = "o.service" if _SINCE["service"] <= version else "NULL"
    failed = (
        "sum(m.outcome = 'failed')"
        if dialect == SQLITE
        else "count(*) FILTER (WHERE m.outcome = 'failed')"
    )
    failing = (
        "(SELECT count(*) FROM cqrs_deliveries AS d "  # noqa: S608
        f"WHERE d.correlation_id = o.correlation_id AND {FAILING_DELIVERY})"
        if deliveries
        else "0"
    )
    sql = f"""
WITH openings AS (
    SELECT o.position, o.message_id, o.correlation_id, o.message_type, o.requested_by,
        {service} AS service
    FROM cqrs_messages AS o
    WHERE {" AND ".join(conditions)}
    ORDER BY o.position DESC LIMIT {parameter(limit)}
)
SELECT o.position, o.message_id, o.correlation_id, o.message_type, o.requested_by, o.service,
    count(*), {failed}, min(m.recorded_at), max(m.recorded_at), {failing}
FROM openings AS o JOIN cqrs_messages AS m ON m.correlation_id = o.correlation_id
GROUP BY o.position, o.message_id, o.correlation_id, o.message_type, o.requested_by, o.service
ORDER BY o.position DESC
"""  # noqa: S608
    return sql, parameter.values


def summary_from_row(row: Sequence[Any], dialect: Dialect) -> CorrelationSummary:
    """One row of :func:`summaries_query` as a summary."""
    decode = TIME.decoder(dialect) or (lambda moment: moment)
    failed = int(row[7]) + int(row[10])
    return CorrelationSummary(
        correlation_id=row[2],
        root_message_id=UUID(row[1]),
        root_message_type=row[3],
        outcome="failed" if failed else "succeeded",
        message_count=int(row[6]),
        failed_count=failed,
        first_recorded_at=decode(row[8]),
        last_recorded_at=decode(row[9]),
        requested_by=row[4],
        service=row[5],
        position=int(row[0]),
    )
