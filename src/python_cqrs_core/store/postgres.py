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
- Positions grow in commit order, even with many processes writing: the statement
  takes a transaction-level advisory lock of the store's table before positions are
  drawn, so transactions draw and commit them one after the other.  (Without it, a
  transaction drawing position 7 could commit after another's 8, and a feed reader
  that had seen 8 would never see 7.)  Concurrent appends of one process are already
  merged into one statement; those of several processes queue for the lock.
- Migrations run under ``pg_advisory_xact_lock``, so processes opening one store at
  the same time apply each migration exactly once.
- Traversal is a ``WITH RECURSIVE`` query over the indexes, upwards through
  ``message_id`` for :meth:`~PostgresStore.trace_causation`, downwards through
  ``causation_id`` for :meth:`~PostgresStore.trace_effects`; it tracks the path
  walked, so corrupted links forming a cycle end the recursion.  Each step is an
  index probe whatever the planner's statistics say, and the store's sessions run
  with ``jit=off``: a store never analysed yet (autovacuum analyses a new table
  only after a while) traverses as fast as one analysed.
- Every statement is parameterised; ids are stored as text (correlation ids may be
  opaque strings).
- Read-only (``read_only=True``): every session runs with
  ``default_transaction_read_only``, nothing is created or migrated, and a database
  (or ``search_path`` schema) without the store's tables is a
  :class:`~python_cqrs_core.store.StoreOpenError` ("not a message store").

