"""The schema of the message store, as numbered migrations per SQL backend.

Each backend keeps a ``cqrs_schema_version`` table listing the migrations applied.
On open, the store applies the missing ones in order, each in a transaction with its
version row, under a lock (``BEGIN IMMEDIATE`` on SQLite, ``pg_advisory_xact_lock`` on
PostgreSQL), so opening a store is idempotent and two processes opening the same
store at once are safe.  A store written by a newer version of the library (a
version this code does not know) is refused rather than misread.  A store opened
read-only is never migrated: it is read at its own version (see
:mod:`python_cqrs_core.store.columns`).

To change the schema, append a :class:`Migration` (and declare a new column in
:data:`~python_cqrs_core.store.columns.COLUMNS` or
:data:`~python_cqrs_core.store.columns.DELIVERY_COLUMNS` with ``since=`` its version);
never edit an applied one.

Schema, version 1 (both backends; SQLite stores datetimes as ISO 8601 text and JSON
as text, PostgreSQL as ``timestamptz`` and ``jsonb``):

``cqrs_messages``
    one row per message: ``position`` (primary key, the global recorded order),
    ``message_id`` (unique), ``kind``, ``message_type``, ``correlation_id``,
    ``causation_id``, ``requested_by``, ``requested_at``, ``recorded_at``,
    ``outcome``, ``error_type``, ``error_message``, ``duration_ms``, ``handlers``
    (JSON list of handler outcomes), ``headers`` (JSON object), ``payload`` (JSON),
    ``opens_correlation`` (true on the first record of its correlation id).
    Indexes on ``(correlation_id, position)``, ``(causation_id, position)`` and a
    partial index on ``position`` of the records that open a correlation, so that
    listing recent operations reads a few index entries instead of the table.

Version 2 adds three columns, read as their defaults from a version 1 store:
``service`` (the recording service, ``NULL`` before), ``pii_fields`` (JSON list of the
payload fields declared personal data, ``[]`` before) and ``payload_redacted``
(false before); and five indexes, one per filter of
:meth:`~python_cqrs_core.store.MessageStore.read` and
:meth:`~python_cqrs_core.store.MessageStore.correlations`:

- ``(requested_by, position) WHERE requested_by IS NOT NULL``: ``requested_by=``,
  one user's records in order;
- ``(message_type, position)``: ``message_type=``;
- ``(position) WHERE outcome = 'failed'``: ``outcome="failed"`` (holds failures only);
- ``(recorded_at)``: ``since=`` / ``until=``;
- ``(service, position) WHERE service IS NOT NULL``: ``service=``.

The partial indexes hold only the records that can match: a store whose recorder names
no service (the default) pays nothing for the service index.

Version 3 adds ``escaped_fields`` (JSON list of field names, ``[]`` before): the
fields of a record whose content no store could hold as it was (NUL characters, lone
surrogates, numbers that are not finite) and that were stored escaped (see
:func:`~python_cqrs_core.store.records.escaped`).  Adding it writes no row.

Version 4 adds ``cqrs_deliveries``: one row per delivery of a consumed message to a
consumer group (:class:`~python_cqrs_core.store.DeliveryRecord`): ``position``
(primary key, the recorded order of deliveries), ``message_id``, ``message_type``,
``correlation_id``, ``service`` (the consuming service), ``transport``,
``destination``, ``consumer_group``, ``attempt``, ``delivery_id``, ``outcome``
(``succeeded``, ``failed``, ``dead_lettered``, ``replayed``), ``handlers``,
``error_type``, ``error_message``, ``duration_ms``, ``recorded_at``,
``requested_by`` and ``escaped_fields``.  Indexes on ``(message_id, position)`` (the
deliveries of a message, and the latest one of a message and group) and
``(correlation_id, position)`` (the deliveries of a tree, and the failures a summary
counts).  A store of an older version has no deliveries, and reads none.

Each key grows with ``position`` (or time) within its first column's value, so an
append writes at the right-hand edge of a few hot pages instead of at random places
in the index.  ``kind`` has no index: a third to a half of all records share each
kind, so walking the records in order and skipping the others is as fast.  On an
existing store, migration 2 builds the indexes once, while it is opened.

Why a flag rather than a table of correlations: keeping a summary row per
correlation up to date costs every commit an upsert into a second table and its
unique index (about a fifth of a recorded chain's cost on SQLite); the flag costs one
index probe and an append at the end of the partial index, and the counts are read
from the correlation index when listing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DELIVERIES_SINCE",
    "LATEST_VERSION",
    "POSTGRES_MIGRATIONS",
    "SCHEMA_VERSION_TABLE",
    "SQLITE_MIGRATIONS",
    "Migration",
    "check_known",
]


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
                payload        TEXT    NOT NULL,
                opens_correlation INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX cqrs_messages_correlation ON cqrs_messages (correlation_id, position)",
            "CREATE INDEX cqrs_messages_causation ON cqrs_messages (causation_id, position)",
            "CREATE INDEX cqrs_messages_openings ON cqrs_messages (position) "
            "WHERE opens_correlation = 1",
        ),
    ),
    Migration(
        2,
        "service, pii_fields and payload_redacted columns; indexes of the feed filters",
        (
            "ALTER TABLE cqrs_messages ADD COLUMN service TEXT",
            "ALTER TABLE cqrs_messages ADD COLUMN pii_fields TEXT NOT NULL DEFAULT '[]'",
            "ALTER TABLE cqrs_messages ADD COLUMN payload_redacted INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX cqrs_messages_requested_by ON cqrs_messages (requested_by, position) "
            "WHERE requested_by IS NOT NULL",
            "CREATE INDEX cqrs_messages_type ON cqrs_messages (message_type, position)",
            "CREATE INDEX cqrs_messages_failed ON cqrs_messages (position) "
            "WHERE outcome = 'failed'",
            "CREATE INDEX cqrs_messages_recorded_at ON cqrs_messages (recorded_at)",
            "CREATE INDEX cqrs_messages_service ON cqrs_messages (service, position) "
            "WHERE service IS NOT NULL",
        ),
    ),
    Migration(
        3,
        "escaped_fields column: what of a record was escaped to be stored",
        ("ALTER TABLE cqrs_messages ADD COLUMN escaped_fields TEXT NOT NULL DEFAULT '[]'",),
    ),
    Migration(
        4,
        "deliveries of consumed messages to consumer groups",
        (
            """
            CREATE TABLE cqrs_deliveries (
                position       INTEGER PRIMARY KEY,
                message_id     TEXT    NOT NULL,
                message_type   TEXT,
                correlation_id TEXT    NOT NULL,
                service        TEXT,
                transport      TEXT    NOT NULL,
                destination    TEXT    NOT NULL,
                consumer_group TEXT    NOT NULL,
                attempt        INTEGER NOT NULL,
                delivery_id    TEXT,
                outcome        TEXT    NOT NULL,
                handlers       TEXT    NOT NULL,
                error_type     TEXT,
                error_message  TEXT,
                duration_ms    REAL,
                recorded_at    TEXT    NOT NULL,
                requested_by   TEXT,
                escaped_fields TEXT    NOT NULL DEFAULT '[]'
            )
            """,
            "CREATE INDEX cqrs_deliveries_message ON cqrs_deliveries (message_id, position)",
            "CREATE INDEX cqrs_deliveries_correlation ON cqrs_deliveries "
            "(correlation_id, position)",
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
                payload        JSONB            NOT NULL,
                opens_correlation BOOLEAN       NOT NULL DEFAULT FALSE
            )
            """,
            "CREATE INDEX cqrs_messages_correlation ON cqrs_messages (correlation_id, position)",
            "CREATE INDEX cqrs_messages_causation ON cqrs_messages (causation_id, position)",
            "CREATE INDEX cqrs_messages_openings ON cqrs_messages (position) "
            "WHERE opens_correlation",
        ),
    ),
    Migration(
        2,
        "service, pii_fields and payload_redacted columns; indexes of the feed filters",
        (
            "ALTER TABLE cqrs_messages ADD COLUMN service TEXT, "
            "ADD COLUMN pii_fields JSONB NOT NULL DEFAULT '[]'::jsonb, "
            "ADD COLUMN payload_redacted BOOLEAN NOT NULL DEFAULT FALSE",
            "CREATE INDEX cqrs_messages_requested_by ON cqrs_messages (requested_by, position) "
            "WHERE requested_by IS NOT NULL",
            "CREATE INDEX cqrs_messages_type ON cqrs_messages (message_type, position)",
            "CREATE INDEX cqrs_messages_failed ON cqrs_messages (position) "
            "WHERE outcome = 'failed'",
            "CREATE INDEX cqrs_messages_recorded_at ON cqrs_messages (recorded_at)",
            "CREATE INDEX cqrs_messages_service ON cqrs_messages (service, position) "
            "WHERE service IS NOT NULL",
        ),
    ),
    Migration(
        3,
        "escaped_fields column: what of a record was escaped to be stored",
        ("ALTER TABLE cqrs_messages ADD COLUMN escaped_fields JSONB NOT NULL DEFAULT '[]'::jsonb",),
    ),
    Migration(
        4,
        "deliveries of consumed messages to consumer groups",
        (
            """
            CREATE TABLE cqrs_deliveries (
                position       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                message_id     TEXT             NOT NULL,
                message_type   TEXT,
                correlation_id TEXT             NOT NULL,
                service        TEXT,
                transport      TEXT             NOT NULL,
                destination    TEXT             NOT NULL,
                consumer_group TEXT             NOT NULL,
                attempt        INTEGER          NOT NULL,
                delivery_id    TEXT,
                outcome        TEXT             NOT NULL,
                handlers       JSONB            NOT NULL,
                error_type     TEXT,
                error_message  TEXT,
                duration_ms    DOUBLE PRECISION,
                recorded_at    TIMESTAMPTZ      NOT NULL,
                requested_by   TEXT,
                escaped_fields JSONB            NOT NULL DEFAULT '[]'::jsonb
            )
            """,
            "CREATE INDEX cqrs_deliveries_message ON cqrs_deliveries (message_id, position)",
            "CREATE INDEX cqrs_deliveries_correlation ON cqrs_deliveries "
            "(correlation_id, position)",
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


DELIVERIES_SINCE = 4
"""The schema version that added ``cqrs_deliveries``: a store of an older version
(opened read-only before it was migrated) holds no deliveries."""

LATEST_VERSION = SQLITE_MIGRATIONS[-1].version
"""The schema version this library writes (both backends share the numbering)."""
