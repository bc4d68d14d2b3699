"""The schema of the message store, as numbered migrations per SQL backend.

Each backend keeps a ``cqrs_schema_version`` table listing the migrations applied.
On open, the store applies the missing ones in order, each in a transaction with its
version row, under a lock (``BEGIN IMMEDIATE`` on SQLite, ``pg_advisory_xact_lock`` on
PostgreSQL), so opening a store is idempotent and two processes opening the same
store at once are safe.  A store written by a newer version of the library (a
version this code does not know) is refused rather than misread.

To change the schema, append a :class:`Migration`; never edit an applied one.

Schema, version 1 (both backends; SQLite stores datetimes as ISO 8601 text and JSON
as text, PostgreSQL as ``timestamptz`` and ``jsonb``):

``cqrs_messages``
    one row per message: ``position`` (primary key, the global recorded order),
    ``message_id`` (unique), ``kind``, ``message_type``, ``correlation_id``,
    ``causation_id``, ``requested_by``, ``requested_at``, ``recorded_at``,
    ``outcome``, ``error_type``, ``error_message``, ``duration_ms``, ``handlers``
    (JSON list of handler outcomes), ``headers`` (JSON object), ``payload`` (JSON).
    Indexes on ``(correlation_id, position)`` and ``(causation_id, position)``.
``cqrs_correlations``
    one row per correlation id: ``seq`` (first-seen order), ``correlation_id``
    (unique), ``first_recorded_at``, ``message_count``; maintained on append so that
    listing recent operations never scans the messages.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["POSTGRES_MIGRATIONS", "SQLITE_MIGRATIONS", "Migration", "check_known"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: ``statements`` run in order, in one transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS cqrs_schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)
"""

SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "messages with correlation and causation indexes; correlation summary",
        (
            """
            CREATE TABLE cqrs_messages (
                position       INTEGER PRIMARY KEY,
                message_id     TEXT    NOT NULL UNIQUE,
                kind           TEXT    NOT NULL,
                message_type   TEXT    NOT NULL,
                correlation_id TEXT    NOT NULL,
                causation_id   TEXT,
                requested_by   TEXT,
                requested_at   TEXT    NOT NULL,
                recorded_at    TEXT    NOT NULL,
                outcome        TEXT    NOT NULL,
                error_type     TEXT,
                error_message  TEXT,
                duration_ms    REAL,
                handlers       TEXT    NOT NULL,
                headers        TEXT    NOT NULL,
                payload        TEXT    NOT NULL
            )
            """,
            "CREATE INDEX cqrs_messages_correlation ON cqrs_messages (correlation_id, position)",
            "CREATE INDEX cqrs_messages_causation ON cqrs_messages (causation_id, position)",
            """
            CREATE TABLE cqrs_correlations (
                seq               INTEGER PRIMARY KEY,
                correlation_id    TEXT    NOT NULL UNIQUE,
                first_recorded_at TEXT    NOT NULL,
                message_count     INTEGER NOT NULL
            )
            """,
        ),
    ),
)

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "messages with correlation and causation indexes; correlation summary",
        (
            """
            CREATE TABLE cqrs_messages (
                position       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                message_id     TEXT             NOT NULL UNIQUE,
                kind           TEXT             NOT NULL,
                message_type   TEXT             NOT NULL,
                correlation_id TEXT             NOT NULL,
                causation_id   TEXT,
                requested_by   TEXT,
                requested_at   TIMESTAMPTZ      NOT NULL,
                recorded_at    TIMESTAMPTZ      NOT NULL,
                outcome        TEXT             NOT NULL,
                error_type     TEXT,
                error_message  TEXT,
                duration_ms    DOUBLE PRECISION,
                handlers       JSONB            NOT NULL,
                headers        JSONB            NOT NULL,
                payload        JSONB            NOT NULL
            )
            """,
            "CREATE INDEX cqrs_messages_correlation ON cqrs_messages (correlation_id, position)",
            "CREATE INDEX cqrs_messages_causation ON cqrs_messages (causation_id, position)",
            """
            CREATE TABLE cqrs_correlations (
                seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                correlation_id    TEXT        NOT NULL UNIQUE,
                first_recorded_at TIMESTAMPTZ NOT NULL,
                message_count     BIGINT      NOT NULL
            )
            """,
        ),
    ),
)


def check_known(applied: int, migrations: tuple[Migration, ...], where: str) -> None:
    """Refuse a store whose schema is newer than this library knows."""
    latest = migrations[-1].version
    if applied > latest:
        raise RuntimeError(
            f"the message store {where} has schema version {applied}, newer than the "
            f"{latest} this version of python-cqrs-core knows; upgrade the library"
        )
