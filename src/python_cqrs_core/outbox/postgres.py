"""The outbox on PostgreSQL through asyncpg: a raw connection's transaction, the
consumer's unit of work, and the relay's storage.

Writing, in the application's own transaction on an asyncpg connection::

    from python_cqrs_core.outbox.postgres import connection_transaction, current_connection

    async with pool.acquire() as connection:
        async with connection_transaction(connection):      # BEGIN, or join the open one
            await connection.execute("INSERT INTO orders (id) VALUES ($1)", 7)
            await bus.send(PlaceOrder(order_id=7))          # its routed events: outbox
        # COMMIT: the order and the entries; an exception rolls both back

A handler reaches the same connection with :func:`current_connection`.  A consumer
takes :class:`ConnectionUnitOfWork` (one connection and transaction per delivery), and
the relay :class:`PostgresOutbox` (its own pool; it never touches the application's
connections)::

    consumer = Consumer(..., inbox=TransactionalInbox(), unit_of_work=ConnectionUnitOfWork(pool))
    relay = OutboxRelay(await PostgresOutbox.connect(dsn), transport)

:func:`migrate_outbox` creates the tables (``PostgresOutbox.connect`` calls it unless told
``migrate=False``, for schemas Alembic manages).  Every statement is parameterised.
Requires the ``postgres`` extra.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final

from ..store.base import url_without_password
from ..transports.base import Delivery
from .schema import (
    DELIVERED,
    FAILED,
    INBOX_TABLE,
    OUTBOX_TABLE,
    PENDING,
    POSTGRES_MIGRATIONS,
    SCHEMA_VERSION_TABLE,
    VERSION_TABLE_SQL,
    EntryStatus,
    OutboxTableError,
    check_known,
)
from .storage import OutboxEntry, OutboxStorage
from .transaction import (
    NoOutboxTransactionError,
    OutboxMessage,
    OutboxTransaction,
    _current,
    consumed_message_id,
    use_transaction,
)

__all__ = [
    "AsyncpgTransaction",
    "ConnectionUnitOfWork",
    "PostgresOutbox",
    "connection_transaction",
    "current_connection",
    "migrate_outbox",
]

# "CQRS", 2: the advisory lock of outbox migrations (the store's is "CQRS", 1).
_MIGRATION_LOCK: Final = 0x43515253_0002

_INSERT_ENTRY: Final = f"""
INSERT INTO {OUTBOX_TABLE} (
    message_id, message_type, destination, correlation_id, causation_id, headers, body,
    status, attempts, created_at, available_at
)
VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, '{PENDING}', 0, now(), now())
ON CONFLICT (message_id) DO NOTHING
"""  # noqa: S608
_MARK: Final = f"""
INSERT INTO {INBOX_TABLE} (consumer_group, message_id, handled_at) VALUES ($1, $2, now())
ON CONFLICT DO NOTHING RETURNING 1
"""  # noqa: S608
_HANDLED: Final = (
    f"SELECT EXISTS (SELECT 1 FROM {INBOX_TABLE} WHERE consumer_group = $1 AND message_id = $2)"  # noqa: S608
)

_ENTRY_COLUMNS: Final = (
    "o.position, o.message_id, o.message_type, o.destination, o.correlation_id, "
    "o.causation_id, o.headers::text, o.body, o.status, o.attempts, o.created_at, o.last_error"
)
# Heads: the oldest entry not delivered of each correlation, if it is pending, due and
# not under a live lease; locked, skipping those another relay is claiming right now.
# Runs: each head with the pending entries behind it (read through cqrs_outbox_open,
# whose predicate the condition repeats, so that the plan cannot walk every pending
# entry instead).  See outbox.storage for why this keeps the order per correlation
# across relays.
_CLAIM: Final = f"""
WITH heads AS (
    SELECT h.position, h.correlation_id
    FROM {OUTBOX_TABLE} AS h
    WHERE h.status = '{PENDING}'
      AND h.available_at <= now()
      AND (h.claimed_until IS NULL OR h.claimed_until < now())
      AND NOT EXISTS (
          SELECT 1 FROM {OUTBOX_TABLE} AS e
          WHERE e.correlation_id = h.correlation_id
            AND e.status <> '{DELIVERED}'
            AND e.position < h.position
      )
    ORDER BY h.position
    LIMIT $2
    FOR UPDATE OF h SKIP LOCKED
),
runs AS (
    SELECT r.position
    FROM heads, LATERAL (
        SELECT e.position, e.status FROM {OUTBOX_TABLE} AS e
        WHERE e.correlation_id = heads.correlation_id
          AND e.status <> '{DELIVERED}'
          AND e.position >= heads.position
        ORDER BY e.position
        LIMIT $3
    ) AS r
    WHERE r.status = '{PENDING}'
)
UPDATE {OUTBOX_TABLE} AS o
SET claimed_by = $1, claimed_until = now() + $4::float8 * interval '1 second'
FROM runs
WHERE o.position = runs.position
RETURNING {_ENTRY_COLUMNS}
"""  # noqa: S608
# The plan the claim needs whatever the statistics say: walk cqrs_outbox_pending in
# position order and stop at the limit.  On a table the planner has no statistics for
# (a new outbox, or one that grew since autovacuum last analysed it) it would rather
# read every pending entry into a bitmap and sort them: with 20,000 entries pending
# (a relay catching up after a broker outage) one claim took 37 ms instead of 2, and
# grew with the backlog.  SET LOCAL: for the claim's own transaction only.
_CLAIM_PLAN: Final = "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off"
_MARK_DELIVERED: Final = f"""
UPDATE {OUTBOX_TABLE}
SET status = '{DELIVERED}', delivered_at = now(), attempts = attempts + 1,
    claimed_by = NULL, claimed_until = NULL
