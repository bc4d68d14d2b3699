"""The outbox and inbox tables, as numbered migrations for PostgreSQL and SQLite.

Two tables hold the state of cross-service delivery, in the database where the
application keeps its own data (PostgreSQL), or in the message store's file (SQLite):

``cqrs_outbox``
    one row per routed message written in a committed transaction:

    ==================  ==========================================================
    ``position``        primary key, the order entries were written in
    ``message_id``      the message's ``request_id`` (unique: one entry per message)
    ``message_type``    its stable type name
    ``destination``     where :class:`~python_cqrs_core.transports.Routes` sends it
    ``correlation_id``  entries of one correlation id are published in ``position``
                        order
    ``causation_id``    the cause, ``NULL`` for a root
    ``headers``         the codec's headers (JSON object of text), trace context
                        included
    ``body``            the codec's body (the business fields as JSON bytes)
    ``status``          ``pending``, ``delivered`` or ``failed``
    ``attempts``        publish attempts so far
    ``created_at``      when the entry was written
    ``available_at``    the earliest time of the next attempt (retry backoff)
    ``delivered_at``    when the broker took it
    ``last_error``      why the last attempt failed
    ``claimed_by``      the relay working on it, ...
    ``claimed_until``   ... until its lease runs out
    ==================  ==========================================================

    Indexes: ``message_id`` (unique); ``(correlation_id, position)`` of the entries
    not delivered yet (finds the oldest open entry of a correlation); ``position`` of
    the pending entries (the relay's queue); ``delivered_at`` of the delivered ones
    (pruning).

``cqrs_inbox``
    the message ids each consumer group has handled, written in the transaction of
    the handler's effects: ``(consumer_group, message_id)`` is the primary key,
    ``handled_at`` is indexed for pruning.

PostgreSQL stores times as ``timestamptz``, headers as ``jsonb``, bodies as
``bytea``; SQLite as ISO 8601 text (UTC, fixed width, so text order is time order),
JSON text and blobs.

Our migrations keep their own version table, ``cqrs_outbox_schema_version``, apart
from the message store's, so the outbox can live in a database that has no store.
Applications whose schema Alembic manages declare the same tables in their
SQLAlchemy ``MetaData`` instead
(:func:`python_cqrs_core.outbox.sqlalchemy.outbox_table`); the two definitions are
checked to agree column by column and index by index.

On SQLite the outbox lives in the message store's file and its entries are committed
in the transaction that records the chain which published them: the store's writer
runs their ``INSERT`` in that transaction (see :mod:`python_cqrs_core.outbox.sqlite`).
Its migration 1 staged them in two tables moved by triggers on ``cqrs_messages``;
migration 2 drops those (upgrade with no process of the older version still writing
into the file: a chain it has not committed yet would lose its staged entries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from ..errors import CQRSError

__all__ = [
    "DELIVERED",
    "FAILED",
    "INBOX_TABLE",
    "OUTBOX_TABLE",
    "PENDING",
    "POSTGRES_MIGRATIONS",
    "SCHEMA_VERSION_TABLE",
    "SQLITE_MIGRATIONS",
    "VERSION_TABLE_SQL",
    "EntryStatus",
    "OutboxMigration",
    "OutboxTableError",
    "check_known",
]

OUTBOX_TABLE: Final = "cqrs_outbox"
INBOX_TABLE: Final = "cqrs_inbox"
SCHEMA_VERSION_TABLE: Final = "cqrs_outbox_schema_version"

EntryStatus = Literal["pending", "delivered", "failed"]
PENDING: Final = "pending"
"""Waiting to be published (possibly claimed by a relay, or waiting for a retry)."""
DELIVERED: Final = "delivered"
"""The broker took it."""
FAILED: Final = "failed"
"""Every attempt failed: reported, kept, and holding back the later entries of its
correlation until it is retried (:meth:`~python_cqrs_core.outbox.OutboxStorage.retry_failed`)."""


class OutboxTableError(CQRSError):
    """The outbox tables cannot be used: missing, created by someone else (Alembic)
    while our migrations were asked to run, newer than this library knows, or in a
    file that is not a message store."""


@dataclass(frozen=True, slots=True)
class OutboxMigration:
    """One step of the outbox schema: ``statements`` run in order, in one transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


