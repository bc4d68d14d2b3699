"""The message store interface, :class:`MessageStore`, and the store's errors.

Every backend implements the same asynchronous interface; which backends exist, and
how a URL picks one, is :mod:`python_cqrs_core.store.backends` (:func:`open_store`)::

    async with await open_store("sqlite:///cqrs.db", read_only=True) as store:
        for tree in await store.build_causation_tree("req-abc-123"):
            for depth, node in tree.walk():
                print("  " * depth, node.record.message_type, node.record.outcome)

Traversal (:meth:`~MessageStore.trace_causation`, :meth:`~MessageStore.trace_effects`,
:meth:`~MessageStore.build_causation_tree`) is answered from the correlation and
causation indexes on every backend, never by scanning the store, so its cost depends
on the size of the chain, not of the store.  The feed (:meth:`~MessageStore.read`,
:meth:`~MessageStore.last_position`) and the summaries
(:meth:`~MessageStore.correlations`) are answered from the position order and the
filter indexes (see :mod:`python_cqrs_core.store.migrations`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit
from uuid import UUID

from ..errors import CQRSError, exception_message
from ..messages import MessageKind
from ..names import STORE_LOGGER
from .feed import CorrelationSummary, RecordFilter, check_after, check_before, check_limit
from .records import (
    CausationNode,
    DeliveryRecord,
    MessageRecord,
    Outcome,
    assemble_trees,
    id_prefix_bounds,
    id_text,
)

__all__ = [
    "MessageAlreadyRecordedError",
    "MessageStore",
    "ReadOnlyStoreError",
    "Statement",
    "StoreOpenError",
    "StoreWriteError",
    "parse_store_url",
    "scrubbed_errors",
    "url_secrets",
    "url_without_password",
    "wait_for_write",
    "Write",
]

logger = logging.getLogger(STORE_LOGGER)


class StoreOpenError(CQRSError):
    """The store at a URL could not be opened: server down, unknown database, wrong
    credentials, a file that is not a store, a schema newer than this library.

    The driver's own exception is chained (``__cause__``); the message shows the URL
    with its password masked.
    """


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_USER_INFO = re.compile(r":[^@]*@")
# A password given as a query option (the PostgreSQL driver takes password= and
# sslpassword=).
_QUERY_PASSWORD = re.compile(r"(?i)((?:^|[&;])(?:ssl)?password=)([^&;#]*)")


def url_without_password(url: str) -> str:
    """``url`` with every password in it replaced by ``***``: safe to print or log.

    The password of the authority (``user:password@host``) and those given as
    query options (``?password=...``, ``?sslpassword=...``) are masked.  A URL that
    cannot be read with certainty (it does not parse, or holds an ``@`` after its
    host, as a password with an unencoded ``/``, ``?`` or ``#`` leaves it) is shown
    as its scheme alone, never as it was written.

    >>> url_without_password("postgresql://app:s3cret@db:5432/orders?sslpassword=k3y")
    'postgresql://app:***@db:5432/orders?sslpassword=***'
    >>> url_without_password("postgresql://app:pa/ss@db/orders")
    'postgresql://***'
    >>> url_without_password("sqlite:///cqrs.db")
    'sqlite:///cqrs.db'
    """
    return _shown(url)[0]


def _shown(url: str) -> tuple[str, bool]:
    """``url`` without its passwords, and whether it could be read with certainty."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        port = host.rpartition("]")[2].partition(":")[2]
    except ValueError:
        return _unreadable(url), False
    if "@" not in parts.netloc:
        # A user and password that did not end up in the netloc ("user:pass/word@host",
        # "scheme:/user:password@host", text that is no URL): shown as nothing.
        start = url.find("//" + parts.netloc) + 2 + len(parts.netloc) if "//" in url else 0
        after = url[start:]
        if "@" in after and ((port and not port.isdigit()) or _USER_INFO.search(after)):
            return _unreadable(url), False
    shown = url
    if parts.password is not None:  # the netloc follows the first "//"
        user = parts.netloc.rpartition("@")[0].partition(":")[0]
        shown = shown.replace(f"//{parts.netloc}", f"//{user}:***@{host}", 1)
    if parts.query:
        start = shown.index("?") + 1
        end = start + len(parts.query)
        shown = shown[:start] + _QUERY_PASSWORD.sub(r"\1***", parts.query) + shown[end:]
    return shown, True