WHERE position = ANY($2::bigint[]) AND claimed_by = $1 AND status = '{PENDING}'
"""  # noqa: S608
_RELEASE: Final = f"""
UPDATE {OUTBOX_TABLE} SET claimed_by = NULL, claimed_until = NULL
WHERE position = ANY($2::bigint[]) AND claimed_by = $1
"""  # noqa: S608
_RECORD_FAILURE: Final = f"""
UPDATE {OUTBOX_TABLE}
SET attempts = attempts + 1, last_error = $3,
    status = CASE WHEN attempts + 1 >= $5 THEN '{FAILED}' ELSE '{PENDING}' END,
    available_at = now() + $4::float8 * interval '1 second',
    claimed_by = NULL, claimed_until = NULL
WHERE position = $2 AND claimed_by = $1 AND status = '{PENDING}'
RETURNING status
"""  # noqa: S608
_BACKLOG: Final = f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE status = '{PENDING}'"  # noqa: S608
_FAILED: Final = (
    f"SELECT {_ENTRY_COLUMNS} FROM {OUTBOX_TABLE} AS o WHERE o.status = '{FAILED}' "  # noqa: S608
    "ORDER BY o.position LIMIT $1"
)
_RETRY_FAILED: Final = (
    f"UPDATE {OUTBOX_TABLE} SET status = '{PENDING}', attempts = 0, available_at = now() "  # noqa: S608
    f"WHERE status = '{FAILED}' AND ($1::bigint[] IS NULL OR position = ANY($1::bigint[]))"
)
_PRUNE_OUTBOX: Final = (
    f"DELETE FROM {OUTBOX_TABLE} WHERE status = '{DELIVERED}' AND delivered_at < $1"  # noqa: S608
)
_PRUNE_INBOX: Final = f"DELETE FROM {INBOX_TABLE} WHERE handled_at < $1"  # noqa: S608
_SCHEMA_VERSION: Final = f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA_VERSION_TABLE}"  # noqa: S608
_TABLES: Final = (
    f"SELECT to_regclass('{OUTBOX_TABLE}') IS NOT NULL, "
    f"to_regclass('{INBOX_TABLE}') IS NOT NULL, "
    f"to_regclass('{SCHEMA_VERSION_TABLE}') IS NOT NULL"
)


async def migrate_outbox(connection: Any) -> int:
    """Create or upgrade the outbox tables on an asyncpg ``connection``; returns the
    schema version.  Idempotent, and safe when several processes run it at once (an
    advisory lock).  Refuses tables it did not create (an Alembic-managed schema:
    leave those to Alembic) and a schema newer than the library.
    """
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        outbox, _, versioned = await connection.fetchrow(_TABLES)
        if outbox and not versioned:
            raise OutboxTableError(
                f"{OUTBOX_TABLE} exists but was not created by python-cqrs-core's migrations "
                "(it has no version table): if Alembic manages it, open the outbox with "
                "migrate=False"
            )
        await connection.execute(VERSION_TABLE_SQL)
        current = int(await connection.fetchval(_SCHEMA_VERSION))
        check_known(current, POSTGRES_MIGRATIONS, "in this database")
        for migration in POSTGRES_MIGRATIONS:
            if migration.version > current:
                for statement in migration.statements:
                    await connection.execute(statement)
                await connection.execute(
                    f"INSERT INTO {SCHEMA_VERSION_TABLE} (version, description, applied_at) "  # noqa: S608
                    "VALUES ($1, $2, $3)",
                    migration.version,
                    migration.description,
                    datetime.now(UTC).isoformat(),
                )
                current = migration.version
    return current


class AsyncpgTransaction(OutboxTransaction):
    """The open transaction of an asyncpg ``connection`` (see
    :func:`connection_transaction`, which makes one current)."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def _check(self) -> None:
        if not self.connection.is_in_transaction():
            raise NoOutboxTransactionError(
                "the asyncpg connection made current has no open transaction (it was "
                "committed or rolled back inside the block): the outbox entry would be "
                "committed on its own"
            )

    async def write(self, message: OutboxMessage) -> None:
        self._check()
        await self.connection.execute(
            _INSERT_ENTRY,
            message.message_id,
            message.message_type,
            message.destination,
            message.correlation_id,
            message.causation_id,
            json.dumps(dict(message.headers), separators=(",", ":")),
            message.body,
        )

    async def mark_handled(self, group: str, message_id: str) -> bool:
        self._check()
        return await self.connection.fetchval(_MARK, group, message_id) is not None

    async def handled(self, group: str, message_id: str) -> bool:
        return bool(await self.connection.fetchval(_HANDLED, group, message_id))


