"""The columns of ``cqrs_messages`` and ``cqrs_deliveries``, defined once for both SQL
backends.

:data:`COLUMNS` lists every column of the messages with the kind of value it holds (a
:class:`Codec`) and the schema version that added it; :data:`DELIVERY_COLUMNS` does the
same for the deliveries.  From those tables come:

- what the SQLite and PostgreSQL stores *write*: the ``INSERT`` column list, the
  parameters, and each record's values, encoded (:class:`RowWriter`);
- what they *read*: the ``SELECT`` list and the row-to-record conversion
  (:class:`RowReader`).  A reader is made for the schema version of the store it
  reads, and a column that version lacks reads as the column's default, so a store
  opened read-only before it was migrated still reads.

Adding a column is therefore one line here, one field of
:class:`~python_cqrs_core.store.MessageRecord` (or
:class:`~python_cqrs_core.store.DeliveryRecord`), and a migration
(:mod:`python_cqrs_core.store.migrations`) that creates it::

    Column("tenant", TEXT, since=3),

>>> reader = RowReader(SQLITE, version=1)
>>> reader.select.split(", ")[-4:]
['NULL AS service', 'NULL AS pii_fields', 'NULL AS payload_redacted', 'NULL AS escaped_fields']
>>> RowWriter(POSTGRES).names[-3:]
('pii_fields', 'payload_redacted', 'escaped_fields')
>>> RowWriter(SQLITE, DELIVERIES).names[5:8]
('destination', 'consumer_group', 'attempt')

Every value a backend writes goes through :meth:`RowWriter.rows`, which also escapes
what no store can hold (:func:`~python_cqrs_core.store.records.escaped`), so that the
SQLite and PostgreSQL stores record it as the memory store does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from math import isfinite
from typing import Any, Final, Literal
from uuid import UUID

from .records import DeliveryRecord, HandlerOutcome, MessageRecord, escaped, escaped_delivery

__all__ = [
    "COLUMNS",
    "DELIVERIES",
    "DELIVERY_COLUMNS",
    "FLAG",
    "HANDLERS",
    "ID",
    "INTEGER",
    "JSON",
    "MESSAGES",
    "NAMES",
    "POSTGRES",
    "REAL",
    "RECORD_COLUMNS",
    "SQLITE",
    "TEXT",
    "TIME",
    "Codec",
    "Column",
    "Dialect",
    "RowReader",
    "RowWriter",
    "Table",
]

Dialect = Literal["sqlite", "postgres"]
SQLITE: Final = "sqlite"
POSTGRES: Final = "postgres"

Convert = Callable[[Any], Any]

_loads = json.loads


def _unserializable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder json.dumps uses, made once (json.dumps makes one per call, which costs
# more than encoding a small payload).  Strict: a number that is not finite raises
# ValueError (the record is then escaped); text is kept as UTF-8 (ensure_ascii off),
# so that the test of a row for NUL and lone surrogates can read the JSON text.
_encode = c_make_encoder(None, _unserializable, encode_basestring, None, ":", ",", False, False,
                         False)  # fmt: skip


def _dumps(value: Any) -> str:
    return "".join(_encode(value, 0))


@dataclass(frozen=True, slots=True)
class Codec:
    """How one kind of value is stored by each backend.

    A conversion left ``None`` means the driver takes (and returns) the Python value
    as it is.  ``postgres_type`` is the element type of the array in which PostgreSQL
    receives a batch of values (``unnest``); ``postgres_cast`` the type it is cast to
    on insert (and read back from as ``text``), for values sent as JSON text.
    """

    name: str
    to_sqlite: Convert | None = None
    from_sqlite: Convert | None = None
    to_postgres: Convert | None = None
    from_postgres: Convert | None = None
    postgres_type: str = "text"
    postgres_cast: str | None = None

    def encoder(self, dialect: Dialect) -> Convert | None:
        """The conversion of a record's value into what ``dialect`` stores."""
        return self.to_sqlite if dialect == SQLITE else self.to_postgres

    def decoder(self, dialect: Dialect) -> Convert | None:
        """The conversion of what ``dialect`` returns into the record's value."""
        return self.from_sqlite if dialect == SQLITE else self.from_postgres


