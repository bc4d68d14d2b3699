"""The outbox in the embedded SQLite message store: zero setup, no database of your own.

On this path the application has no transaction of its own to share; what commits is
the *chain*: the message store records a root dispatch and everything dispatched
inside it in one transaction (:class:`~python_cqrs_core.store.MessageRecorder`).  The
outbox entries of a chain are committed **in that transaction**: they exist if and
only if the chain's records do, and only when the root dispatch succeeded::

    store = await open_store("sqlite:///cqrs.db")
    recorder = MessageRecorder(store).install(bus)
    outbox = await SQLiteOutbox.open(recorder)                 # tables in cqrs.db
    OutboxWriter(routes, codec, chains=outbox).install(bus)   # after the recorder

    await bus.send(PlaceOrder(order_id=7))   # OrderPlaced: committed with the chain
    relay = OutboxRelay(outbox, transport)   # (or SQLiteOutbox.open(url) elsewhere)

**How.**  While the chain runs, each routed message is *staged* in the store's file
(``cqrs_outbox_staged``, keyed by the chain's root message id), in a small transaction
of its own.  A trigger on ``cqrs_messages`` moves a chain's staged rows into
``cqrs_outbox`` when the record of its root is inserted with the outcome
``succeeded``: inside the recorder's transaction, so the entries commit with the
records, or not at all.  A root recorded as failed discards what its chain staged.
Staged rows whose chain never got recorded (the process died, the store refused the
batch) are swept after ``abandon_after`` seconds and logged.  A consumer's inbox
marks go the same way (:meth:`SQLiteOutbox.unit_of_work`).

This needs the recorder to record the chain's root: install the writer after the
recorder, on the same bus.  (A store hook letting the recorder's transaction carry
the entries directly would spare the staging write; see the outbox documentation.)
The store's file is shared through SQLite's own locking: every write here is a short
``BEGIN IMMEDIATE`` transaction on a connection of this object's own thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

from ..names import OUTBOX_LOGGER
from ..store.recorder import MessageRecorder
from ..store.sqlite import SQLiteStore
from ..transports.base import Delivery
from .schema import (
    DELIVERED,
    FAILED,
    INBOX_TABLE,
    OUTBOX_TABLE,
    PENDING,
    SCHEMA_VERSION_TABLE,
    SQLITE_MIGRATIONS,
    VERSION_TABLE_SQL,
    EntryStatus,
    OutboxTableError,
    check_known,
)
from .storage import OutboxEntry, OutboxStorage
from .transaction import (
    OutboxMessage,
    OutboxTransaction,
    consumed_message_id,
    use_transaction,
)

__all__ = ["SQLiteOutbox"]

logger = logging.getLogger(OUTBOX_LOGGER)

_T = TypeVar("_T")

_STAGE_ENTRY: Final = """
INSERT INTO cqrs_outbox_staged (
    root_message_id, message_id, message_type, destination, correlation_id, causation_id,
    headers, body, staged_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_STAGE_MARK: Final = (
    "INSERT INTO cqrs_inbox_staged (root_message_id, consumer_group, message_id, staged_at) "
    "VALUES (?, ?, ?, ?)"
)
_HANDLED: Final = f"SELECT 1 FROM {INBOX_TABLE} WHERE consumer_group = ? AND message_id = ?"  # noqa: S608
_ENTRY_COLUMNS: Final = (
    "position, message_id, message_type, destination, correlation_id, causation_id, "
    "headers, body, status, attempts, created_at, last_error"
)
_HEADS: Final = f"""
SELECT h.position, h.correlation_id FROM {OUTBOX_TABLE} AS h
WHERE h.status = '{PENDING}'
  AND h.available_at <= ?
  AND (h.claimed_until IS NULL OR h.claimed_until < ?)
  AND NOT EXISTS (
      SELECT 1 FROM {OUTBOX_TABLE} AS e
      WHERE e.correlation_id = h.correlation_id
        AND e.status <> '{DELIVERED}'
        AND e.position < h.position
  )
ORDER BY h.position
LIMIT ?
"""  # noqa: S608
_RUN: Final = f"""
SELECT position FROM {OUTBOX_TABLE}
WHERE correlation_id = ? AND status = '{PENDING}' AND position >= ?
ORDER BY position LIMIT ?
"""  # noqa: S608
_SWEEP: Final = (
    "DELETE FROM {table} WHERE staged_at < ? "
    "AND root_message_id NOT IN (SELECT message_id FROM cqrs_messages)"
)

_SWEEP_EVERY: Final = 60.0  # seconds between two sweeps of abandoned staged rows


def _iso(moment: datetime) -> str:
    """A UTC time as fixed-width ISO 8601 text: text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _in(count: int) -> str:
    return ", ".join("?" * count)


def _path_of(target: str) -> str:
    parts = urlsplit(target)
    if parts.scheme.lower().partition("+")[0] != "sqlite" or parts.netloc:
        raise ValueError(f"not an SQLite store URL (sqlite:///path.db): {target!r}")
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path or path == ":memory:":
        raise ValueError(f"the SQLite outbox needs the store's file path: {target!r}")
    return path


def _migrate(conn: sqlite3.Connection, where: str) -> None:
    _immediate(conn, lambda c: _apply_migrations(c, where))


def _apply_migrations(conn: sqlite3.Connection, where: str) -> None:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cqrs_messages'"
    ).fetchone()
    if found is None:
        raise OutboxTableError(
            f"{where} is not a message store (no cqrs_messages table): open it with "
            "open_store() first; the SQLite outbox lives in the store's file"
        )
    conn.execute(VERSION_TABLE_SQL)
    current = int(
        conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {SCHEMA_VERSION_TABLE}").fetchone()[0]  # noqa: S608
    )
    check_known(current, SQLITE_MIGRATIONS, f"in {where}")
    for migration in SQLITE_MIGRATIONS:
        if migration.version > current:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {SCHEMA_VERSION_TABLE} (version, description, applied_at) "  # noqa: S608
                "VALUES (?, ?, ?)",
                (migration.version, migration.description, _iso(datetime.now(UTC))),
            )


def _entry(row: Sequence[Any]) -> OutboxEntry:
    return OutboxEntry(
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
        created_at=datetime.fromisoformat(row[10]),
        last_error=row[11],
    )


class _ChainTransaction(OutboxTransaction):
    """The transaction of one chain: what it stages commits with its root's record."""

    per_chain = True

    def __init__(self, outbox: SQLiteOutbox, root_message_id: str) -> None:
        self.outbox = outbox
        self.root_message_id = root_message_id
        self.sealed = False
        self.marks: set[tuple[str, str]] = set()

    async def write(self, message: OutboxMessage) -> None:
        row = (
            self.root_message_id,
            message.message_id,
            message.message_type,
            message.destination,
            message.correlation_id,
            message.causation_id,
            json.dumps(dict(message.headers), separators=(",", ":")),
            message.body,
            _iso(datetime.now(UTC)),
        )
        await self.outbox._run(lambda conn: _count(conn, _STAGE_ENTRY, row))

    async def mark_handled(self, group: str, message_id: str) -> bool:
        if (group, message_id) in self.marks:
            return False
        root = self.root_message_id

        def stage(conn: sqlite3.Connection) -> bool:
            if conn.execute(_HANDLED, (group, message_id)).fetchone() is not None:
                return False
            conn.execute(_STAGE_MARK, (root, group, message_id, _iso(datetime.now(UTC))))
            return True

        marked = await self.outbox._run(lambda conn: _immediate(conn, stage))
        if marked:
            self.marks.add((group, message_id))
        return marked

    async def handled(self, group: str, message_id: str) -> bool:
        if (group, message_id) in self.marks:
            return True
        found = await self.outbox._run(
            lambda conn: conn.execute(_HANDLED, (group, message_id)).fetchone()
        )
        return found is not None

    async def discard(self) -> None:
        """Drop what this chain staged (its root was never dispatched)."""
        root = self.root_message_id

        def drop(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM cqrs_outbox_staged WHERE root_message_id = ?", (root,))
            conn.execute("DELETE FROM cqrs_inbox_staged WHERE root_message_id = ?", (root,))

        await self.outbox._run(lambda conn: _immediate(conn, drop))


def _immediate(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction (the database write lock is
    taken first, so what it reads is not changed by another writer before it writes)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _count(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    """Run one writing statement in its own transaction; how many rows it changed."""
    return _immediate(conn, lambda c: int(c.execute(sql, params).rowcount))


class SQLiteOutbox(OutboxStorage):
    """The outbox and the transactional inbox in the embedded store's file: the chains'
    transactions (for :class:`~python_cqrs_core.outbox.OutboxWriter`), the consumer's
    unit of work, and the relay's storage.  Open it with :meth:`open`.

    ``abandon_after``: seconds after which rows staged by a chain that was never
    recorded are swept (and logged at ERROR); longer than any chain runs.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        url: str,
        *,
        records_queries: bool,
        abandon_after: float,
    ) -> None:
        self.url = url
        self._records_queries = records_queries
        self.abandon_after = abandon_after
        self._conn = conn
        self._executor = executor
        self._closed = False
        self._next_sweep = 0.0

    @classmethod
    async def open(
        cls,
        target: MessageRecorder | SQLiteStore | str,
        *,
        busy_timeout: float = 5.0,
        abandon_after: float = 3600.0,
    ) -> SQLiteOutbox:
        """Open the outbox of a message store's file, creating its tables if needed.

        ``target`` is the :class:`~python_cqrs_core.store.MessageRecorder` recording the
        chains whose routed messages go out (what a service that writes entries needs),
        its :class:`~python_cqrs_core.store.SQLiteStore`, or the store's URL
        (``sqlite:///cqrs.db``: enough for a relay or a consumer in another process).
        The store must exist (it is the store's own migrations that create
        ``cqrs_messages``).
        """
        records_queries = False
        if isinstance(target, MessageRecorder):
            records_queries = target.record_queries
            store = target.store
            if not isinstance(store, SQLiteStore):
                raise TypeError(
                    f"the SQLite outbox needs a recorder on an SQLite store, this one records "
                    f"into {store.url}; on PostgreSQL write the outbox in the application's "
                    "transaction (python_cqrs_core.outbox.postgres or .sqlalchemy)"
                )
            path, url = store.path, store.url
        elif isinstance(target, SQLiteStore):
            path, url = target.path, target.url
        elif isinstance(target, str):
            path, url = _path_of(target), target
        else:
            raise TypeError(
                f"expected a MessageRecorder, an SQLiteStore or an sqlite:/// URL, got {target!r}"
            )
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cqrs-sqlite-outbox")
        loop = asyncio.get_running_loop()

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                _migrate(conn, url)
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            conn = await loop.run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(
            conn, executor, url, records_queries=records_queries, abandon_after=abandon_after
        )

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, work, self._conn)

    # -- chains (the writer's ChainTransactions) -----------------------------------------

    @property
    def records_queries(self) -> bool:
        """Whether the recorder records queries (then a query can root a chain)."""
        return self._records_queries

    def begin_chain(self, root_message_id: str) -> OutboxTransaction:
        """The transaction of the chain rooted at ``root_message_id``."""
        return _ChainTransaction(self, root_message_id)

    @asynccontextmanager
    async def unit_of_work(self, delivery: Delivery) -> AsyncIterator[OutboxTransaction]:
        """A consumer's unit of work: the chain of the delivered message, made current.

        The consumer dispatches the delivered message as the root of a chain; the inbox
        mark made in this block commits with that chain's records.  If the message is
        not dispatched (a duplicate, or a failure before), what the block staged is
        dropped.
        """
        root = consumed_message_id(delivery)
        transaction = _ChainTransaction(self, root)
        transaction.consumed_message_id = root
        try:
            with use_transaction(transaction):
                yield transaction
        finally:
            if not transaction.sealed and transaction.marks:
                await transaction.discard()

    # -- the relay's storage --------------------------------------------------------------

    async def claim(
        self, owner: str, *, limit: int, run_limit: int, lease: float
    ) -> list[OutboxEntry]:
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + _SWEEP_EVERY
            await self.sweep()

        def claim(conn: sqlite3.Connection) -> list[OutboxEntry]:
            now = datetime.now(UTC)
            positions: list[int] = []
            for head, correlation in conn.execute(_HEADS, (_iso(now), _iso(now), limit)):
                run = conn.execute(_RUN, (correlation, head, run_limit)).fetchall()
                positions.extend(position for (position,) in run)
            if not positions:
                return []
            marks = _in(len(positions))
            conn.execute(
                f"UPDATE {OUTBOX_TABLE} SET claimed_by = ?, claimed_until = ? "  # noqa: S608
                f"WHERE position IN ({marks})",
                (owner, _iso(now + timedelta(seconds=lease)), *positions),
            )
            rows = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM {OUTBOX_TABLE} "  # noqa: S608
                f"WHERE position IN ({marks}) ORDER BY position",
                positions,
            ).fetchall()
            return [_entry(row) for row in rows]

        return await self._run(lambda conn: _immediate(conn, claim))

    async def mark_delivered(self, owner: str, positions: Sequence[int]) -> int:
        now = _iso(datetime.now(UTC))
        sql = (
            f"UPDATE {OUTBOX_TABLE} SET status = '{DELIVERED}', delivered_at = ?, "  # noqa: S608
            "attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL "
            f"WHERE claimed_by = ? AND status = '{PENDING}' AND position IN ({_in(len(positions))})"
        )
        return await self._run(lambda conn: _count(conn, sql, (now, owner, *positions)))

    async def release(self, owner: str, positions: Sequence[int]) -> None:
        sql = (
            f"UPDATE {OUTBOX_TABLE} SET claimed_by = NULL, claimed_until = NULL "  # noqa: S608
            f"WHERE claimed_by = ? AND position IN ({_in(len(positions))})"
        )
        await self._run(lambda conn: _count(conn, sql, (owner, *positions)))

    async def record_failure(
        self, owner: str, position: int, error: str, *, retry_in: float, max_attempts: int
    ) -> EntryStatus | None:
        def record(conn: sqlite3.Connection) -> EntryStatus | None:
            available = _iso(datetime.now(UTC) + timedelta(seconds=retry_in))
            changed = conn.execute(
                f"UPDATE {OUTBOX_TABLE} SET attempts = attempts + 1, last_error = ?, "  # noqa: S608
                f"status = CASE WHEN attempts + 1 >= ? THEN '{FAILED}' ELSE '{PENDING}' END, "
                "available_at = ?, claimed_by = NULL, claimed_until = NULL "
                f"WHERE position = ? AND claimed_by = ? AND status = '{PENDING}'",
                (error, max_attempts, available, position, owner),
            ).rowcount
            if not changed:
                return None
            row = conn.execute(
                f"SELECT status FROM {OUTBOX_TABLE} WHERE position = ?",  # noqa: S608
                (position,),
            ).fetchone()
            status: EntryStatus = row[0]
            return status

        return await self._run(lambda conn: _immediate(conn, record))

    async def backlog(self) -> int:
        sql = f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE status = '{PENDING}'"  # noqa: S608
        return int(await self._run(lambda conn: conn.execute(sql).fetchone()[0]))

    async def failed_entries(self, limit: int = 100) -> list[OutboxEntry]:
        sql = (
            f"SELECT {_ENTRY_COLUMNS} FROM {OUTBOX_TABLE} WHERE status = '{FAILED}' "  # noqa: S608
            "ORDER BY position LIMIT ?"
        )
        rows = await self._run(lambda conn: conn.execute(sql, (limit,)).fetchall())
        return [_entry(row) for row in rows]

    async def retry_failed(self, positions: Sequence[int] | None = None) -> int:
        now = _iso(datetime.now(UTC))
        sql = (
            f"UPDATE {OUTBOX_TABLE} SET status = '{PENDING}', attempts = 0, available_at = ? "  # noqa: S608
            f"WHERE status = '{FAILED}'"
        )
        params: tuple[Any, ...] = (now,)
        if positions is not None:
            sql += f" AND position IN ({_in(len(positions))})"
            params += tuple(positions)
        return await self._run(lambda conn: _count(conn, sql, params))

    async def prune(self, *, delivered_before: datetime, handled_before: datetime) -> int:
        def prune(conn: sqlite3.Connection) -> int:
            gone = conn.execute(
                f"DELETE FROM {OUTBOX_TABLE} WHERE status = '{DELIVERED}' "  # noqa: S608
                "AND delivered_at < ?",
                (_iso(delivered_before),),
            ).rowcount
            gone += conn.execute(
                f"DELETE FROM {INBOX_TABLE} WHERE handled_at < ?",  # noqa: S608
                (_iso(handled_before),),
            ).rowcount
            return int(gone)

        return await self._run(lambda conn: _immediate(conn, prune))

    async def sweep(self) -> int:
        """Delete the staged rows of chains that were never recorded, older than
        ``abandon_after``; returns how many (each logged at ERROR: their chain did not
        commit, so they were never accepted, but somebody should know why)."""
        before = _iso(datetime.now(UTC) - timedelta(seconds=self.abandon_after))

        def sweep(conn: sqlite3.Connection) -> int:
            return sum(
                int(conn.execute(_SWEEP.format(table=table), (before,)).rowcount)
                for table in ("cqrs_outbox_staged", "cqrs_inbox_staged")
            )

        gone = await self._run(lambda conn: _immediate(conn, sweep))
        if gone:
            logger.error(
                "swept %d outbox or inbox row(s) staged more than %.0fs ago by chains that "
                "were never recorded in %s (a crash before the chain committed, a store "
                "that refused it, or no MessageRecorder recording the chain's root)",
                gone,
                self.abandon_after,
                self.url,
            )
        return gone

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"<SQLiteOutbox {self.url}>"
