"""The shared message store (``postgresql://user@host:port/database``), on asyncpg.

Many processes, on many machines, can record into one PostgreSQL store and read each
other's chains.  Same schema and semantics as the SQLite store (see
:mod:`python_cqrs_core.store.migrations`), with native types: ``timestamptz`` for
times, ``jsonb`` for payload, headers and handler outcomes.

- An :meth:`~PostgresStore.append` is one statement in one transaction: the batch is
  sent as arrays (``unnest``) and committed when the call returns (PostgreSQL's own
  durability: with the default ``synchronous_commit=on``, a returned commit survives
  a crash of the server).  Appends made while one is in flight are merged into the
  next statement (group commit), so many concurrent chains share a commit.
- Migrations run under ``pg_advisory_xact_lock``, so processes opening one store at
  the same time apply each migration exactly once.
- Traversal is a ``WITH RECURSIVE`` query over the indexes, upwards through
  ``message_id`` for :meth:`~PostgresStore.trace_causation`, downwards through
  ``causation_id`` for :meth:`~PostgresStore.trace_effects`; it tracks the path
  walked, so corrupted links forming a cycle end the recursion.
- Every statement is parameterised; ids are stored as text (correlation ids may be
  opaque strings).

Requires the ``postgres`` extra (``pip install python-cqrs-core[postgres]``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from .base import MessageStore, StoreWriteError, url_without_password
from .migrations import POSTGRES_MIGRATIONS, SCHEMA_VERSION_TABLE, check_known
from .records import MessageRecord, id_text, order_chain, record_from_row

__all__ = ["PostgresStore"]

# An arbitrary constant identifying "python-cqrs-core schema migration" among the
# advisory locks of the database.
_MIGRATION_LOCK: Final = 0x43515253_0001  # "CQRS", 1

_COLUMNS: Final = (
    "position, message_id, kind, message_type, correlation_id, causation_id, requested_by, "
    "requested_at, recorded_at, outcome, error_type, error_message, duration_ms, "
    "handlers::text, headers::text, payload::text"
)
# One statement: insert the batch in the order given, flagging the first record of
# each correlation id not stored yet.  (Two transactions opening the same correlation at
# the same moment may both flag a record; recent_correlations() keeps the first.)
_APPEND: Final = """
WITH batch AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[],
        $12::float8[], $13::text[], $14::text[], $15::text[])
        WITH ORDINALITY AS b (message_id, kind, message_type, correlation_id, causation_id,
            requested_by, requested_at, recorded_at, outcome, error_type, error_message,
            duration_ms, handlers, headers, payload, ord)
),
openings AS (
    SELECT DISTINCT ON (b.correlation_id) b.ord
    FROM batch AS b
    WHERE NOT EXISTS (SELECT 1 FROM cqrs_messages AS m WHERE m.correlation_id = b.correlation_id)
    ORDER BY b.correlation_id, b.ord
)
INSERT INTO cqrs_messages (message_id, kind, message_type, correlation_id, causation_id,
    requested_by, requested_at, recorded_at, outcome, error_type, error_message,
    duration_ms, handlers, headers, payload, opens_correlation)
SELECT b.message_id, b.kind, b.message_type, b.correlation_id, b.causation_id,
    b.requested_by, b.requested_at, b.recorded_at, b.outcome, b.error_type, b.error_message,
    b.duration_ms, b.handlers::jsonb, b.headers::jsonb, b.payload::jsonb,
    b.ord IN (SELECT ord FROM openings)