def _utc_text(moment: datetime) -> str:
    # One offset for every stored time, so that SQLite's text comparisons (the time
    # range filters, min/max in summaries) order them as instants.
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat()


def _handlers_json(handlers: tuple[HandlerOutcome, ...]) -> str:
    if not handlers:
        return "[]"
    return _dumps(
        [[h.handler, h.outcome, h.duration_ms, h.error_type, h.error_message] for h in handlers]
    )


def _handlers(text: str) -> tuple[HandlerOutcome, ...]:
    rows = _loads(text)
    return tuple(HandlerOutcome(*row) for row in rows) if rows else ()


def _object_json(value: dict[str, Any]) -> str:
    return _dumps(value) if value else "{}"


def _names_json(names: tuple[str, ...]) -> str:
    return _dumps(names) if names else "[]"


def _names(text: str) -> tuple[str, ...]:
    return tuple(_loads(text)) if text != "[]" else ()


TEXT: Final = Codec("text")
"""Text (and ``None``), as is."""
REAL: Final = Codec("real", postgres_type="float8")
"""A float (and ``None``), as is."""
INTEGER: Final = Codec("integer", postgres_type="bigint")
"""A whole number, as is."""
FLAG: Final = Codec("flag", from_sqlite=bool, postgres_type="boolean")
"""A bool: 0 or 1 in SQLite, ``boolean`` in PostgreSQL."""
ID: Final = Codec("id", to_sqlite=str, from_sqlite=UUID, to_postgres=str, from_postgres=UUID)
"""A :class:`~uuid.UUID`, stored as its canonical text."""
TIME: Final = Codec(
    "time", to_sqlite=_utc_text, from_sqlite=datetime.fromisoformat, postgres_type="timestamptz"
)
"""An aware datetime: ISO 8601 text in UTC in SQLite, ``timestamptz`` in PostgreSQL."""
JSON: Final = Codec(
    "json",
    to_sqlite=_object_json,
    from_sqlite=_loads,
    to_postgres=_object_json,
    from_postgres=_loads,
    postgres_cast="jsonb",
)
"""A JSON object (a dict): text in SQLite, ``jsonb`` in PostgreSQL."""
HANDLERS: Final = Codec(
    "handlers",
    to_sqlite=_handlers_json,
    from_sqlite=_handlers,
    to_postgres=_handlers_json,
    from_postgres=_handlers,
    postgres_cast="jsonb",
)
"""Handler outcomes, as a JSON list of ``[handler, outcome, duration_ms, error_type,
error_message]`` lists."""
NAMES: Final = Codec(
    "names",
    to_sqlite=_names_json,
    from_sqlite=_names,
    to_postgres=_names_json,
    from_postgres=_names,
    postgres_cast="jsonb",
)
"""A tuple of names, as a JSON list of strings."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table of the store.

    A column holds the field of the same name of the table's record
    (:class:`~python_cqrs_core.store.MessageRecord`,
    :class:`~python_cqrs_core.store.DeliveryRecord`), or the field ``attribute``
    names when the column is named otherwise (``consumer_group``: ``group`` is an SQL
    keyword), unless ``in_record`` is false (a column of the store's own, such as
    ``opens_correlation``).  ``since`` is the schema version that added it: a store
    of an older version lacks it, and its records read ``default`` there.
    ``generated`` columns are assigned by the database and never written.
    """

    name: str
    codec: Codec
    since: int = 1
    default: Any = None
    generated: bool = False
    in_record: bool = True
    attribute: str | None = None

    @property
    def field(self) -> str:
        """The name of the record field the column holds."""
        return self.attribute or self.name


COLUMNS: Final[tuple[Column, ...]] = (
    Column("position", INTEGER, generated=True),
    Column("message_id", ID),
    Column("kind", TEXT),
    Column("message_type", TEXT),
    Column("correlation_id", TEXT),
    Column("causation_id", TEXT),
    Column("requested_by", TEXT),
    Column("requested_at", TIME),
    Column("recorded_at", TIME),
    Column("outcome", TEXT),
    Column("error_type", TEXT),
    Column("error_message", TEXT),
    Column("duration_ms", REAL),
    Column("handlers", HANDLERS),
    Column("headers", JSON),
    Column("payload", JSON),
    Column("opens_correlation", FLAG, in_record=False),
    Column("service", TEXT, since=2),
    Column("pii_fields", NAMES, since=2, default=()),
    Column("payload_redacted", FLAG, since=2, default=False),
    Column("escaped_fields", NAMES, since=3, default=()),
)
"""Every column, in the order the migrations create them."""

