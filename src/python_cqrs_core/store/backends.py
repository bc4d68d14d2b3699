"""Which backend a store URL selects, and :func:`open_store`.

A URL's scheme names its backend.  The library's own are in :data:`BACKENDS`, each
imported only when a URL asks for it (so ``memory://`` never imports ``sqlite3`` or
asyncpg):

=========================================  ===========================================
scheme                                     backend
=========================================  ===========================================
``memory``                                 :class:`~python_cqrs_core.store.MemoryStore`
``sqlite``, ``sqlite+aiosqlite``           :class:`~python_cqrs_core.store.sqlite.SQLiteStore`
``postgresql``, ``postgres``,              :class:`~python_cqrs_core.store.postgres.PostgresStore`
``postgresql+asyncpg``
=========================================  ===========================================

Schemes are case-insensitive, and the ``+driver`` spellings are those SQLAlchemy and
FastAPI applications already have in their settings.

Another package adds a backend with an entry point in the group
:data:`ENTRY_POINT_GROUP`, named after its scheme and pointing at its
:class:`~python_cqrs_core.store.MessageStore` subclass, which has an async class
method ``open(url, *, read_only=False, **options)``.  In its ``pyproject.toml``:

.. code-block:: toml

    [project.entry-points."python_cqrs_core.stores"]
    dynamodb = "cqrs_dynamodb.store:DynamoStore"

after which ``open_store("dynamodb://table")`` opens a ``DynamoStore``.  The
library's own schemes cannot be taken over this way.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import Any, Final, cast

from .base import MessageStore, parse_store_url, scrubbed_errors, url_without_password

__all__ = [
    "BACKENDS",
    "DEFAULT_STORE_URL",
    "ENTRY_POINT_GROUP",
    "STORE_URL_ENV",
    "find_backend",
    "open_store",
]

STORE_URL_ENV: Final = "CQRS_STORE_URL"
"""Environment variable read by :func:`open_store` when no URL is given."""
DEFAULT_STORE_URL: Final = "sqlite:///cqrs.db"
"""The store used when neither a URL nor ``CQRS_STORE_URL`` is given: ``./cqrs.db``."""
ENTRY_POINT_GROUP: Final = "python_cqrs_core.stores"
"""The entry-point group in which other packages register store backends by scheme."""

BACKENDS: Final = {
    "memory": "python_cqrs_core.store.memory:MemoryStore",
    "sqlite": "python_cqrs_core.store.sqlite:SQLiteStore",
    "sqlite+aiosqlite": "python_cqrs_core.store.sqlite:SQLiteStore",
    "postgresql": "python_cqrs_core.store.postgres:PostgresStore",
    "postgres": "python_cqrs_core.store.postgres:PostgresStore",
    "postgresql+asyncpg": "python_cqrs_core.store.postgres:PostgresStore",
}
"""The library's backends: URL scheme -> ``"module:class"``, imported when used."""

Opener = Callable[..., Awaitable[MessageStore]]


def _load(target: str) -> type[MessageStore]:
    module, _, name = target.partition(":")
    backend = getattr(importlib.import_module(module), name)
    return cast(type[MessageStore], backend)


def find_backend(scheme: str) -> type[MessageStore]:
    """The :class:`~python_cqrs_core.store.MessageStore` class serving URLs of
    ``scheme`` (any case): one of :data:`BACKENDS`, else the entry point of that name
    in :data:`ENTRY_POINT_GROUP`.

    Raises :class:`ValueError` naming the scheme and the schemes known, when no
    backend serves it.

    >>> find_backend("SQLite+aiosqlite").__name__
    'SQLiteStore'
    """
    key = scheme.lower()
    if key in BACKENDS:
        return _load(BACKENDS[key])
    plugins = {ep.name.lower(): ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if key in plugins:
        backend = plugins[key].load()
        if not (isinstance(backend, type) and issubclass(backend, MessageStore)):
            raise TypeError(
                f"the entry point {plugins[key].value!r} of store scheme {key!r} "
                f"({ENTRY_POINT_GROUP}) is not a MessageStore subclass"
            )
        return backend
    others = "".join(f", {name}://" for name in sorted(plugins.keys() - BACKENDS.keys()))
    raise ValueError(
        f"unknown store URL scheme {scheme!r}: use memory://, sqlite:///path.db or "
        f"postgresql://user@host:port/database{others}"
    )


async def open_store(
    url: str | None = None, *, read_only: bool = False, **options: Any
) -> MessageStore:
    """Open the store at ``url``, creating and migrating it as needed, or, with
    ``read_only=True``, only if it exists, and without changing anything.

    ``url`` defaults to the ``CQRS_STORE_URL`` environment variable, else
    ``sqlite:///cqrs.db`` (``cqrs.db`` in the working directory).  The scheme picks the
    backend (:func:`find_backend`):

    - ``memory://``: a new, empty in-process store;
    - ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (a
      percent-encoded path is decoded); the query option ``?synchronous=full`` (or
      ``synchronous="full"`` here) makes every commit survive a power loss, at the
      cost of an ``fsync`` per commit;
    - ``postgresql://user:password@host:port/database``; extra ``options`` go to
      :func:`asyncpg.create_pool` (e.g. ``min_size``, ``max_size``,
      ``server_settings``).

    **Read-only** (``read_only=True``): nothing is created, migrated or written, on
    any backend: a missing SQLite file, or a PostgreSQL database without the store's
    tables, is a :class:`~python_cqrs_core.store.StoreOpenError` ("not a message
    store"); an older schema is read as it is; :meth:`~MessageStore.append` raises
    :class:`~python_cqrs_core.store.ReadOnlyStoreError`.  SQLite opens the file with
    ``mode=ro``; PostgreSQL sessions run with ``default_transaction_read_only``.

    An unknown scheme or a malformed URL or option is a :class:`ValueError` (or
    :class:`TypeError`); a store that cannot be opened raises
    :class:`~python_cqrs_core.store.StoreOpenError` with the driver's error chained.
    No error shows the URL's password, nor any part of it, nor chains an error that
    does (:func:`~python_cqrs_core.store.base.scrubbed_errors`).
    """
    if url is None:
        url = os.environ.get(STORE_URL_ENV) or DEFAULT_STORE_URL
    scheme = parse_store_url(url).scheme
    if not scheme:
        raise ValueError(
            f"a store URL starts with its scheme (memory://, sqlite:///path.db, "
            f"postgresql://...), got {url_without_password(url)!r}"
        )
    backend = find_backend(scheme)
    opener: Opener | None = getattr(backend, "open", None)
    if opener is None:
        raise TypeError(f"the store backend {backend.__qualname__} has no open() class method")
    with scrubbed_errors(url):  # no error, nor its cause, repeats a password
        return await opener(url, read_only=read_only, **options)
