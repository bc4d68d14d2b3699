"""The embedded message store (``sqlite:///path.db``), on the standard ``sqlite3``.

The event loop never calls SQLite.  Writes go through **one writer thread** with
its own connection: :meth:`SQLiteStore.append` turns its records into rows, puts them
on a queue and awaits a future; the thread takes *everything* queued so far, commits
it in one transaction, and resolves the futures through ``loop.call_soon_threadsafe``.
Under load many concurrent chains therefore share one commit (group commit), and an
idle store commits a single chain at once.  (Encoding rows on the caller's side lets
the next batch be encoded while SQLite, which runs without the GIL, writes the
previous one.)  Reads run on a second thread with a second
connection; WAL mode lets them proceed while the writer commits.  A third thread
checkpoints the WAL into the database file, so that no commit waits for it.

**Durability.**  The database is in WAL mode with ``synchronous=NORMAL`` by default:
a committed transaction survives the crash or ``SIGKILL`` of the process (it is in
the WAL file, which the next open replays), but a power loss or kernel crash may lose
the last transactions before the WAL is synced.  With ``synchronous="full"`` (URL
``sqlite:///cqrs.db?synchronous=full``) every commit is ``fsync``-ed and survives a
power loss too, at the cost of one ``fsync`` per commit (group commit amortises it
under load).

Several processes may open the same file (SQLite locks it; a writer waits up to
``busy_timeout`` seconds, 5 by default, for another's transaction); for many processes
or machines writing at once, use PostgreSQL.  Positions are assigned under SQLite's
write lock, so they grow in commit order even across processes.

**Read-only** (``read_only=True``): the file is opened on the reading thread only (no
writer, no checkpointer), with ``PRAGMA query_only``: it is never created or migrated,
and no record is written.  A missing file, or one without the store's tables, is a
:class:`~python_cqrs_core.store.StoreOpenError`; a schema older than the library's is
read as it is.  (To read a WAL database SQLite needs its ``-wal`` and ``-shm``
companion files and creates them next to the database when they are missing.  A
reader that found none removes them when it closes, if it is the last connection and
may write in the directory, so a ``cqrs list`` leaves the directory as it was; like
any last SQLite connection, it first folds what the log still holds, written by a
writer that closed before it, into the database file.)

>>> import asyncio, tempfile, os
>>> async def demo(path):
...     store = await SQLiteStore.open(f"sqlite:///{path}")
...     try:
...         return await store.last_position(), await store.correlations()
...     finally:
...         await store.close()
>>> with tempfile.TemporaryDirectory() as tmp:
...     asyncio.run(demo(os.path.join(tmp, "cqrs.db")))
(0, [])
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from queue import SimpleQueue
from typing import Any, Final, Literal, TypeVar, cast
from urllib.parse import parse_qs, quote, unquote
from uuid import UUID

from ..errors import exception_message
from ..names import STORE_LOGGER
from .base import (
    MessageStore,
    Statement,
    StoreOpenError,
    StoreWriteError,
    Write,
    parse_store_url,
    url_without_password,
    wait_for_write,
)
from .columns import DELIVERIES, SQLITE, RowReader, RowWriter
from .feed import CorrelationSummary, RecordFilter
from .migrations import (
    DELIVERIES_SINCE,
    LATEST_VERSION,
    SCHEMA_VERSION_TABLE,
    SQLITE_MIGRATIONS,
    check_known,
)
from .records import (
    CausationNode,
    DeliveryRecord,
    MessageRecord,
    assemble_trees,
    id_text,
    order_chain,
)
from .sql import feed_query, summaries_query, summary_from_row

__all__ = ["SQLiteStore", "Synchronous"]

logger = logging.getLogger(STORE_LOGGER)

Synchronous = Literal["normal", "full"]
_T = TypeVar("_T")

_WRITER: Final = RowWriter(SQLITE)
_DELIVERY_WRITER: Final = RowWriter(SQLITE, DELIVERIES)


def _insert_statement(*, if_absent: bool = False) -> str:
    """The ``INSERT`` of one row, which also decides the store's own flag: a record
    opens its correlation when no record of it is stored yet.  The rows of a batch
    are inserted one after the other in one transaction, under the write lock, so
    the second record of a new correlation already sees the first.  ``if_absent``:
    a row whose message id is stored already is skipped (a received record)."""
    names = ", ".join(_WRITER.names)
    values = ", ".join(f"?{n}" for n in range(1, len(_WRITER.names) + 1))
    correlation = _WRITER.index("correlation_id") + 1
    skip = " ON CONFLICT (message_id) DO NOTHING" if if_absent else ""
    return (
        f"INSERT INTO cqrs_messages ({names}, opens_correlation) VALUES ({values}, "  # noqa: S608
        f"NOT EXISTS (SELECT 1 FROM cqrs_messages WHERE correlation_id = ?{correlation})){skip}"
    )


_INSERT: Final = _insert_statement()
_INSERT_IF_ABSENT: Final = _insert_statement(if_absent=True)
_INSERT_DELIVERY: Final = (
    f"INSERT INTO cqrs_deliveries ({', '.join(_DELIVERY_WRITER.names)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(_DELIVERY_WRITER.names))})"
)
_LAST_POSITION: Final = "SELECT COALESCE(MAX(position), 0) FROM cqrs_messages"
_IDS_PER_QUERY: Final = 500  # message ids per "IN (...)" (SQLite caps the parameters)
# A range of the message_id index, then sorted by position: "+position" keeps SQLite
# from walking the whole table in position order instead (it has no statistics to
# tell it that the range is small).
_IDS_IN_RANGE: Final = (
    "SELECT message_id FROM cqrs_messages WHERE message_id BETWEEN ? AND ? "
    "ORDER BY +position LIMIT ?"
)


class _Queries:
    """The reading SQL of one schema version (older ones lack columns)."""

    def __init__(self, version: int) -> None:
        self.reader = reader = RowReader(SQLITE, version)
        self.version = version
        select = reader.select
        self.one = f"SELECT {select} FROM cqrs_messages WHERE message_id = ?"  # noqa: S608
        self.correlation = (
            f"SELECT {select} FROM cqrs_messages WHERE correlation_id = ? ORDER BY position"  # noqa: S608
        )
        # Recursive queries: UNION (not UNION ALL) drops rows already produced, so a
        # cycle in stored links ends the recursion instead of looping.
        self.causes = f"""