DELIVERY_COLUMNS: Final[tuple[Column, ...]] = (
    Column("position", INTEGER, since=4, generated=True),
    Column("message_id", ID, since=4),
    Column("message_type", TEXT, since=4),
    Column("correlation_id", TEXT, since=4),
    Column("service", TEXT, since=4),
    Column("transport", TEXT, since=4),
    Column("destination", TEXT, since=4),
    Column("consumer_group", TEXT, since=4, attribute="group"),
    Column("attempt", INTEGER, since=4),
    Column("delivery_id", TEXT, since=4),
    Column("outcome", TEXT, since=4),
    Column("handlers", HANDLERS, since=4),
    Column("error_type", TEXT, since=4),
    Column("error_message", TEXT, since=4),
    Column("duration_ms", REAL, since=4),
    Column("recorded_at", TIME, since=4),
    Column("requested_by", TEXT, since=4),
    Column("escaped_fields", NAMES, since=4, default=()),
)
"""Every column of ``cqrs_deliveries`` (schema version 4), in the order migration 4
creates them."""


def _in_field_order(columns: tuple[Column, ...], record: type) -> tuple[Column, ...]:
    """The columns holding ``record``'s fields, in the order of its fields: a row read
    in this order is the record's positional arguments.  (A field without a column
    fails here, at import.)"""
    by_field = {column.field: column for column in columns if column.in_record}
    return tuple(by_field[f.name] for f in fields(record))


RECORD_COLUMNS: Final = _in_field_order(COLUMNS, MessageRecord)
"""The columns holding record fields, in the order of MessageRecord's fields."""


@dataclass(frozen=True, slots=True)
class Table:
    """One table of the store as the readers and writers see it: its name, the
    columns holding its record's fields (in field order), the record class, and the
    function that escapes a record no store can hold as it is."""

    name: str
    columns: tuple[Column, ...]
    record: Callable[..., Any]
    escape: Callable[[Any], Any]


MESSAGES: Final = Table("cqrs_messages", RECORD_COLUMNS, MessageRecord, escaped)
"""``cqrs_messages``: one :class:`~python_cqrs_core.store.MessageRecord` per row."""
DELIVERIES: Final = Table(
    "cqrs_deliveries",
    _in_field_order(DELIVERY_COLUMNS, DeliveryRecord),
    DeliveryRecord,
    escaped_delivery,
)
"""``cqrs_deliveries``: one :class:`~python_cqrs_core.store.DeliveryRecord` per row."""


def _constant(value: Any) -> Convert:
    return lambda _: value


class RowReader:
    """Reads records out of one backend's rows of ``table`` (the messages by
    default), for one schema version.

    ``select`` is the ``SELECT`` list (use it as ``SELECT {reader.select} FROM
    cqrs_messages ...``); :meth:`record` turns a row of it into a record.
    """

    __slots__ = ("_conversions", "_make", "select", "version")

    def __init__(self, dialect: Dialect, version: int, table: Table = MESSAGES) -> None:
        self.version = version
        self._make = table.record
        expressions: list[str] = []
        conversions: list[tuple[int, Convert]] = []
        for index, column in enumerate(table.columns):
            if column.since > version:
                expressions.append(f"NULL AS {column.name}")
                conversions.append((index, _constant(column.default)))
                continue
            cast = dialect == POSTGRES and column.codec.postgres_cast is not None
            expressions.append(f"{column.name}::text" if cast else column.name)
            decode = column.codec.decoder(dialect)
            if decode is not None:
                conversions.append((index, decode))
        self.select = ", ".join(expressions)
        self._conversions = tuple(conversions)

    def record(self, row: Sequence[Any]) -> Any:
        """The record of one row of :attr:`select`."""
        values = list(row)
        for index, convert in self._conversions:
            values[index] = convert(values[index])
        return self._make(*values)