VERSION_TABLE_SQL: Final = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA_VERSION_TABLE} (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)
"""

POSTGRES_MIGRATIONS: Final[tuple[OutboxMigration, ...]] = (
    OutboxMigration(
        1,
        "outbox entries and the transactional inbox",
        (
            f"""
            CREATE TABLE {OUTBOX_TABLE} (
                position       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                message_id     TEXT        NOT NULL,
                message_type   TEXT        NOT NULL,
                destination    TEXT        NOT NULL,
                correlation_id TEXT        NOT NULL,
                causation_id   TEXT,
                headers        JSONB       NOT NULL,
                body           BYTEA       NOT NULL,
                status         TEXT        NOT NULL,
                attempts       INTEGER     NOT NULL,
                created_at     TIMESTAMPTZ NOT NULL,
                available_at   TIMESTAMPTZ NOT NULL,
                delivered_at   TIMESTAMPTZ,
                last_error     TEXT,
                claimed_by     TEXT,
                claimed_until  TIMESTAMPTZ
            )
            """,
            f"CREATE UNIQUE INDEX cqrs_outbox_message_id ON {OUTBOX_TABLE} (message_id)",
            f"CREATE INDEX cqrs_outbox_open ON {OUTBOX_TABLE} (correlation_id, position) "
            f"WHERE status <> '{DELIVERED}'",
            f"CREATE INDEX cqrs_outbox_pending ON {OUTBOX_TABLE} (position) "
            f"WHERE status = '{PENDING}'",
            f"CREATE INDEX cqrs_outbox_delivered ON {OUTBOX_TABLE} (delivered_at) "
            f"WHERE status = '{DELIVERED}'",
            f"""
            CREATE TABLE {INBOX_TABLE} (
                consumer_group TEXT        NOT NULL,
                message_id     TEXT        NOT NULL,
                handled_at     TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (consumer_group, message_id)
            )
            """,
            f"CREATE INDEX cqrs_inbox_handled_at ON {INBOX_TABLE} (handled_at)",
        ),
    ),
)

SQLITE_MIGRATIONS: Final[tuple[OutboxMigration, ...]] = (
    OutboxMigration(
        1,
        "outbox entries and the transactional inbox, committed with the chain's records",
        (
            f"""
            CREATE TABLE {OUTBOX_TABLE} (
                position       INTEGER PRIMARY KEY,
                message_id     TEXT    NOT NULL,
                message_type   TEXT    NOT NULL,
                destination    TEXT    NOT NULL,
                correlation_id TEXT    NOT NULL,
                causation_id   TEXT,
                headers        TEXT    NOT NULL,
                body           BLOB    NOT NULL,
                status         TEXT    NOT NULL,
                attempts       INTEGER NOT NULL,
                created_at     TEXT    NOT NULL,
                available_at   TEXT    NOT NULL,
                delivered_at   TEXT,
                last_error     TEXT,
                claimed_by     TEXT,
                claimed_until  TEXT
            )
            """,
            f"CREATE UNIQUE INDEX cqrs_outbox_message_id ON {OUTBOX_TABLE} (message_id)",
            f"CREATE INDEX cqrs_outbox_open ON {OUTBOX_TABLE} (correlation_id, position) "
            f"WHERE status <> '{DELIVERED}'",
            f"CREATE INDEX cqrs_outbox_pending ON {OUTBOX_TABLE} (position) "
            f"WHERE status = '{PENDING}'",
            f"CREATE INDEX cqrs_outbox_delivered ON {OUTBOX_TABLE} (delivered_at) "
            f"WHERE status = '{DELIVERED}'",
            f"""
            CREATE TABLE {INBOX_TABLE} (
                consumer_group TEXT NOT NULL,
                message_id     TEXT NOT NULL,
                handled_at     TEXT NOT NULL,
                PRIMARY KEY (consumer_group, message_id)
            )
            """,
            f"CREATE INDEX cqrs_inbox_handled_at ON {INBOX_TABLE} (handled_at)",
            # Staging: what a chain wrote, waiting for the chain's records to commit.
            """
            CREATE TABLE cqrs_outbox_staged (
                seq             INTEGER PRIMARY KEY,
                root_message_id TEXT NOT NULL,
                message_id      TEXT NOT NULL,
                message_type    TEXT NOT NULL,
                destination     TEXT NOT NULL,
                correlation_id  TEXT NOT NULL,
                causation_id    TEXT,
                headers         TEXT NOT NULL,
                body            BLOB NOT NULL,
                staged_at       TEXT NOT NULL
            )
            """,
            "CREATE INDEX cqrs_outbox_staged_root ON cqrs_outbox_staged (root_message_id)",
            """
            CREATE TABLE cqrs_inbox_staged (
                seq             INTEGER PRIMARY KEY,
                root_message_id TEXT NOT NULL,
                consumer_group  TEXT NOT NULL,
                message_id      TEXT NOT NULL,
                staged_at       TEXT NOT NULL
            )
            """,
            "CREATE INDEX cqrs_inbox_staged_root ON cqrs_inbox_staged (root_message_id)",
            # The record of a chain's root committing successfully commits what the
            # chain staged, in the same transaction; a record that stages nothing pays
            # two probes of (empty) indexes.
            f"""
            CREATE TRIGGER cqrs_outbox_commit_with_chain
            AFTER INSERT ON cqrs_messages
            FOR EACH ROW WHEN NEW.outcome = 'succeeded' AND (
                EXISTS (SELECT 1 FROM cqrs_outbox_staged WHERE root_message_id = NEW.message_id)
                OR EXISTS (SELECT 1 FROM cqrs_inbox_staged WHERE root_message_id = NEW.message_id)
            )
            BEGIN
                INSERT OR IGNORE INTO {OUTBOX_TABLE} (
                    message_id, message_type, destination, correlation_id, causation_id,
                    headers, body, status, attempts, created_at, available_at
                )
                SELECT message_id, message_type, destination, correlation_id, causation_id,
                       headers, body, '{PENDING}', 0, staged_at, staged_at
                FROM cqrs_outbox_staged WHERE root_message_id = NEW.message_id ORDER BY seq;
                DELETE FROM cqrs_outbox_staged WHERE root_message_id = NEW.message_id;
                INSERT OR IGNORE INTO {INBOX_TABLE} (consumer_group, message_id, handled_at)
                SELECT consumer_group, message_id, staged_at
                FROM cqrs_inbox_staged WHERE root_message_id = NEW.message_id;
                DELETE FROM cqrs_inbox_staged WHERE root_message_id = NEW.message_id;
            END
            """,  # noqa: S608
            # A root recorded as failed: its chain's writes roll back, staged ones too.
            """
            CREATE TRIGGER cqrs_outbox_discard_with_chain
            AFTER INSERT ON cqrs_messages
            FOR EACH ROW WHEN NEW.outcome <> 'succeeded' AND (
                EXISTS (SELECT 1 FROM cqrs_outbox_staged WHERE root_message_id = NEW.message_id)
                OR EXISTS (SELECT 1 FROM cqrs_inbox_staged WHERE root_message_id = NEW.message_id)
            )
            BEGIN
                DELETE FROM cqrs_outbox_staged WHERE root_message_id = NEW.message_id;
                DELETE FROM cqrs_inbox_staged WHERE root_message_id = NEW.message_id;
            END
            """,
        ),
    ),
    OutboxMigration(
        2,
        "entries and marks written in the chain's own transaction: no staging, no triggers",
        (
            "DROP TRIGGER IF EXISTS cqrs_outbox_commit_with_chain",
            "DROP TRIGGER IF EXISTS cqrs_outbox_discard_with_chain",
            "DROP TABLE IF EXISTS cqrs_outbox_staged",
            "DROP TABLE IF EXISTS cqrs_inbox_staged",
        ),
    ),
)


def check_known(applied: int, migrations: tuple[OutboxMigration, ...], where: str) -> None:
    """Refuse an outbox schema newer than this library knows."""
    latest = migrations[-1].version
    if applied > latest:
        raise OutboxTableError(
            f"the outbox tables {where} have schema version {applied}, newer than the "
            f"{latest} this version of python-cqrs-core knows; upgrade the library"
        )