WITH RECURSIVE chain (message_id, causation_id) AS (
    SELECT message_id, causation_id FROM cqrs_messages WHERE message_id = ?
    UNION
    SELECT m.message_id, m.causation_id
    FROM cqrs_messages AS m JOIN chain ON m.message_id = chain.causation_id
)
SELECT {select} FROM cqrs_messages WHERE message_id IN (SELECT message_id FROM chain)
"""  # noqa: S608
        self.effects = f"""
WITH RECURSIVE effects (message_id) AS (
    SELECT message_id FROM cqrs_messages WHERE message_id = ?
    UNION
    SELECT m.message_id FROM cqrs_messages AS m JOIN effects ON m.causation_id = effects.message_id
)
SELECT {select} FROM cqrs_messages
WHERE message_id IN (SELECT message_id FROM effects) AND message_id <> ?
ORDER BY position
"""  # noqa: S608

        # Deliveries (none in a store older than schema 4: no table to read).
        self.has_deliveries = version >= DELIVERIES_SINCE
        self.deliveries = RowReader(SQLITE, version, DELIVERIES)
        picked = f"SELECT {self.deliveries.select} FROM cqrs_deliveries"  # noqa: S608
        self.delivery_feed = f"{picked} WHERE position > ? ORDER BY position LIMIT ?"
        self.correlation_deliveries = f"{picked} WHERE correlation_id = ? ORDER BY position"
        self.deliveries_of = picked + " WHERE message_id IN ({}) ORDER BY position"

    def fetch(
        self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]
    ) -> list[MessageRecord]:
        """The records of the rows ``sql`` selects."""
        record = self.reader.record
        return [record(row) for row in conn.execute(sql, params).fetchall()]

    def fetch_deliveries(
        self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]
    ) -> list[DeliveryRecord]:
        """The deliveries of the rows ``sql`` selects (``[]`` before schema 4)."""
        if not self.has_deliveries:
            return []
        delivery = self.deliveries.record
        return [delivery(row) for row in conn.execute(sql, params).fetchall()]


_queries = cache(_Queries)
"""The queries of a schema version, built once."""


def _connect(path: str, synchronous: Synchronous, busy_timeout: float) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; the store issues BEGIN/COMMIT.
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    # Switching a new file to WAL takes an exclusive lock, and SQLite reports a
    # concurrent opener as busy at once instead of calling the busy handler: retry.
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            journal = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.005)
    if str(journal).lower() != "wal":
        conn.close()
        raise RuntimeError(f"SQLite could not put {path!r} in WAL mode (got {journal!r})")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def _read_only_mode(path: str) -> str:
    """How to open an existing store for reading without leaving anything behind.

    A reader of a WAL database needs the ``-wal`` and ``-shm`` files and creates them
    when they are missing; the last connection to close deletes them again, but only
    if it may write.  So when neither file is there (no other connection is open) and
    the database and its directory are writable, the reader opens with ``mode=rw`` (the
    file must exist; ``query_only`` refuses every write) and leaves the directory as
    it found it.  Otherwise ``mode=ro``: the files are someone else's, or cannot be
    removed anyway.
    """
    database = Path(path)
    companions = any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm"))
    writable = os.access(database, os.W_OK) and os.access(database.parent, os.W_OK)
    return "rw" if writable and not companions else "ro"


def _connect_read_only(path: str, busy_timeout: float, url: str) -> tuple[sqlite3.Connection, int]:
    """A reading connection to an existing store, and its schema version."""
    if not Path(path).is_file():
        raise StoreOpenError(
            f"no message store at {path} (from {url}): the file does not exist, and a "
            "store opened read-only is never created"
        )
    conn = sqlite3.connect(
        f"file:{quote(path)}?mode={_read_only_mode(path)}",
        uri=True,
        timeout=busy_timeout,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        conn.execute("PRAGMA query_only=ON")
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name IN ('cqrs_messages', 'cqrs_schema_version')"
            )
        }
        if len(tables) < 2:
            raise StoreOpenError(
                f"{url} is not a message store: {path} has no cqrs_messages table "
                "(opened read-only, so nothing was created in it)"
            )
        version = int(
            conn.execute("SELECT COALESCE(MAX(version), 0) FROM cqrs_schema_version").fetchone()[0]
        )
        check_known(version, SQLITE_MIGRATIONS, url)
    except BaseException:
        conn.close()
        raise
    return conn, version


def _migrate(conn: sqlite3.Connection, where: str) -> int:
    """Apply the missing migrations (idempotent, under the database write lock)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(SCHEMA_VERSION_TABLE)
        applied = conn.execute("SELECT COALESCE(MAX(version), 0) FROM cqrs_schema_version")
        current = int(applied.fetchone()[0])
        check_known(current, SQLITE_MIGRATIONS, where)
        for migration in SQLITE_MIGRATIONS:
            if migration.version > current:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO cqrs_schema_version (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (migration.version, migration.description, datetime.now(UTC).isoformat()),
                )
                current = migration.version
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return current