class RowWriter:
    """Encodes records of ``table`` (the messages by default) into the values one
    backend stores (the latest schema).

    ``values(record)`` is the record as the values of the columns ``names``, in that
    order (a fresh list: a backend may append its own values to it).  The store's own
    columns (``opens_correlation``) and generated ones (``position``) are not among
    them: each backend decides those itself.  :meth:`rows` is what a backend calls:
    the values of each record, escaped first when they hold what no store can.
    """

    __slots__ = ("_escape", "_storable", "columns", "names", "values")

    def __init__(self, dialect: Dialect, table: Table = MESSAGES) -> None:
        self.columns = tuple(c for c in table.columns if not c.generated)
        self.names = tuple(column.name for column in self.columns)
        self.values = _encoder(self.columns, dialect)
        self._storable = _row_test(self.columns)
        self._escape = table.escape

    def rows(self, records: Sequence[Any]) -> list[list[Any]]:
        """The values of every record, each a fresh list.

        A record holding text with a NUL character or a lone surrogate, or a number
        that is not finite, is written as :func:`~python_cqrs_core.store.records.escaped`
        makes it, as the memory store keeps it.  The test reads the encoded row (its
        JSON is already text), so a record that needs nothing costs one string test.
        Raises :class:`TypeError` for a value JSON cannot hold at all.
        """
        values, storable, escape = self.values, self._storable, self._escape
        rows: list[list[Any]] = []
        for record in records:
            try:
                row = values(record)
            except ValueError:  # a number JSON cannot hold
                row = values(escape(record))
            else:
                if not storable(row):
                    row = values(escape(record))
            rows.append(row)
        return rows

    def index(self, name: str) -> int:
        """The position of column ``name`` in the values."""
        return self.names.index(name)


def _encoder(columns: tuple[Column, ...], dialect: Dialect) -> Callable[[Any], list[Any]]:
    """One function listing a record's encoded values, written out from ``columns``
    (as :mod:`dataclasses` writes an ``__init__``).  Every append encodes each of its
    records on the caller's side; a loop over the conversions costs about a sixth more
    per record than this straight-line list."""
    namespace: dict[str, Any] = {}
    items: list[str] = []
    for index, column in enumerate(columns):
        encode = column.codec.encoder(dialect)
        if encode is None:
            items.append(f"record.{column.field}")
        else:
            namespace[f"encode_{index}"] = encode
            items.append(f"encode_{index}(record.{column.field})")
    source = f"def values(record):\n    return [{', '.join(items)}]\n"
    exec(source, namespace)  # noqa: S102 - built from the column table above, no input
    encoder: Callable[[Any], list[Any]] = namespace["values"]
    return encoder


_SURROGATE = re.compile("[\ud800-\udfff]")


def _row_test(columns: tuple[Column, ...]) -> Callable[[list[Any]], bool]:
    """One function telling whether an encoded row can be stored as it is: its text
    (JSON included) joined holds no NUL (raw, or ``\\u0000`` in JSON) and no lone
    surrogate, and its real numbers are finite.  A row of an escaped record passes
    (a false alarm, such as a backslash-u0000 typed in a payload, costs one call of
    ``escaped``, which then changes nothing)."""
    texts = [i for i, c in enumerate(columns) if c.codec in (TEXT, JSON, HANDLERS, NAMES)]
    reals = [i for i, c in enumerate(columns) if c.codec is REAL]
    joined = "".join(f"{{row[{i}]}}" for i in texts)
    finite = "".join(f" and (row[{i}] is None or isfinite(row[{i}]))" for i in reals)
    source = (
        "def storable(row):\n"
        f"    text = f'{joined}'\n"
        "    return ('\\x00' not in text and '\\\\u0000' not in text\n"
        f"            and (text.isascii() or surrogate(text) is None){finite})\n"
    )
    namespace: dict[str, Any] = {"isfinite": isfinite, "surrogate": _SURROGATE.search}
    exec(source, namespace)  # noqa: S102 - built from the column table above, no input
    test: Callable[[list[Any]], bool] = namespace["storable"]
    return test
