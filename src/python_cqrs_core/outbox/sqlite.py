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

**How.**  Each routed message's entry is an ``INSERT`` into ``cqrs_outbox`` that the
recorder attaches to the chain it is dispatched in
(:meth:`MessageRecorder.attach <python_cqrs_core.store.MessageRecorder.attach>`): the
store's writer runs it in the very transaction that commits the chain's records, if
the chain's root dispatch succeeded; a root that fails drops it, as a rolled-back
transaction would.  Nothing is written before the chain commits, so nothing is left
behind by a chain that never does (the process died, the store refused the batch).
A consumer's inbox marks go the same way: :meth:`SQLiteOutbox.unit_of_work` opens a
:meth:`MessageRecorder.chain <python_cqrs_core.store.MessageRecorder.chain>` block, so
the mark made before the delivered message is dispatched commits with that message's
chain.

This needs the recorder that records the chains: open the outbox with it
(``SQLiteOutbox.open(recorder)``), and install the writer after the recorder, on the
same bus.  An outbox opened with the store or its URL (a relay in another process)
reads and updates entries only.  The relay's updates are short ``BEGIN IMMEDIATE``
transactions on a connection of this object's own thread, sharing the store's file
through SQLite's own locking.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

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

_T = TypeVar("_T")

# Attached to a chain's commit (an entry already written is left as it is: the message
# was written before; a mark already committed by a concurrent chain too).
_WRITE_ENTRY: Final = f"""
INSERT INTO {OUTBOX_TABLE} (
    message_id, message_type, destination, correlation_id, causation_id, headers, body,
    status, attempts, created_at, available_at
) VALUES (?, ?, ?, ?, ?, ?, ?, '{PENDING}', 0, ?, ?)
ON CONFLICT (message_id) DO NOTHING
"""  # noqa: S608
_MARK_HANDLED: Final = (
    f"INSERT INTO {INBOX_TABLE} (consumer_group, message_id, handled_at) "  # noqa: S608
    "VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
)
_HANDLED: Final = f"SELECT 1 FROM {INBOX_TABLE} WHERE consumer_group = ? AND message_id = ?"  # noqa: S608
_ENTRY_COLUMNS: Final = (
    "position, message_id, message_type, destination, correlation_id, causation_id, "
    "headers, body, status, attempts, created_at, last_error"
)
# A claim reads what it claims, however long the backlog: the heads walk the pending
# entries in position order and stop at the limit, and each run is read through its
# correlation's open entries (its WHERE repeats cqrs_outbox_open's predicate, so that
# the index can serve it).  INDEXED BY pins those plans, whatever ANALYZE may later
# tell SQLite's planner: read through cqrs_outbox_pending instead, one run of a
# backlog of 20,000 entries took 2 ms, and a claim of 100 heads 200 ms.
_HEADS: Final = f"""
SELECT h.position, h.correlation_id FROM {OUTBOX_TABLE} AS h INDEXED BY cqrs_outbox_pending
WHERE h.status = '{PENDING}'
  AND h.available_at <= ?
  AND (h.claimed_until IS NULL OR h.claimed_until < ?)
  AND NOT EXISTS (
      SELECT 1 FROM {OUTBOX_TABLE} AS e INDEXED BY cqrs_outbox_open
      WHERE e.correlation_id = h.correlation_id
        AND e.status <> '{DELIVERED}'
        AND e.position < h.position
  )
ORDER BY h.position
LIMIT ?
"""  # noqa: S608
_RUN: Final = f"""
SELECT position FROM {OUTBOX_TABLE} INDEXED BY cqrs_outbox_open
WHERE correlation_id = ? AND status <> '{DELIVERED}' AND status = '{PENDING}' AND position >= ?
ORDER BY position LIMIT ?
"""  # noqa: S608


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
    return OutboxEntry.from_row(row, datetime.fromisoformat(row[10]))  # ISO 8601 text