Requires the ``postgres`` extra (``pip install python-cqrs-core[postgres]``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final
from urllib.parse import urlunsplit
from uuid import UUID

from ..errors import exception_message
from .base import (
    MessageStore,
    Statement,
    StoreOpenError,
    StoreWriteError,
    Write,
    parse_store_url,
    scrubbed_errors,
    url_without_password,
    wait_for_write,
)
from .columns import DELIVERIES, POSTGRES, Column, RowReader, RowWriter
from .feed import CorrelationSummary, RecordFilter
from .migrations import DELIVERIES_SINCE, POSTGRES_MIGRATIONS, SCHEMA_VERSION_TABLE, check_known
from .records import DeliveryRecord, MessageRecord, id_text, order_chain
from .sql import feed_query, summaries_query, summary_from_row

__all__ = ["PostgresStore"]

# An arbitrary constant identifying "python-cqrs-core schema migration" among the
# advisory locks of the database.
_MIGRATION_LOCK: Final = 0x43515253_0001  # "CQRS", 1
# The append lock is the pair ("CQRS", the table's oid): one per store, so stores in
# different schemas of one database do not wait for each other.
_APPEND_LOCK_CLASS: Final = 0x43515253

_WRITER: Final = RowWriter(POSTGRES)
_DELIVERY_WRITER: Final = RowWriter(POSTGRES, DELIVERIES)


def _unnested(columns: tuple[Column, ...], names: str) -> tuple[str, str]:
    """The ``unnest`` of one array parameter per column, and the select list casting
    each column to its stored type."""
    arrays = ", ".join(
        f"${n}::{column.codec.postgres_type}[]" for n, column in enumerate(columns, 1)
    )
    values = ", ".join(
        f"b.{column.name}::{column.codec.postgres_cast}"
        if column.codec.postgres_cast
        else f"b.{column.name}"
        for column in columns
    )
    return f"unnest({arrays}) WITH ORDINALITY AS b ({names}, ord)", values


def _append_statement(*, if_absent: bool = False) -> str:
    """One statement appending a batch sent as one array per column, in the order
    given, flagging the first record of each correlation id not stored yet.

    The ``lock`` CTE takes the append lock before any position is drawn: the batch
    joins it, and its rows are sorted (so all produced) before the first is inserted.
    (Two transactions opening the same correlation at the same moment may still both
    flag a record: each checks under its own snapshot.  The summaries keep the first.)

    ``if_absent``: the batch holds received records; one whose message id is stored
    already is skipped (``ON CONFLICT DO NOTHING``).
    """
    names = ", ".join(_WRITER.names)
    unnested, values = _unnested(_WRITER.columns, names)
    skip = "\nON CONFLICT (message_id) DO NOTHING" if if_absent else ""
    return f"""
WITH lock AS MATERIALIZED (
    SELECT {_LOCK}
),
batch AS (
    SELECT b.* FROM lock, {unnested}
),
openings AS (
    SELECT DISTINCT ON (b.correlation_id) b.ord
    FROM batch AS b
    WHERE NOT EXISTS (SELECT 1 FROM cqrs_messages AS m WHERE m.correlation_id = b.correlation_id)
    ORDER BY b.correlation_id, b.ord
)
INSERT INTO cqrs_messages ({names}, opens_correlation)
SELECT {values}, b.ord IN (SELECT ord FROM openings)
FROM batch AS b
ORDER BY b.ord{skip}
"""  # noqa: S608


def _delivery_statement() -> str:
    """One statement appending deliveries sent as one array per column, in order,
    under the append lock (taken by the same transaction's record statement
    before, or here)."""
    names = ", ".join(_DELIVERY_WRITER.names)
    unnested, values = _unnested(_DELIVERY_WRITER.columns, names)
    return f"""
WITH lock AS MATERIALIZED (SELECT {_LOCK})
INSERT INTO cqrs_deliveries ({names})
SELECT {values} FROM lock, {unnested}
ORDER BY b.ord
"""  # noqa: S608


_LOCK: Final = (
    f"pg_advisory_xact_lock({_APPEND_LOCK_CLASS}, 'cqrs_messages'::regclass::oid::integer)"
)
_APPEND: Final = _append_statement()
_APPEND_IF_ABSENT: Final = _append_statement(if_absent=True)
_APPEND_DELIVERIES: Final = _delivery_statement()
_MESSAGE_ID: Final = _WRITER.index("message_id")
_COUNT_STORED: Final = "SELECT count(*) FROM cqrs_messages WHERE message_id = ANY($1::text[])"
_DELIVERY_STORED: Final = (
    "SELECT EXISTS (SELECT 1 FROM cqrs_deliveries WHERE message_id = $1 AND "
    "consumer_group = $2 AND attempt = $3 AND outcome = $4 AND recorded_at = $5)"
)
_DELIVERY_KEY: Final = tuple(
    _DELIVERY_WRITER.index(name)
    for name in ("message_id", "consumer_group", "attempt", "outcome", "recorded_at")
)
_LAST_POSITION: Final = "SELECT COALESCE(MAX(position), 0) FROM cqrs_messages"
# A range of the message_id index, then sorted by position; MATERIALIZED keeps the
# planner from walking the whole table in position order to skip the sort.
_IDS_IN_RANGE: Final = (
    "WITH found AS MATERIALIZED (SELECT message_id, position FROM cqrs_messages "
    "WHERE message_id BETWEEN $1 AND $2) "
    "SELECT message_id FROM found ORDER BY position LIMIT $3"
)
_STORE_TABLES: Final = (
    "SELECT to_regclass('cqrs_messages') IS NOT NULL "
    "AND to_regclass('cqrs_schema_version') IS NOT NULL"
)
_SCHEMA_VERSION: Final = "SELECT COALESCE(MAX(version), 0) FROM cqrs_schema_version"


class _Queries:
    """The reading SQL of one schema version (older ones lack columns)."""

    def __init__(self, version: int) -> None:
        self.reader = reader = RowReader(POSTGRES, version)
        self.version = version
        select = reader.select
        self.one = f"SELECT {select} FROM cqrs_messages WHERE message_id = $1"  # noqa: S608
        self.correlation = (
            f"SELECT {select} FROM cqrs_messages WHERE correlation_id = $1 ORDER BY position"  # noqa: S608
        )
        # Recursive queries carry whole rows (no join back to the table afterwards,
        # which the planner could turn into a scan) and the path walked so far: a
        # record already on the path is not visited again, so corrupted links forming a
        # cycle end the recursion.  Each record has one parent, so no record can be
        # reached twice otherwise.  Each step is a LATERAL subquery the planner cannot
        # pull up into a join (LIMIT, OFFSET 0): a probe of the message_id or the
        # causation_id index per record reached, whatever the planner estimates.  A new
        # store has no statistics until autovacuum first analyses it; a join then
        # looked cheap as a hash join over the whole table (and JIT-compiled).
        self.causes = f"""
WITH RECURSIVE chain AS (
    SELECT m.*, ARRAY[m.message_id] AS path FROM cqrs_messages AS m WHERE m.message_id = $1
    UNION ALL
    SELECT p.*, chain.path || p.message_id
    FROM chain CROSS JOIN LATERAL (
        SELECT * FROM cqrs_messages AS m WHERE m.message_id = chain.causation_id LIMIT 1
    ) AS p
    WHERE p.message_id <> ALL (chain.path)
)
SELECT {select} FROM chain
"""  # noqa: S608
        self.effects = f"""
WITH RECURSIVE effects AS (
    SELECT m.*, ARRAY[$1::text, m.message_id] AS path FROM cqrs_messages AS m
    WHERE m.causation_id = $1 AND m.message_id <> $1
        AND EXISTS (SELECT 1 FROM cqrs_messages WHERE message_id = $1)
    UNION ALL
    SELECT c.*, effects.path || c.message_id
    FROM effects CROSS JOIN LATERAL (
        SELECT * FROM cqrs_messages AS m WHERE m.causation_id = effects.message_id OFFSET 0
    ) AS c
    WHERE c.message_id <> ALL (effects.path)
)
SELECT {select} FROM effects ORDER BY position
"""  # noqa: S608
        # Deliveries (none in a store older than schema 4: no table to read).
        self.has_deliveries = version >= DELIVERIES_SINCE
        self.deliveries = RowReader(POSTGRES, version, DELIVERIES)
        picked = f"SELECT {self.deliveries.select} FROM cqrs_deliveries"  # noqa: S608
        self.delivery_feed = f"{picked} WHERE position > $1 ORDER BY position LIMIT $2"
        self.correlation_deliveries = f"{picked} WHERE correlation_id = $1 ORDER BY position"
        self.deliveries_of = f"{picked} WHERE message_id = ANY($1::text[]) ORDER BY position"


_queries = cache(_Queries)
"""The queries of a schema version, built once."""


class _Append:
    """One pending :meth:`PostgresStore.append`: its rows (records, received records,
    deliveries) and the future it awaits.

    ``uncertain`` is set when a write of it was interrupted (its task cancelled while
    the statement ran): it may have committed, which the next attempt checks first.
    """

    __slots__ = ("deliveries", "future", "received", "rows", "uncertain")

    def __init__(
        self,
        rows: list[list[Any]],
        received: list[list[Any]],
        deliveries: list[list[Any]],
        future: Write,
    ) -> None:
        self.rows = rows
        self.received = received
        self.deliveries = deliveries
        self.future = future
        self.uncertain = False


def _columns(rows: list[list[Any]]) -> list[list[Any]]:
    """The rows of a batch as one list per column: the arrays its statement unnests."""
    return [list(column) for column in zip(*rows, strict=True)]


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
        current = int(await conn.fetchval(_SCHEMA_VERSION))
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


async def _check_store(conn: Any, where: str) -> int:
    """The schema version of an existing store, read without changing anything."""
    if not await conn.fetchval(_STORE_TABLES):
        raise StoreOpenError(
            f"{where} is not a message store: it has no cqrs_messages table in its "
            "search_path (opened read-only, so nothing was created in it)"
        )
    version = int(await conn.fetchval(_SCHEMA_VERSION))
    check_known(version, POSTGRES_MIGRATIONS, where)
    return version


class PostgresStore(MessageStore):
    """A :class:`~python_cqrs_core.store.MessageStore` in a PostgreSQL database.

    Open it with :func:`~python_cqrs_core.store.open_store` or :meth:`open`.
    ``url`` is shown with its password masked.
    """

    def __init__(self, url: str, pool: Any, *, read_only: bool = False, version: int) -> None:
        self.url = url_without_password(url)
        self.read_only = read_only
        self._pool = pool
        self._queries = _queries(version)
        self._pending: list[_Append] = []
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def schema_version(self) -> int:
        """The schema version of the store (older than the library's only when it was
        opened read-only before being migrated)."""
        return self._queries.version

    @classmethod
    async def open(cls, url: str, *, read_only: bool = False, **pool_options: Any) -> PostgresStore:
        """Connect a pool to ``url`` and apply the missing migrations, or, with
        ``read_only``, check that the store exists and change nothing (see the module
        docs).

        ``pool_options`` go to :func:`asyncpg.create_pool` (``min_size`` defaults to 1,
        ``max_size`` to 10; ``server_settings`` gets ``jit=off`` unless it sets
        ``jit`` itself).
        """
        import asyncpg

        dsn = urlunsplit(parse_store_url(url)._replace(scheme="postgresql"))  # also +asyncpg
        pool_options.setdefault("min_size", 1)
        pool_options.setdefault("max_size", 10)
        settings = dict(pool_options.get("server_settings") or {})
        # The store's queries are short index walks: compiling one (JIT, on when the
        # planner's estimate is high, as it is before the first ANALYZE) costs far more
        # than it runs.  An explicit server_settings={"jit": ...} wins.
        settings.setdefault("jit", "off")
        if read_only:
            settings["default_transaction_read_only"] = "on"
        pool_options["server_settings"] = settings
        with scrubbed_errors(url):  # asyncpg's errors may repeat what it was given
            pool = await asyncpg.create_pool(dsn, **pool_options)
        where = url_without_password(url)
        try:
            async with pool.acquire() as conn:
                if read_only:
                    version = await _check_store(conn, where)
                else:
                    version = await _migrate(conn, where)
        except BaseException:
            await pool.close()
            raise
        return cls(url, pool, read_only=read_only, version=version)

    async def append(
        self,
        records: Sequence[MessageRecord],
        *,
        received: Sequence[MessageRecord] = (),
        deliveries: Sequence[DeliveryRecord] = (),
        statements: Sequence[Statement] = (),
    ) -> None:
        """Store ``records`` atomically (see :meth:`MessageStore.append`), with
        ``received`` and ``deliveries`` in the same transaction.  ``statements`` are
        refused (:class:`ValueError`): on PostgreSQL, what must commit with the
        application's writes goes in the application's own transaction.

        Appends made while a write is in flight are sent together, in one statement
        (one per kind of row) and one transaction, as soon as it completes (group
        commit); each caller still gets its own result, and one rejected batch does
        not fail the others.
        """
        self._check_open()
        self.check_writable()
        if statements:
            self.check_statements(statements)
        if not (records or received or deliveries):
            return
        try:
            rows = _WRITER.rows(records)
            received_rows = _WRITER.rows(received) if received else []
            delivery_rows = _DELIVERY_WRITER.rows(deliveries) if deliveries else []
        except (TypeError, ValueError) as exc:  # a payload or header JSON cannot hold
            raise StoreWriteError(
                f"cannot encode the batch for PostgreSQL: {exception_message(exc)}"
            ) from exc
        loop = asyncio.get_running_loop()
        pending = _Append(rows, received_rows, delivery_rows, Write(loop=loop))
        self._pending.append(pending)
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not loop:
            self._start_writer(loop)
        what = f"{len(records) + len(received)} record(s), {len(deliveries)} deliveries"
        await wait_for_write(pending.future, f"{what} for {self.url}")

    def _start_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._writer = loop.create_task(self._write_pending())
        self._writer.add_done_callback(self._writer_ended)

    def _writer_ended(self, writer: asyncio.Task[None]) -> None:
        """A loop shutting down cancels every task, this writer too (even before it
        started): what it left pending gets a new writer, which the loop runs while
        it waits for the cancelled appends (they wait for their writes)."""
        loop = writer.get_loop()
        if self._pending and writer is self._writer and not loop.is_closed():
            self._start_writer(loop)

    async def _write_pending(self) -> None:
        """Write what is pending, in rounds, until nothing is (one task at a time)."""
        while self._pending:
            group, self._pending = self._pending, []
            try:
                await self._write_group(group)
            except BaseException:
                # Cancelled (the loop is shutting down), maybe in the middle of the
                # statement: what is not settled goes back, to be checked and written
                # by the next writer (see _writer_ended).
                unsettled = [pending for pending in group if not pending.future.done()]
                for pending in unsettled:
                    pending.uncertain = True
                self._pending[:0] = unsettled
                raise

    async def _write_group(self, group: list[_Append]) -> None:
        for pending in [p for p in group if p.uncertain]:
            if await self._stored(pending):  # the interrupted write had committed
                _settle(pending.future, None)
                group.remove(pending)
        if not group:
            return
        try:
            await self._insert(group)
        except StoreWriteError as exc:
            if len(group) == 1:
                _settle(group[0].future, exc)
                return
            for pending in group:  # find the culprit; the others are stored alone
                try:
                    await self._insert([pending])
                except StoreWriteError as single:
                    _settle(pending.future, single)
                else:
                    _settle(pending.future, None)
        else:
            for pending in group:
                _settle(pending.future, None)

    async def _stored(self, pending: _Append) -> bool:
        """Whether a batch is stored (a batch commits whole or not at all): every one
        of its records (some stored means other records with the same ids), else its
        first delivery, else its received records (stored by anyone: they are
        recorded once, whoever does it)."""
        async with self._pool.acquire() as conn:
            if pending.rows or not pending.deliveries:
                rows = pending.rows or pending.received
                ids = [row[_MESSAGE_ID] for row in rows]
                return bool(await conn.fetchval(_COUNT_STORED, ids) == len(ids))
            first = pending.deliveries[0]
            key = [first[index] for index in _DELIVERY_KEY]
            return bool(await conn.fetchval(_DELIVERY_STORED, *key))

    async def _insert(self, group: list[_Append]) -> None:
        import asyncpg

        rows = [row for pending in group for row in pending.rows]
        received = [row for pending in group for row in pending.received]
        deliveries = [row for pending in group for row in pending.deliveries]
        try:
            async with self._pool.acquire() as conn:
                if not (received or deliveries):
                    await conn.execute(_APPEND, *_columns(rows))  # one statement, atomic
                    return
                async with conn.transaction():
                    if received:
                        await conn.execute(_APPEND_IF_ABSENT, *_columns(received))
                    if rows:
                        await conn.execute(_APPEND, *_columns(rows))
                    if deliveries:
                        await conn.execute(_APPEND_DELIVERIES, *_columns(deliveries))
        except asyncpg.UniqueViolationError as exc:
            raise StoreWriteError(
                f"a message of the batch is already stored ({exc.detail or exc})"
            ) from exc
        except (asyncpg.PostgresError, OSError) as exc:
            raise StoreWriteError(
                f"PostgreSQL rejected the batch: {exception_message(exc)}"
            ) from exc

    async def get(self, message_id: UUID | str) -> MessageRecord | None:
        self._check_open()
        queries = self._queries
        row = await self._pool.fetchrow(queries.one, id_text(message_id))
        return None if row is None else queries.reader.record(row)

    async def by_correlation(self, correlation_id: str | UUID) -> list[MessageRecord]:
        return await self._fetch(self._queries.correlation, id_text(correlation_id))

    async def trace_causation(self, message_id: UUID | str) -> list[MessageRecord]:
        key = id_text(message_id)
        records = await self._fetch(self._queries.causes, key)
        return order_chain(key, {str(record.message_id): record for record in records})

    async def trace_effects(self, message_id: UUID | str) -> list[MessageRecord]:
        return await self._fetch(self._queries.effects, id_text(message_id))

    async def fetch_message_ids(self, low: UUID, high: UUID, limit: int) -> list[UUID]:
        self._check_open()
        rows = await self._pool.fetch(_IDS_IN_RANGE, str(low), str(high), limit)
        return [UUID(row[0]) for row in rows]

    async def fetch_deliveries_of(self, message_ids: list[str]) -> list[DeliveryRecord]:
        return await self._fetch_deliveries(self._queries.deliveries_of, message_ids)

    async def deliveries_by_correlation(self, correlation_id: str | UUID) -> list[DeliveryRecord]:
        return await self._fetch_deliveries(
            self._queries.correlation_deliveries, id_text(correlation_id)
        )

    async def fetch_deliveries(self, after: int, limit: int) -> list[DeliveryRecord]:
        return await self._fetch_deliveries(self._queries.delivery_feed, after, limit)

    async def _fetch_deliveries(self, sql: str, *params: Any) -> list[DeliveryRecord]:
        self._check_open()
        queries = self._queries
        if not queries.has_deliveries:
            return []
        delivery = queries.deliveries.record
        return [delivery(row) for row in await self._pool.fetch(sql, *params)]

    async def fetch_records(
        self, after: int, limit: int, where: RecordFilter
    ) -> list[MessageRecord]:
        queries = self._queries
        sql, params = feed_query(
            queries.reader.select, POSTGRES, queries.version, after=after, limit=limit, where=where
        )
        return await self._fetch(sql, *params)

    async def last_position(self) -> int:
        self._check_open()
        return int(await self._pool.fetchval(_LAST_POSITION))

    async def fetch_correlations(
        self, limit: int, before: int | None, where: RecordFilter
    ) -> list[CorrelationSummary]:
        self._check_open()
        sql, params = summaries_query(
            POSTGRES, self._queries.version, limit=limit, before=before, where=where
        )
        return [summary_from_row(row, POSTGRES) for row in await self._pool.fetch(sql, *params)]

    async def _fetch(self, sql: str, *params: Any) -> list[MessageRecord]:
        self._check_open()
        record = self._queries.reader.record
        return [record(row) for row in await self._pool.fetch(sql, *params)]

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