FROM batch AS b
ORDER BY b.ord
"""
_SELECT_ONE: Final = f"SELECT {_COLUMNS} FROM cqrs_messages WHERE message_id = $1"  # noqa: S608
_SELECT_CORRELATION: Final = (
    f"SELECT {_COLUMNS} FROM cqrs_messages WHERE correlation_id = $1 ORDER BY position"  # noqa: S608
)
# Recursive queries carry whole rows (no join back to the table afterwards, which
# the planner could turn into a scan) and the path walked so far: a record already on
# the path is not visited again, so corrupted links forming a cycle end the recursion.
# Each record has one parent, so no record can be reached twice otherwise.
_SELECT_CAUSES: Final = f"""
WITH RECURSIVE chain AS (
    SELECT m.*, ARRAY[m.message_id] AS path FROM cqrs_messages AS m WHERE m.message_id = $1
    UNION ALL
    SELECT m.*, chain.path || m.message_id
    FROM chain JOIN cqrs_messages AS m ON m.message_id = chain.causation_id
    WHERE m.message_id <> ALL (chain.path)
)
SELECT {_COLUMNS} FROM chain
"""  # noqa: S608
_SELECT_EFFECTS: Final = f"""
WITH RECURSIVE effects AS (
    SELECT m.*, ARRAY[$1::text, m.message_id] AS path FROM cqrs_messages AS m
    WHERE m.causation_id = $1 AND m.message_id <> $1
        AND EXISTS (SELECT 1 FROM cqrs_messages WHERE message_id = $1)
    UNION ALL
    SELECT m.*, effects.path || m.message_id
    FROM effects JOIN cqrs_messages AS m ON m.causation_id = effects.message_id
    WHERE m.message_id <> ALL (effects.path)
)
SELECT {_COLUMNS} FROM effects ORDER BY position
"""  # noqa: S608
_SELECT_RECENT: Final = """
WITH openings AS (
    SELECT correlation_id, recorded_at, position FROM cqrs_messages
    WHERE opens_correlation ORDER BY position DESC LIMIT $1 + 16
),
firsts AS (
    SELECT DISTINCT ON (correlation_id) correlation_id, recorded_at, position
    FROM openings ORDER BY correlation_id, position
)
SELECT f.correlation_id, f.recorded_at,
    (SELECT count(*) FROM cqrs_messages AS m WHERE m.correlation_id = f.correlation_id)