class _ChainTransaction(OutboxTransaction):
    """The transaction of one chain: what it writes is attached to the chain's commit
    (:meth:`MessageRecorder.attach <python_cqrs_core.store.MessageRecorder.attach>`)."""

    per_chain = True

    def __init__(self, outbox: SQLiteOutbox, recorder: MessageRecorder, root: str) -> None:
        self.outbox = outbox
        self.recorder = recorder
        self.root_message_id = root
        self.sealed = False
        self.marks: set[tuple[str, str]] = set()

    async def write(self, message: OutboxMessage) -> None:
        now = _iso(datetime.now(UTC))
        await self.recorder.attach(
            _WRITE_ENTRY,
            (
                message.message_id,
                message.message_type,
                message.destination,
                message.correlation_id,
                message.causation_id,
                json.dumps(dict(message.headers), separators=(",", ":")),
                message.body,
                now,
                now,
            ),
        )

    async def mark_handled(self, group: str, message_id: str) -> bool:
        if (group, message_id) in self.marks:
            return False
        if await self.handled(group, message_id):
            return False
        await self.recorder.attach(_MARK_HANDLED, (group, message_id, _iso(datetime.now(UTC))))
        self.marks.add((group, message_id))
        return True

    async def handled(self, group: str, message_id: str) -> bool:
        if (group, message_id) in self.marks:
            return True
        found = await self.outbox._run(
            lambda conn: conn.execute(_HANDLED, (group, message_id)).fetchone()
        )
        return found is not None


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
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        url: str,
        *,
        recorder: MessageRecorder | None,
    ) -> None:
        self.url = url
        self.recorder = recorder
        self._conn = conn
        self._executor = executor
        self._closed = False

    @classmethod
    async def open(
        cls,
        target: MessageRecorder | SQLiteStore | str,
        *,
        busy_timeout: float = 5.0,
    ) -> SQLiteOutbox:
        """Open the outbox of a message store's file, creating its tables if needed.

        ``target`` is the :class:`~python_cqrs_core.store.MessageRecorder` recording the
        chains whose routed messages go out, or whose consumers mark their inbox (what
        a service that writes entries or marks needs: they commit with its chains),
        its :class:`~python_cqrs_core.store.SQLiteStore`, or the store's URL
        (``sqlite:///cqrs.db``: enough for a relay in another process).  The store must
        exist (it is the store's own migrations that create ``cqrs_messages``).
        """
        recorder: MessageRecorder | None = None
        if isinstance(target, MessageRecorder):
            recorder = target
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
        return cls(conn, executor, url, recorder=recorder)

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, work, self._conn)

    # -- chains (the writer's ChainTransactions) -----------------------------------------

    @property
    def records_queries(self) -> bool:
        """Whether the recorder records queries (then a query can root a chain)."""
        return self.recorder is not None and self.recorder.record_queries

    def begin_chain(self, root_message_id: str) -> OutboxTransaction:
        """The transaction of the chain rooted at ``root_message_id``."""
        return _ChainTransaction(self, self._recorder("write outbox entries"), root_message_id)

    @asynccontextmanager
    async def unit_of_work(self, delivery: Delivery) -> AsyncIterator[OutboxTransaction]:
        """A consumer's unit of work: the chain of the delivered message, made current.

        The consumer dispatches the delivered message as the root of a chain; the inbox
        mark made in this block (before that dispatch) commits with that chain's
        records, if its root dispatch succeeds.  If the message is not dispatched (a
        duplicate, or a failure before), the mark is never written.
        """
        recorder = self._recorder("mark a consumer's inbox")
        root = consumed_message_id(delivery)
        transaction = _ChainTransaction(self, recorder, root)
        transaction.consumed_message_id = root
        with recorder.chain(), use_transaction(transaction):
            yield transaction

    def _recorder(self, what: str) -> MessageRecorder:
        if self.recorder is None:
            raise RuntimeError(
                f"{self!r} was opened without the MessageRecorder recording the chains, so "
                f"it cannot {what} (they commit with a chain's records): open it with "
                "SQLiteOutbox.open(recorder)"
            )
        return self.recorder

    # -- the relay's storage --------------------------------------------------------------

    async def claim(
        self, owner: str, *, limit: int, run_limit: int, lease: float
    ) -> list[OutboxEntry]:
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

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"<SQLiteOutbox {self.url}>"