def _unreadable(url: str) -> str:
    scheme, separator, _ = url.partition("://")
    return f"{scheme}://***" if separator and _SCHEME.fullmatch(scheme) else "***"


def parse_store_url(url: str) -> SplitResult:
    """``url`` split into its parts, or a :class:`ValueError` that says what is wrong
    with it and shows it without its password (:func:`url_without_password`): a URL
    that does not parse, a port that is not a number from 0 to 65535, or an ``@``
    after the host (a password holding ``/``, ``?`` or ``#`` must be written
    percent-encoded).

    What :func:`~python_cqrs_core.store.open_store` checks first, so that no driver
    ever gets to repeat a malformed URL, or a piece of its password, in an error.
    """
    shown, readable = _shown(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # urllib's reasons name no part of the URL
        raise ValueError(f"cannot read the store URL {shown}: {exc}") from None
    if not readable:
        raise ValueError(
            f"cannot read the store URL {shown}: it holds an '@' after its host; write a "
            "password holding '/', '?', '#' or '@' percent-encoded "
            "(urllib.parse.quote(password, safe=''))"
        )
    try:
        parts.port  # noqa: B018 - reading it checks it
    except ValueError:
        raise ValueError(
            f"cannot read the store URL {shown}: its port must be a number from 0 to 65535"
        ) from None
    return parts


def url_secrets(url: str) -> list[str]:
    """The passwords written in ``url``, as written and decoded: what an error
    message must never repeat (see :func:`scrubbed_errors`)."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    written = [parts.password or ""]
    written += [m.group(2) for m in _QUERY_PASSWORD.finditer(parts.query)]
    for secret in written:
        for form in (secret, unquote(secret), unquote_plus(secret)):
            if form and form not in found:
                found.append(form)
    return found


def _texts(error: BaseException) -> Iterator[str]:
    """The text of an exception and of the exceptions chained to it, notes included."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        yield exception_message(current)
        yield from (str(note) for note in getattr(current, "__notes__", ()))
        current = current.__cause__ or current.__context__


@contextmanager
def scrubbed_errors(url: str) -> Iterator[None]:
    """Open a store at ``url`` inside this block: errors reach the caller without any
    password of the URL in them, or in what is chained to them.

    A :class:`ValueError`, :class:`TypeError` or :class:`StoreOpenError` (the
    caller's mistake, or already explained) goes through as it is when it repeats no
    password, else as a new exception of its kind with the password replaced by
    ``***`` and nothing chained.  Any other error becomes a :class:`StoreOpenError`
    naming the URL without its password, with the driver's error chained when that
    repeats no password either.
    """
    try:
        yield
    except (ValueError, TypeError, StoreOpenError) as exc:
        secrets = url_secrets(url)
        if not any(secret in text for text in _texts(exc) for secret in secrets):
            raise
        kind = StoreOpenError if isinstance(exc, StoreOpenError) else type(exc)
        raise _rebuilt(kind, _scrub(exception_message(exc), secrets)) from None
    except Exception as exc:
        secrets = url_secrets(url)
        text = (
            f"cannot open the message store {url_without_password(url)}: "
            f"{type(exc).__name__}: {exception_message(exc)}"
        )
        if any(secret in part for part in _texts(exc) for secret in secrets):
            raise StoreOpenError(_scrub(text, secrets)) from None
        raise StoreOpenError(text) from exc


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _rebuilt(kind: type[BaseException], text: str) -> BaseException:
    try:
        return kind(text)
    except Exception:  # noqa: BLE001 - an exception class with another signature
        base = next(b for b in (StoreOpenError, ValueError, TypeError) if issubclass(kind, b))
        return base(text)


class Write(asyncio.Future[None]):
    """The outcome of a batch already handed to the database: a future that cannot be
    cancelled.

    A task awaiting one and cancelled meanwhile (an event loop shutting down cancels
    every task) receives its :class:`asyncio.CancelledError` once the write has
    ended, never while its fate is unknown: asyncio delivers the cancellation of a
    task when the future it waits for refuses to be cancelled, as soon as that future
    is done.  Every SQL backend's :meth:`MessageStore.append` awaits one through
    :func:`wait_for_write`.
    """

    def cancel(self, msg: Any | None = None) -> bool:
        """Refuse: the write goes on whatever happens to whoever waits for it."""
        return False


async def wait_for_write(write: Write, what: str) -> None:
    """Await ``write``; if the awaiting task is cancelled, the cancellation goes
    through once the write has ended.  If the write of a cancelled caller failed,
    nobody is left to raise it to: it is logged at ERROR (``what`` says what was
    lost, e.g. ``"3 record(s) for sqlite:///cqrs.db"``)."""
    try:
        await write
    except asyncio.CancelledError:
        failure = write.exception() if write.done() else None
        if failure is not None:
            logger.error(
                "the write of %s failed after its caller was cancelled: %s: %s",
                what,
                type(failure).__name__,
                exception_message(failure),
            )
        raise


@dataclass(frozen=True, slots=True)
class Statement:
    """One parameterised SQL statement a store runs in the transaction of a batch
    (:meth:`MessageStore.append`'s ``statements``), committed with its records or
    rejected with them.

    Only a store that owns its transaction and runs SQL offers it
    (:attr:`MessageStore.runs_statements`: the SQLite store); the embedded outbox
    commits its entries this way, through
    :meth:`~python_cqrs_core.store.MessageRecorder.attach`.  ``sql`` is fixed text
    with ``?`` placeholders; every value goes in ``params``::

        Statement("INSERT INTO cqrs_inbox (consumer_group, message_id, handled_at) "
                  "VALUES (?, ?, ?)", ("billing", message_id, now))
    """

    sql: str
    params: tuple[Any, ...] = ()


class StoreWriteError(CQRSError):
    """Records could not be written to the message store.

    Raised by :meth:`MessageStore.append` (the whole batch was rejected, nothing of it
    is stored), and by a dispatch whose records the
    :class:`~python_cqrs_core.store.MessageRecorder` could not commit; the cause is
    chained (``__cause__``).
    """


class MessageAlreadyRecordedError(StoreWriteError):
    """A message that was already recorded was dispatched again.

    Raised by the :class:`~python_cqrs_core.store.MessageRecorder` *before* any
    handler runs, so a retry of the same message object has no side effects that could
    not be recorded.  To do the same thing again, build a new message.
    """


class ReadOnlyStoreError(StoreWriteError):
    """A write to a store opened with ``open_store(url, read_only=True)``.

    Raised by :meth:`MessageStore.append` before anything reaches the backend, and by
    :class:`~python_cqrs_core.store.MessageRecorder` when given such a store.
    """


class MessageStore(ABC):
    """Where dispatched messages are recorded, and how causation is traversed.

    Use a store as an async context manager, or call :meth:`close` when done.
    Message ids may be given as :class:`uuid.UUID` or text; correlation ids as a UUID
    or an opaque string, exactly as messages carry them.

    **Writing a backend.**  Implement the abstract methods (the feed's two are
    :meth:`fetch_records` and :meth:`fetch_correlations`, which receive arguments
    :meth:`read` and :meth:`correlations` have already checked), an async class
    method ``open(url, *, read_only=False, **options)``, and register the class
    under its URL scheme (see :mod:`python_cqrs_core.store.backends`).
    :class:`python_cqrs_core.testing.store_contract.MessageStoreContract` is the
    behaviour it must show.
    """

    url: str
    read_only: bool = False
    """True when opened with ``read_only=True``: :meth:`append` then raises
    :class:`ReadOnlyStoreError`, and nothing was created or migrated."""
    runs_statements: ClassVar[bool] = False
    """True for a store whose :meth:`append` runs statements (:class:`Statement`) in
    the transaction of its batch (the SQLite store); others refuse them."""

    async def __aenter__(self) -> MessageStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {url_without_password(self.url)}>"

    @abstractmethod
    async def append(
        self,
        records: Sequence[MessageRecord],
        *,
        received: Sequence[MessageRecord] = (),
        deliveries: Sequence[DeliveryRecord] = (),
        statements: Sequence[Statement] = (),
    ) -> None:
        """Store ``records`` atomically, giving them positions in the order given.

        All or nothing: a record whose ``message_id`` is already stored (or appears
        twice in the batch) rejects the whole batch with :class:`StoreWriteError`, as
        does any failure of the backend.  A read-only store raises
        :class:`ReadOnlyStoreError`.

        In the same transaction, all or nothing with ``records``:

        - ``received``: records of messages received from a broker, stored only if
          the store holds no record of their ``message_id`` yet (the producer, when
          it records into this store too, recorded them first; a retried delivery
          finds the record of its first attempt).  Never a collision, never a second
          record; they are stored before ``records`` (a consumed message before what
          its handlers dispatched);
        - ``deliveries``: delivery records
          (:class:`~python_cqrs_core.store.DeliveryRecord`), given positions of their
          own in the order given;
        - ``statements``: SQL run after the rows are written, in the order given, by
          a store that :attr:`runs_statements` (the others raise
          :class:`ValueError`, and nothing is stored).

        Text and numbers no store can hold (NUL characters, lone surrogates, NaN and
        infinite numbers) are stored escaped, with the record's ``escaped_fields``
        naming the fields concerned
        (:func:`~python_cqrs_core.store.records.escaped`), the same way on every
        backend.

        Once begun, an append ends whole even if its caller is cancelled: the
        cancellation is raised when the batch is written (or refused), never while
        its fate is unknown (:func:`wait_for_write`).

        Positions grow in the order appends commit, on every backend: a reader that
        has seen position ``n`` never later finds a new record below ``n``, which is
        what lets :meth:`read` resume from a position.
        """

    async def append_deliveries(self, deliveries: Sequence[DeliveryRecord]) -> None:
        """Store ``deliveries`` atomically (``append((), deliveries=deliveries)``):
        what records a dead letter or a replay, which belong to no dispatch::

            await store.append_deliveries([DeliveryRecord(..., outcome="replayed",
                                                          requested_by="ada")])
        """
        await self.append((), deliveries=deliveries)

    def check_statements(self, statements: Sequence[Statement]) -> None:
        """Raise :class:`ValueError` if ``statements`` are given to a store that does
        not run them (what every :meth:`append` checks first)."""
        if statements and not self.runs_statements:
            raise ValueError(
                f"{type(self).__name__} runs no SQL statements in its transactions "
                f"({len(statements)} given); only the SQLite store does (the embedded "
                "outbox's entries); elsewhere write them in the application's transaction"
            )

    def check_writable(self) -> None:
        """Raise :class:`ReadOnlyStoreError` if the store was opened read-only (the
        first thing every :meth:`append` does)."""
        if self.read_only:
            raise ReadOnlyStoreError(
                f"the message store {url_without_password(self.url)} was opened read-only "
                "(open_store(url, read_only=True)); open it without read_only to record"
            )

    @abstractmethod
    async def get(self, message_id: UUID | str) -> MessageRecord | None:
        """The record of one message, or ``None`` if it is not stored."""

    @abstractmethod
    async def by_correlation(self, correlation_id: str | UUID) -> list[MessageRecord]:
        """Every record of one correlation id, in recorded order (``[]`` if none)."""

    @abstractmethod
    async def trace_causation(self, message_id: UUID | str) -> list[MessageRecord]:
        """The chain of causes of a message: ``[root, ..., message]``.

        Follows ``causation_id`` upwards until a record without one, a parent that is
        not stored (the chain then starts at the orphan), or a link back into the
        chain.  ``[]`` if the message is not stored.
        """

    @abstractmethod
    async def trace_effects(self, message_id: UUID | str) -> list[MessageRecord]:
        """Everything a message caused, directly or not, in recorded order.

        The message itself is not included (even when corrupted links lead back to
        it); ``[]`` if it caused nothing or is not stored.
        """

    async def message_ids_with_prefix(self, prefix: str, limit: int = 10) -> list[UUID]:
        """The ids of the stored messages whose text (``str(uuid)``) starts with
        ``prefix``, in recorded order, at most ``limit`` (1 to 10,000).

        What a person types to name a message they saw in a listing (``"6c1f0d1e"``),
        resolved to the ids it may mean: one id, or several to choose from, or none::

            matches = await store.message_ids_with_prefix("6c1f0d1e", limit=2)
            if len(matches) == 1:
                record = await store.get(matches[0])

        ``prefix`` is 1 to 36 characters of a UUID as ``str(uuid)`` writes it
        (lower-case hex digits, dashes in their places); anything else is a
        :class:`ValueError` naming it.  Every backend answers from its ``message_id``
        index, scanning the range of ids the prefix covers, never the store.
        """
        low, high = id_prefix_bounds(prefix)
        return await self.fetch_message_ids(low, high, check_limit(limit))

    @abstractmethod
    async def fetch_message_ids(self, low: UUID, high: UUID, limit: int) -> list[UUID]:
        """The backend's part of :meth:`message_ids_with_prefix`: the ids from ``low``
        to ``high`` (both included), in recorded order, at most ``limit``; the
        arguments are already checked."""

    async def build_causation_tree(self, correlation_id: str | UUID) -> list[CausationNode]:
        """The causation trees of one correlation id: one per root, in recorded order.

        A business operation normally has one root; several roots (two requests that
        shared a correlation id) are all returned, and a record whose parent is
        missing heads a tree of its own, flagged as ``orphan``.  ``[]`` if the
        correlation id is unknown.  Each node carries the deliveries of its message
        to consumer groups (``node.deliveries``), so a tree that crosses services
        says where each message went and how it ended there.  See
        :func:`~python_cqrs_core.store.records.assemble_trees`.
        """
        records = await self.by_correlation(correlation_id)
        if not records:
            return []
        return assemble_trees(records, await self.deliveries_by_correlation(correlation_id))

    # -- deliveries ----------------------------------------------------------------------

    async def deliveries_of(self, message_ids: Iterable[UUID | str]) -> list[DeliveryRecord]:
        """The deliveries of the messages ``message_ids`` (UUIDs or their text), in
        recorded order; ``[]`` for messages no consumer group received::

            for delivery in await store.deliveries_of([record.message_id]):
                print(delivery.service, delivery.group, delivery.attempt, delivery.outcome)

        Answered from the ``message_id`` index of the deliveries.
        """
        keys = sorted({id_text(message_id) for message_id in message_ids})
        if not keys:
            return []
        return await self.fetch_deliveries_of(keys)

    @abstractmethod
    async def fetch_deliveries_of(self, message_ids: list[str]) -> list[DeliveryRecord]:
        """The backend's part of :meth:`deliveries_of`: ``message_ids`` are the ids'
        texts, distinct, at least one."""

    @abstractmethod
    async def deliveries_by_correlation(self, correlation_id: str | UUID) -> list[DeliveryRecord]:
        """Every delivery of the messages of one correlation id, in recorded order
        (``[]`` if none): what :meth:`build_causation_tree` hangs on its nodes."""

    async def read_deliveries(self, after: int = 0, limit: int = 100) -> list[DeliveryRecord]:
        """The deliveries with a position greater than ``after``, in ascending
        position order, at most ``limit`` (1 to 10,000): a cursor over every
        delivery recorded, as :meth:`read` is over the records (a live page following
        consumers, dead letters and replays)."""
        return await self.fetch_deliveries(check_after(after), check_limit(limit))

    @abstractmethod
    async def fetch_deliveries(self, after: int, limit: int) -> list[DeliveryRecord]:
        """The backend's part of :meth:`read_deliveries`: its arguments are checked."""

    # -- the feed ------------------------------------------------------------------------

    async def read(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        requested_by: str | None = None,
        message_type: str | None = None,
        outcome: Outcome | None = None,
        kind: MessageKind | None = None,
        service: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[MessageRecord]:
        """The records with a position greater than ``after``, in ascending position
        order, at most ``limit`` (1 to 10,000), that meet the filters.

        A cursor: pass the position of the last record received as the next
        ``after`` to page through the store, or to resume a feed (a live page, an
        outbox relay) where it stopped; ``[]`` means nothing newer yet::

            after = 0
            while batch := await store.read(after, limit=500, outcome="failed"):
                for record in batch:
                    alert(record)
                after = batch[-1].position

        Filters (all optional, combined with "and"; see
        :class:`~python_cqrs_core.store.feed.RecordFilter`): ``requested_by``,
        ``message_type`` (the stable type name), ``outcome``, ``kind``, ``service``,
        and ``since``/``until`` on ``recorded_at`` (``since`` included, ``until``
        excluded; timezone-aware).  A bad value is a :class:`ValueError` naming it.
        """
        where = RecordFilter(
            requested_by=requested_by,
            message_type=message_type,
            outcome=outcome,
            kind=kind,
            service=service,
            since=since,
            until=until,
        )
        return await self.fetch_records(check_after(after), check_limit(limit), where)

    @abstractmethod
    async def fetch_records(
        self, after: int, limit: int, where: RecordFilter
    ) -> list[MessageRecord]:
        """The backend's part of :meth:`read`: its arguments are already checked."""

    @abstractmethod
    async def last_position(self) -> int:
        """The position of the newest record, ``0`` when the store is empty: where a
        feed that only wants what comes next starts (``read(after=...)``)."""

    async def correlations(
        self,
        limit: int = 20,
        before: int | None = None,
        *,
        requested_by: str | None = None,
        message_type: str | None = None,
        outcome: Outcome | None = None,
        kind: MessageKind | None = None,
        service: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[CorrelationSummary]:
        """The business operations recorded last, newest first: one
        :class:`~python_cqrs_core.store.CorrelationSummary` per correlation id, at most
        ``limit`` (1 to 10,000).

        Newest means the operation's opening record (its first, normally the root
        command) was recorded last.  ``before`` pages back: pass the ``position`` of
        the last summary received to get the operations opened before it.

        The filters are those of :meth:`read`, applied to the opening record (who
        started the operation, with which message type, kind, from which service, and
        when), except ``outcome``, which is the outcome of the whole operation:
        ``"failed"`` if any of its records failed, or any of its messages is left
        unhandled by a consumer group (its latest delivery to that group failed or was
        dead-lettered: see
        :func:`~python_cqrs_core.store.records.failing_deliveries`).  Every backend
        computes a page in one query, whatever ``limit`` is.
        """
        where = RecordFilter(
            requested_by=requested_by,
            message_type=message_type,
            outcome=outcome,
            kind=kind,
            service=service,
            since=since,
            until=until,
        )
        return await self.fetch_correlations(check_limit(limit), check_before(before), where)

    @abstractmethod
    async def fetch_correlations(
        self, limit: int, before: int | None, where: RecordFilter
    ) -> list[CorrelationSummary]:
        """The backend's part of :meth:`correlations`: its arguments are already
        checked."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and threads; pending writes are finished first."""