FROM firsts AS f ORDER BY f.position DESC LIMIT $1
"""

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_loads = json.loads


def _values(record: MessageRecord) -> tuple[Any, ...]:
    """One record as the 15 values of its row."""
    return (
        str(record.message_id),
        record.kind,
        record.message_type,
        record.correlation_id,
        record.causation_id,
        record.requested_by,
        record.requested_at,
        record.recorded_at,
        record.outcome,
        record.error_type,
        record.error_message,
        record.duration_ms,
        _dumps(
            [
                [h.handler, h.outcome, h.duration_ms, h.error_type, h.error_message]
                for h in record.handlers
            ]
        ),
        _dumps(record.headers),
        _dumps(record.payload),
    )


class _Append:
    """One pending :meth:`PostgresStore.append`: its rows and the future it awaits."""

    __slots__ = ("future", "rows")

    def __init__(self, rows: list[tuple[Any, ...]], future: asyncio.Future[None]) -> None:
        self.rows = rows
        self.future = future


_record = record_from_row


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the appending task was cancelled; the write went on regardless
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


async def _migrate(conn: Any, where: str) -> int:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(SCHEMA_VERSION_TABLE)
        current = int(
            await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM cqrs_schema_version")
        )
        check_known(current, POSTGRES_MIGRATIONS, where)
        for migration in POSTGRES_MIGRATIONS:
            if migration.version > current:
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO cqrs_schema_version (version, description, applied_at) "
                    "VALUES ($1, $2, $3)",
                    migration.version,
                    migration.description,
                    datetime.now(UTC).isoformat(),
                )
                current = migration.version
    return current


class PostgresStore(MessageStore):
    """A :class:`~python_cqrs_core.store.MessageStore` in a PostgreSQL database.

    Open it with :func:`~python_cqrs_core.store.open_store` or :meth:`open`.
    ``url`` is shown with its password masked.
    """

    def __init__(self, url: str, pool: Any) -> None:
        self.url = url_without_password(url)
        self._pool = pool
        self._pending: list[_Append] = []
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, url: str, **pool_options: Any) -> PostgresStore:
        """Connect a pool to ``url`` and apply the missing migrations.

        ``pool_options`` go to :func:`asyncpg.create_pool` (``min_size`` defaults to 1,
        ``max_size`` to 10).
        """
        import asyncpg

        dsn = urlunsplit(urlsplit(url)._replace(scheme="postgresql"))
        pool_options.setdefault("min_size", 1)
        pool_options.setdefault("max_size", 10)
        pool = await asyncpg.create_pool(dsn, **pool_options)
        try:
            async with pool.acquire() as conn:
                await _migrate(conn, url_without_password(url))
        except BaseException:
            await pool.close()
            raise
        return cls(url, pool)

    async def append(self, records: Sequence[MessageRecord]) -> None:
        """Store ``records`` atomically (see :meth:`MessageStore.append`).

        Appends made while a write is in flight are sent together, in one statement
        and one transaction, as soon as it completes (group commit); each caller still
        gets its own result, and one rejected batch does not fail the others.
        """
        self._check_open()
        if not records:
            return
        try:
            rows = [_values(record) for record in records]
        except (TypeError, ValueError) as exc:  # a payload or header JSON cannot hold
            raise StoreWriteError(f"cannot encode the batch for PostgreSQL: {exc}") from exc
        loop = asyncio.get_running_loop()
        pending = _Append(rows, loop.create_future())
        self._pending.append(pending)
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_pending())
        await pending.future

    async def _write_pending(self) -> None:
        """Write what is pending, in rounds, until nothing is (one task at a time)."""
        while self._pending:
            group, self._pending = self._pending, []
            try:
                await self._insert([row for pending in group for row in pending.rows])
            except StoreWriteError as exc:
                if len(group) == 1:
                    _settle(group[0].future, exc)
                    continue
                for pending in group:  # find the culprit; the others are stored alone
                    try:
                        await self._insert(pending.rows)
                    except StoreWriteError as single:
                        _settle(pending.future, single)
                    else:
                        _settle(pending.future, None)
            except BaseException as exc:  # cancelled (loop closing): nobody is left unsettled
                for pending in [*group, *self._pending]:
                    _settle(pending.future, StoreWriteError(f"write interrupted: {exc!r}"))
                self._pending = []
                raise
            else:
                for pending in group:
                    _settle(pending.future, None)

    async def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        import asyncpg

        columns = [list(column) for column in zip(*rows, strict=True)]
        try:
            async with self._pool.acquire() as conn:
                await conn.execute(_APPEND, *columns)
        except asyncpg.UniqueViolationError as exc:
            raise StoreWriteError(
                f"a message of the batch is already stored ({exc.detail or exc})"
            ) from exc
        except (asyncpg.PostgresError, OSError) as exc:
            raise StoreWriteError(f"PostgreSQL rejected the batch: {exc}") from exc

    async def get(self, message_id: UUID | str) -> MessageRecord | None:
        self._check_open()
        row = await self._pool.fetchrow(_SELECT_ONE, id_text(message_id))
        return None if row is None else _record(row)

    async def by_correlation(self, correlation_id: str | UUID) -> list[MessageRecord]:
        self._check_open()
        rows = await self._pool.fetch(_SELECT_CORRELATION, id_text(correlation_id))
        return [_record(row) for row in rows]

    async def trace_causation(self, message_id: UUID | str) -> list[MessageRecord]:
        self._check_open()
        key = id_text(message_id)
        rows = await self._pool.fetch(_SELECT_CAUSES, key)
        return order_chain(key, {row[1]: _record(row) for row in rows})

    async def trace_effects(self, message_id: UUID | str) -> list[MessageRecord]:
        self._check_open()
        rows = await self._pool.fetch(_SELECT_EFFECTS, id_text(message_id))
        return [_record(row) for row in rows]

    async def recent_correlations(self, limit: int = 20) -> list[tuple[str, datetime, int]]:
        self._check_open()
        rows = await self._pool.fetch(_SELECT_RECENT, max(limit, 0))
        return [(row[0], row[1], int(row[2])) for row in rows]

    async def close(self) -> None:
        """Finish pending writes, then close the connection pool."""
        if not self._closed:
            self._closed = True
            if self._writer is not None:
                await asyncio.shield(self._writer)
            await self._pool.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