@asynccontextmanager
async def connection_transaction(connection: Any) -> AsyncIterator[AsyncpgTransaction]:
    """Make ``connection``'s transaction current for the block.

    If the connection has no open transaction, one is begun, and committed when the
    block ends (rolled back if it raises).  If it has one (``async with
    connection.transaction():`` around this block), the block joins it and whoever
    opened it commits: the entries are part of *that* transaction.
    """
    transaction = AsyncpgTransaction(connection)
    if connection.is_in_transaction():
        with use_transaction(transaction):
            yield transaction
        return
    async with connection.transaction():
        with use_transaction(transaction):
            yield transaction


def current_connection() -> Any:
    """The asyncpg connection of the current transaction, for a handler's own writes::

        async def handle(self, command: PlaceOrder) -> None:
            await current_connection().execute("INSERT INTO orders ...", ...)

    Raises :class:`~python_cqrs_core.outbox.NoOutboxTransactionError` when the current
    transaction (if any) is not an asyncpg connection's.
    """
    transaction = _current.get()
    if not isinstance(transaction, AsyncpgTransaction):
        raise NoOutboxTransactionError(
            "no asyncpg transaction is current: open one with connection_transaction() "
            "or ConnectionUnitOfWork"
        )
    return transaction.connection


class ConnectionUnitOfWork:
    """A consumer's unit of work on an asyncpg pool: per delivery, a connection and a
    transaction made current, committed when the handling succeeded, rolled back if it
    raised.  Call it without a delivery to open one anywhere else (a request)::

        unit_of_work = ConnectionUnitOfWork(pool)
        async with unit_of_work() as connection:
            await bus.send(PlaceOrder(order_id=7))
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @asynccontextmanager
    async def __call__(self, delivery: Delivery | None = None) -> AsyncIterator[Any]:
        consumed = None if delivery is None else consumed_message_id(delivery)
        async with (
            self.pool.acquire() as connection,
            connection_transaction(connection) as transaction,
        ):
            transaction.consumed_message_id = consumed
            yield connection

    def __repr__(self) -> str:
        return f"<ConnectionUnitOfWork on {self.pool!r}>"


def _entry(row: Any) -> OutboxEntry:
    return OutboxEntry.from_row(row, row[10])  # asyncpg returns timestamptz as a datetime


def _asyncpg_dsn(url: str) -> str:
    """asyncpg's DSN of a ``postgresql://`` URL, SQLAlchemy's ``postgresql+asyncpg://``
    spelling included."""
    scheme, sep, rest = url.partition("://")
    base = scheme.lower().partition("+")[0]
    if not sep or base not in ("postgresql", "postgres"):
        raise ValueError(
            f"not a PostgreSQL URL (postgresql://user@host/database): {url_without_password(url)!r}"
        )
    return f"postgresql://{rest}"


class PostgresOutbox(OutboxStorage):
    """The relay's view of the outbox tables of a PostgreSQL database, on a pool of its
    own (see :mod:`python_cqrs_core.outbox.storage` for claims and order).

    Open it with :meth:`connect`; close it after the relay.
    """

    def __init__(self, pool: Any, url: str, *, owns_pool: bool) -> None:
        self.pool = pool
        self.url = url
        self._owns_pool = owns_pool
        self._closed = False

    @classmethod
    async def connect(
        cls, target: str | Any, *, migrate: bool = True, **pool_options: Any
    ) -> PostgresOutbox:
        """Open the outbox of the database at ``target`` (a ``postgresql://`` URL, or
        ``postgresql+asyncpg://`` as SQLAlchemy spells it), or of an asyncpg pool the
        caller owns.  ``migrate`` creates or upgrades the tables (:func:`migrate_outbox`); pass
        ``False`` when Alembic manages them: then they must exist.  ``pool_options``
        go to ``asyncpg.create_pool`` (``min_size``, ``max_size``, ``server_settings``).
        """
        import asyncpg

        owns = isinstance(target, str)
        if owns:
            url = url_without_password(target)
            pool = await asyncpg.create_pool(
                _asyncpg_dsn(target), **{"min_size": 1, "max_size": 4, **pool_options}
            )
        else:
            url, pool = "postgresql (a pool)", target
        outbox = cls(pool, url, owns_pool=owns)
        try:
            async with pool.acquire() as connection:
                if migrate:
                    await migrate_outbox(connection)
                else:
                    outbox_exists, inbox_exists, _ = await connection.fetchrow(_TABLES)
                    if not (outbox_exists and inbox_exists):
                        raise OutboxTableError(
                            f"{url} has no {OUTBOX_TABLE} and {INBOX_TABLE} tables; create them "
                            "(Alembic with outbox_table()/inbox_table(), or migrate=True)"
                        )
        except BaseException:
            await outbox.close()
            raise
        return outbox

    async def claim(
        self, owner: str, *, limit: int, run_limit: int, lease: float
    ) -> list[OutboxEntry]:
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(_CLAIM_PLAN)
            rows = await connection.fetch(_CLAIM, owner, limit, run_limit, lease)
        return sorted(map(_entry, rows), key=lambda entry: entry.position)

    async def mark_delivered(self, owner: str, positions: Sequence[int]) -> int:
        status = await self.pool.execute(_MARK_DELIVERED, owner, list(positions))
        return int(status.rpartition(" ")[2])

    async def release(self, owner: str, positions: Sequence[int]) -> None:
        await self.pool.execute(_RELEASE, owner, list(positions))

    async def record_failure(
        self, owner: str, position: int, error: str, *, retry_in: float, max_attempts: int
    ) -> EntryStatus | None:
        status: EntryStatus | None = await self.pool.fetchval(
            _RECORD_FAILURE, owner, position, error, retry_in, max_attempts
        )
        return status

    async def backlog(self) -> int:
        return int(await self.pool.fetchval(_BACKLOG))

    async def failed_entries(self, limit: int = 100) -> list[OutboxEntry]:
        return [_entry(row) for row in await self.pool.fetch(_FAILED, limit)]

    async def retry_failed(self, positions: Sequence[int] | None = None) -> int:
        chosen = None if positions is None else list(positions)
        status = await self.pool.execute(_RETRY_FAILED, chosen)
        return int(status.rpartition(" ")[2])

    async def prune(self, *, delivered_before: datetime, handled_before: datetime) -> int:
        async with self.pool.acquire() as connection, connection.transaction():
            entries = await connection.execute(_PRUNE_OUTBOX, delivered_before)
            marks = await connection.execute(_PRUNE_INBOX, handled_before)
        return int(entries.rpartition(" ")[2]) + int(marks.rpartition(" ")[2])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_pool:
            await self.pool.close()

    def __repr__(self) -> str:
        return f"<PostgresOutbox {self.url}>"
