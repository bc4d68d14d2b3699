"""The message store interface, and :func:`open_store`, which picks a backend by URL.

Every backend implements the same asynchronous :class:`MessageStore`:

=====================================  ==============================================
``memory://``                          in the process, for tests and demos
``sqlite:///path/to/file.db``          embedded default: one file, stdlib ``sqlite3``
``postgresql://user@host:5432/db``     shared by many processes and machines (asyncpg)
=====================================  ==============================================

::

    async with await open_store("sqlite:///cqrs.db") as store:
        for tree in await store.build_causation_tree("req-abc-123"):
            for depth, node in tree.walk():
                print("  " * depth, node.record.message_type, node.record.outcome)

Traversal (:meth:`~MessageStore.trace_causation`, :meth:`~MessageStore.trace_effects`,
:meth:`~MessageStore.build_causation_tree`) is answered from the correlation and
causation indexes on every backend, never by scanning the store, so its cost depends
on the size of the chain, not of the store.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from ..errors import CQRSError
from .records import CausationNode, MessageRecord, assemble_trees

__all__ = [
    "DEFAULT_STORE_URL",
    "STORE_URL_ENV",
    "MessageAlreadyRecordedError",
    "MessageStore",
    "StoreOpenError",
    "StoreWriteError",
    "open_store",
    "url_without_password",
]

STORE_URL_ENV = "CQRS_STORE_URL"
"""Environment variable read by :func:`open_store` when no URL is given."""
DEFAULT_STORE_URL = "sqlite:///cqrs.db"
"""The store used when neither a URL nor ``CQRS_STORE_URL`` is given: ``./cqrs.db``."""


class StoreOpenError(CQRSError):
    """The store at a URL could not be opened: server down, unknown database, wrong
    credentials, a file that is not a store, a schema newer than this library.

    The driver's own exception is chained (``__cause__``); the message shows the URL
    with its password masked.
    """


def url_without_password(url: str) -> str:
    """``url`` with the password, if any, replaced by ``***`` (safe to print)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, host = parts.netloc.rsplit("@", 1)
    user = user_info.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


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


class MessageStore(ABC):
    """Where dispatched messages are recorded, and how causation is traversed.

    Use a store as an async context manager, or call :meth:`close` when done.
    Message ids may be given as :class:`uuid.UUID` or text; correlation ids as a UUID
    or an opaque string, exactly as messages carry them.
    """

    url: str

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
        return f"<{type(self).__name__} {self.url}>"

    @abstractmethod
    async def append(self, records: Sequence[MessageRecord]) -> None:
        """Store ``records`` atomically, giving them positions in the order given.

        All or nothing: a record whose ``message_id`` is already stored (or appears
        twice in the batch) rejects the whole batch with :class:`StoreWriteError`, as
        does any failure of the backend.
        """

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

    async def build_causation_tree(self, correlation_id: str | UUID) -> list[CausationNode]:
        """The causation trees of one correlation id: one per root, in recorded order.

        A business operation normally has one root; several roots (two requests that
        shared a correlation id) are all returned, and a record whose parent is
        missing heads a tree of its own, flagged as ``orphan``.  ``[]`` if the
        correlation id is unknown.  See :func:`~python_cqrs_core.store.records.assemble_trees`.
        """
        return assemble_trees(await self.by_correlation(correlation_id))

    @abstractmethod
    async def recent_correlations(self, limit: int = 20) -> list[tuple[str, datetime, int]]:
        """The latest correlation ids: ``(correlation_id, first recorded_at, message
        count)``, newest first (by when their first message was recorded)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and threads; pending writes are finished first."""


async def open_store(url: str | None = None, **options: Any) -> MessageStore:
    """Open (and create or migrate, if needed) the store at ``url``.

    ``url`` defaults to the ``CQRS_STORE_URL`` environment variable, else
    ``sqlite:///cqrs.db`` (``cqrs.db`` in the working directory).  Recognised schemes:

    - ``memory://``: a new, empty in-process store;
    - ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; the query
      option ``?synchronous=full`` (or ``synchronous="full"`` here) makes every commit
      survive a power loss, at the cost of an ``fsync`` per commit;
    - ``postgresql://user:password@host:port/database`` (or ``postgres://``); extra
      ``options`` go to :func:`asyncpg.create_pool` (e.g. ``min_size``, ``max_size``).

    Any other scheme raises :class:`ValueError` naming it; a store that cannot be
    opened raises :class:`StoreOpenError` with the driver's error chained.
    """
    if url is None:
        url = os.environ.get(STORE_URL_ENV) or DEFAULT_STORE_URL
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from .memory import MemoryStore

        if options:
            raise TypeError(f"memory:// takes no options, got {sorted(options)}")
        return MemoryStore(url)
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        return await _opening(url, SQLiteStore.open(url, **options))
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        return await _opening(url, PostgresStore.open(url, **options))
    raise ValueError(
        f"unknown store URL scheme {scheme!r} in {url!r}: use memory://, "
        "sqlite:///path.db or postgresql://user@host:port/database"
    )


async def _opening(url: str, opening: Awaitable[MessageStore]) -> MessageStore:
    try:
        return await opening
    except (ValueError, TypeError):
        raise  # a malformed URL or option: the caller's mistake, named as such
    except Exception as exc:
        raise StoreOpenError(
            f"cannot open the message store {url_without_password(url)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