class _Extras:
    """What an append carries besides its records (see :meth:`SQLiteStore.append`):
    rows of received records, rows of deliveries, and statements."""

    __slots__ = ("deliveries", "received", "statements")

    def __init__(
        self,
        received: Sequence[MessageRecord],
        deliveries: Sequence[DeliveryRecord],
        statements: Sequence[Statement],
    ) -> None:
        self.received = _WRITER.rows(received) if received else []
        self.deliveries = _DELIVERY_WRITER.rows(deliveries) if deliveries else []
        self.statements = statements


class _Job:
    """One :meth:`SQLiteStore.append`: its rows (converted by the caller, so that the
    writer thread spends its time in SQLite), what else it writes, and the future its
    coroutine awaits."""

    __slots__ = ("extras", "future", "loop", "rows")

    def __init__(
        self,
        records: Sequence[MessageRecord],
        extras: _Extras | None,
        future: Write,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.rows = _WRITER.rows(records)
        self.extras = extras
        self.future = future
        self.loop = loop


_STOP: Final = object()


# Commits between two WAL checkpoints (a commit of one chain writes ~6 pages, so this
# is close to SQLite's own default of checkpointing every 1,000 pages).
_CHECKPOINT_EVERY_COMMITS = 200
_CHECKPOINT_EVERY_ROWS = 20_000


class _Checkpointer(threading.Thread):
    """Copies the WAL back into the database file, off the commit path.

    SQLite's automatic checkpoint runs inside the ``COMMIT`` that crosses the
    threshold, adding its ``fsync`` calls to that commit's latency; the writer turns it
    off and wakes this thread instead, whose ``PASSIVE`` checkpoint never blocks
    writers (nor readers).
    """

    def __init__(self, conn: sqlite3.Connection, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.conn = conn
        self.wanted = threading.Event()
        self.stopping = False

    def run(self) -> None:
        try:
            while True:
                self.wanted.wait()
                self.wanted.clear()
                if self.stopping:
                    return
                try:
                    self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    logger.warning("WAL checkpoint failed; retried later", exc_info=True)
        finally:
            self.conn.close()

    def stop(self) -> None:
        self.stopping = True
        self.wanted.set()
        self.join()


class _Writer(threading.Thread):
    """The one thread that writes: drains the queue, one transaction per drain."""

    def __init__(self, conn: sqlite3.Connection, checkpointer: _Checkpointer, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.conn = conn
        self.checkpointer = checkpointer
        self.queue: SimpleQueue[_Job | object] = SimpleQueue()
        self.commits = self.rows = 0  # since the last checkpoint request

    def run(self) -> None:
        queue, stop = self.queue, False
        conn = self.conn
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
        self.checkpointer.start()
        try:
            while not stop:
                jobs: list[_Job] = []
                item = queue.get()
                while True:
                    if item is _STOP:
                        stop = True
                    else:
                        jobs.append(cast(_Job, item))
                    if queue.empty():
                        break
                    item = queue.get()
                if jobs:
                    self._commit(jobs)
                    self.commits += 1
                    self.rows += sum(len(job.rows) for job in jobs)
                    if (
                        self.commits >= _CHECKPOINT_EVERY_COMMITS
                        or self.rows >= _CHECKPOINT_EVERY_ROWS
                    ):
                        self.commits = self.rows = 0
                        self.checkpointer.wanted.set()
        finally:
            self.checkpointer.stop()
            conn.close()

    def _commit(self, jobs: list[_Job]) -> None:
        try:
            self._transaction(jobs)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting coroutines
            if len(jobs) == 1:
                self._resolve(jobs, exc)
                return
            # One bad batch must not fail the others it was grouped with.
            for job in jobs:
                try:
                    self._transaction([job])
                except Exception as job_exc:  # noqa: BLE001 - handed to its coroutine
                    self._resolve([job], job_exc)
                else:
                    self._resolve([job], None)
        else:
            self._resolve(jobs, None)

    def _transaction(self, jobs: list[_Job]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if all(job.extras is None for job in jobs):
                # One statement for the whole drain: the writer thread holds the GIL
                # only to bind each row's values, and SQLite (without the GIL) does the
                # rest.
                rows = jobs[0].rows if len(jobs) == 1 else [r for job in jobs for r in job.rows]
                conn.executemany(_INSERT, rows)
            else:
                for job in jobs:
                    _write_job(conn, job)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _resolve(jobs: list[_Job], error: BaseException | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for job in jobs:
            by_loop.setdefault(job.loop, []).append(job.future)
        for loop, futures in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, futures, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                logger.debug("event loop closed before a store write was acknowledged")


def _write_job(conn: sqlite3.Connection, job: _Job) -> None:
    """Write one job inside the writer's transaction: its received records (if
    absent), its records, its deliveries, then its statements."""
    extras = job.extras
    if extras is None:
        conn.executemany(_INSERT, job.rows)
        return
    if extras.received:
        conn.executemany(_INSERT_IF_ABSENT, extras.received)
    if job.rows:
        conn.executemany(_INSERT, job.rows)
    if extras.deliveries:
        conn.executemany(_INSERT_DELIVERY, extras.deliveries)
    for statement in extras.statements:
        conn.execute(statement.sql, statement.params)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # settled already (a Write is never cancelled)
            continue
        if error is None:
            future.set_result(None)
        elif isinstance(error, StoreWriteError):
            future.set_exception(error)
        else:
            wrapped = StoreWriteError(f"SQLite rejected the batch: {exception_message(error)}")
            wrapped.__cause__ = error
            future.set_exception(wrapped)


_OPTIONS: Final = ("synchronous",)
"""The query options an SQLite URL may hold."""


def _parse_url(url: str) -> tuple[str, Synchronous | None]:
    parts = parse_store_url(url)
    shown = url_without_password(url)
    if parts.scheme.lower().partition("+")[0] != "sqlite":  # also sqlite+aiosqlite://
        raise ValueError(f"not an sqlite:// URL: {shown!r}")
    if parts.netloc:
        raise ValueError(
            f"an SQLite URL has no host: use sqlite:///relative.db or sqlite:////abs.db, "
            f"got {shown!r}"
        )
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path or path == ":memory:":
        raise ValueError(f"an SQLite store needs a file path (use memory:// otherwise): {shown!r}")
    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(options.keys() - _OPTIONS)
    if unknown:  # named, never their values (one may be a password given by mistake)
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} in the SQLite URL "
            f"{shown!r}: it takes {', '.join(_OPTIONS)}"
        )
    synchronous: Synchronous | None = None
    for value in options.get("synchronous", []):
        synchronous = _synchronous(value)
    return path, synchronous


def _synchronous(value: str) -> Synchronous:
    lowered = value.lower()
    if lowered not in ("normal", "full"):
        raise ValueError(f"synchronous must be 'normal' or 'full', got {value!r}")
    return cast(Synchronous, lowered)


class SQLiteStore(MessageStore):
    """A :class:`~python_cqrs_core.store.MessageStore` in one SQLite file.

    Open it with :func:`~python_cqrs_core.store.open_store` or :meth:`open`.

    Its :meth:`append` runs statements (:class:`~python_cqrs_core.store.Statement`)
    in the transaction of its batch (``runs_statements``): a table of your own in the
    store's file (the embedded outbox's) is written in the very commit of a chain's
    records, through :meth:`~python_cqrs_core.store.MessageRecorder.attach`.
    """

    runs_statements = True

    def __init__(
        self,
        url: str,
        path: str,
        writer: _Writer | None,
        reader: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        synchronous: Synchronous,
        version: int,
    ) -> None:
        self.url = url
        self.path = path
        self.synchronous = synchronous
        self.read_only = writer is None
        self._writer = writer
        self._reader = reader
        self._executor = executor
        self._queries = _queries(version)
        self._closed = False

    @property
    def schema_version(self) -> int:
        """The schema version of the file (older than the library's only when it was
        opened read-only before being migrated)."""
        return self._queries.version

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        read_only: bool = False,
        synchronous: Synchronous | None = None,
        busy_timeout: float = 5.0,
    ) -> SQLiteStore:
        """Open the store at ``url`` (``sqlite:///path.db``), creating the file and
        applying migrations as needed, or, with ``read_only``, opening an existing
        store without changing anything (see the module docs).  ``synchronous``
        (``"normal"`` or ``"full"``) overrides the URL's ``?synchronous=``."""
        path, from_url = _parse_url(url)
        mode = _synchronous(synchronous) if synchronous is not None else from_url or "normal"
        parent = Path(path).parent
        if not read_only and not parent.is_dir():
            raise FileNotFoundError(f"directory {str(parent)!r} of the SQLite store does not exist")

        def setup() -> tuple[sqlite3.Connection, ...]:
            connections = [_connect(path, mode, busy_timeout)]
            try:
                _migrate(connections[0], url)
                connections.append(_connect(path, mode, busy_timeout))  # reader
                connections.append(_connect(path, mode, busy_timeout))  # checkpointer
            except BaseException:
                for conn in connections:
                    conn.close()
                raise
            return tuple(connections)

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cqrs-sqlite-reader")
        loop = asyncio.get_running_loop()
        try:
            if read_only:
                reader, version = await loop.run_in_executor(
                    executor, _connect_read_only, path, busy_timeout, url
                )
                return cls(url, path, None, reader, executor, mode, version)
            writer_conn, reader_conn, checkpoint_conn = await loop.run_in_executor(executor, setup)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        checkpointer = _Checkpointer(checkpoint_conn, name=f"cqrs-sqlite-checkpoint {path}")
        writer = _Writer(writer_conn, checkpointer, name=f"cqrs-sqlite-writer {path}")
        writer.start()
        return cls(url, path, writer, reader_conn, executor, mode, LATEST_VERSION)

    # -- writing ----------------------------------------------------------------------

    async def append(
        self,
        records: Sequence[MessageRecord],
        *,
        received: Sequence[MessageRecord] = (),
        deliveries: Sequence[DeliveryRecord] = (),
        statements: Sequence[Statement] = (),
    ) -> None:
        """Store ``records`` atomically (see :meth:`MessageStore.append`), with
        ``received``, ``deliveries`` and ``statements`` in the same transaction.

        ``statements`` run on the writer's connection, after the batch's rows, in the
        order given; one that fails rejects the batch (and only it, not the batches
        it shared a commit with), with a :class:`StoreWriteError` chaining SQLite's.
        """
        self._check_open()
        self.check_writable()
        if not (records or received or deliveries or statements):
            return
        loop = asyncio.get_running_loop()
        future = Write(loop=loop)
        try:
            extras = (
                _Extras(received, deliveries, statements)
                if received or deliveries or statements
                else None
            )
            job = _Job(records, extras, future, loop)
        except (TypeError, ValueError) as exc:  # a payload or header JSON cannot hold
            raise StoreWriteError(
                f"cannot encode the batch for SQLite: {exception_message(exc)}"
            ) from exc
        cast(_Writer, self._writer).queue.put(job)
        what = f"{len(records) + len(received)} record(s), {len(deliveries)} deliveries"
        await wait_for_write(future, f"{what} for {self.url}")

    # -- reading ----------------------------------------------------------------------

    async def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        self._check_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, query, self._reader)

    async def get(self, message_id: UUID | str) -> MessageRecord | None:
        key, queries = id_text(message_id), self._queries

        def query(conn: sqlite3.Connection) -> MessageRecord | None:
            row = conn.execute(queries.one, (key,)).fetchone()
            return None if row is None else queries.reader.record(row)

        return await self._read(query)

    async def by_correlation(self, correlation_id: str | UUID) -> list[MessageRecord]:
        key, queries = id_text(correlation_id), self._queries
        return await self._read(lambda conn: queries.fetch(conn, queries.correlation, (key,)))

    async def trace_causation(self, message_id: UUID | str) -> list[MessageRecord]:
        key, queries = id_text(message_id), self._queries
        rows = await self._read(lambda conn: queries.fetch(conn, queries.causes, (key,)))
        return order_chain(key, {str(r.message_id): r for r in rows})

    async def trace_effects(self, message_id: UUID | str) -> list[MessageRecord]:
        key, queries = id_text(message_id), self._queries
        return await self._read(lambda conn: queries.fetch(conn, queries.effects, (key, key)))

    async def fetch_message_ids(self, low: UUID, high: UUID, limit: int) -> list[UUID]:
        params = (str(low), str(high), limit)
        rows = await self._read(lambda conn: conn.execute(_IDS_IN_RANGE, params).fetchall())
        return [UUID(row[0]) for row in rows]

    async def build_causation_tree(self, correlation_id: str | UUID) -> list[CausationNode]:
        key, queries = id_text(correlation_id), self._queries

        def query(conn: sqlite3.Connection) -> tuple[list[MessageRecord], list[DeliveryRecord]]:
            records = queries.fetch(conn, queries.correlation, (key,))
            if not records:
                return records, []
            return records, queries.fetch_deliveries(conn, queries.correlation_deliveries, (key,))

        records, deliveries = await self._read(query)  # one trip to the reading thread
        return assemble_trees(records, deliveries)

    async def fetch_deliveries_of(self, message_ids: list[str]) -> list[DeliveryRecord]:
        queries = self._queries

        def query(conn: sqlite3.Connection) -> list[DeliveryRecord]:
            found: list[DeliveryRecord] = []
            for start in range(0, len(message_ids), _IDS_PER_QUERY):
                chunk = message_ids[start : start + _IDS_PER_QUERY]
                sql = queries.deliveries_of.format(", ".join("?" * len(chunk)))
                found += queries.fetch_deliveries(conn, sql, chunk)
            found.sort(key=lambda delivery: cast(int, delivery.position))
            return found

        return await self._read(query)

    async def deliveries_by_correlation(self, correlation_id: str | UUID) -> list[DeliveryRecord]:
        key, queries = id_text(correlation_id), self._queries
        return await self._read(
            lambda conn: queries.fetch_deliveries(conn, queries.correlation_deliveries, (key,))
        )

    async def fetch_deliveries(self, after: int, limit: int) -> list[DeliveryRecord]:
        queries = self._queries
        return await self._read(
            lambda conn: queries.fetch_deliveries(conn, queries.delivery_feed, (after, limit))
        )

    async def fetch_records(
        self, after: int, limit: int, where: RecordFilter
    ) -> list[MessageRecord]:
        queries = self._queries
        sql, params = feed_query(
            queries.reader.select, SQLITE, queries.version, after=after, limit=limit, where=where
        )
        return await self._read(lambda conn: queries.fetch(conn, sql, params))

    async def last_position(self) -> int:
        return await self._read(lambda conn: int(conn.execute(_LAST_POSITION).fetchone()[0]))

    async def fetch_correlations(
        self, limit: int, before: int | None, where: RecordFilter
    ) -> list[CorrelationSummary]:
        sql, params = summaries_query(
            SQLITE, self._queries.version, limit=limit, before=before, where=where
        )
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [summary_from_row(row, SQLITE) for row in rows]

    # -- lifecycle ----------------------------------------------------------------------

    async def close(self) -> None:
        """Finish the queued writes, then close the connections and threads."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        if self._writer is not None:
            self._writer.queue.put(_STOP)
            await loop.run_in_executor(self._executor, self._writer.join)
        await loop.run_in_executor(self._executor, self._reader.close)
        self._executor.shutdown(wait=True)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
