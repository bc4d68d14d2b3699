r"""How recorded messages are shown to people: the same words, numbers and shapes in
every view of the store (the ``cqrs`` command line today, a live web page next).

Plain functions, text in and text out, with no terminal or web library: a view picks
what to show, this module says how each thing reads.

- :func:`duration`, :func:`clock`, :func:`timestamp`: times as people read them;
- :func:`short_id`: the 8 hex digits that name a message in a tree or a table;
- :func:`display_type_name`, :func:`display_handler_name`: the last part of a dotted
  name, for views where a line must stay short (detail views show the whole name);
- :func:`error_summary`: why a record failed, in one line;
- :func:`chronological`, :func:`effects_tree`: records in the order and the shape a
  view draws them;
- :func:`printable`, :func:`terminal_json`: stored text made safe to print.

**Stored text never drives the terminal.**  Everything a store returns (error messages,
payload strings, ids, handler names, ``requested_by``) may come from a hostile or
broken producer.  Printed raw, ``"\x1b]8;;http://evil\x1b\\"`` makes a link,
``"\r"`` overwrites the line, ``"\u202e"`` reverses what follows.  :func:`printable`
shows every such character escaped instead::

    >>> printable("paid\x1b[2K\rrefunded \u202ecba")
    'paid\\x1b[2K\\rrefunded \\u202ecba'

A view that must keep a message on one line also escapes newlines (the default);
a view that prints a message in full passes ``keep_newlines=True``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple
from uuid import UUID

from ..store import CausationNode, DeliveryRecord, MessageRecord, assemble_trees

__all__ = [
    "ErrorSummary",
    "chronological",
    "clock",
    "delivery_line",
    "display_handler_name",
    "display_type_name",
    "duration",
    "effects_tree",
    "error_summary",
    "first_line",
    "printable",
    "short_id",
    "terminal_json",
    "timestamp",
]

# -- escaping stored text ------------------------------------------------------------------

# Characters that change what a terminal shows instead of being shown: the C0 controls
# (ESC starts every CSI and OSC sequence), DEL, the C1 controls (0x9b and 0x9d are
# CSI and OSC on their own), the Unicode line and paragraph separators, the bidi
# controls (the "Trojan Source" set), and lone surrogates, which cannot even be
# encoded for output.
_BIDI_CONTROLS: Final = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_UNSAFE: Final = (
    *range(0x00, 0x20),
    0x7F,
    *range(0x80, 0xA0),
    0x2028,
    0x2029,
    *_BIDI_CONTROLS,
    *range(0xD800, 0xE000),
)
_SHORT_ESCAPES: Final = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}


def _escape(code: int) -> str:
    if code in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[code]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


_ONE_LINE: Final = {code: _escape(code) for code in _UNSAFE}
_LINES: Final = {code: text for code, text in _ONE_LINE.items() if code not in (0x09, 0x0A)}
_JSON: Final = {code: f"\\u{code:04x}" for code in _UNSAFE if code >= 0x7F}


def printable(text: str, *, keep_newlines: bool = False) -> str:
    r"""``text`` with every character that would act on a terminal shown escaped.

    Escaped: the C0 controls (``\x1b``, ``\r``, ``\x08``...), DEL (``\x7f``), the C1
    controls (``\x9b``), the Unicode line and paragraph separators (``\u2028``,
    ``\u2029``), the bidi controls (``\u202e``...) and lone surrogates.  An escape
    sequence therefore prints as its characters (``\x1b[31m``), and does nothing.
    Newlines and tabs are escaped too (``\n``, ``\t``), so the text stays on one
    line, unless ``keep_newlines`` is true.  Everything else, other scripts and
    symbols included, is kept as it is; a backslash already in the text is not
    doubled, so a Windows path reads as one.

    >>> printable("user:\x1b[31malice")
    'user:\\x1b[31malice'
    >>> printable("line one\nline two")
    'line one\\nline two'
    >>> print(printable("line one\r\nline two", keep_newlines=True))
    line one\r
    line two
    >>> printable("Zoë ✓")
    'Zoë ✓'
    """
    if text.isprintable():  # the common case: nothing to escape, no copy
        return text
    return text.translate(_LINES if keep_newlines else _ONE_LINE)


def terminal_json(data: Any) -> str:
    r"""``data`` as indented JSON that is safe to print and still exactly the same JSON.

    ``json.dumps`` escapes the C0 controls; this also escapes, as ``\uXXXX``, the
    characters :func:`printable` escapes above ASCII (DEL, the C1 controls, the line
    and paragraph separators, the bidi controls, lone surrogates).  They can only
    occur inside JSON strings, so a JSON reader gets the very same values back.
    Other non-ASCII text is kept readable.  Values JSON has no type for (datetimes,
    UUIDs) are written as their ``str()``.

    >>> print(terminal_json({"note": "abc\u202edef", "who": "Zoë"}))
    {
      "note": "abc\u202edef",
      "who": "Zoë"
    }
    >>> json.loads(terminal_json(["\x9b31m"])) == ["\x9b31m"]
    True
    """
    return json.dumps(data, indent=2, ensure_ascii=False, default=str).translate(_JSON)


# -- ids, names, numbers and times ---------------------------------------------------------


def short_id(value: UUID | str | None, *, full: bool = False) -> str:
    """The first 8 hex digits of a UUID, which ``cqrs show`` accepts back; the whole
    UUID with ``full``.  An opaque id (``"req-abc-123"``) is kept whole, and ``None``
    (no cause: a root message) is ``-``.

    >>> short_id(UUID("6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c44"))
    '6c1f0d1e'
    >>> short_id("6C1F0D1E8F5A4B6E9D3C2A7B9E0F1C44", full=True)
    '6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c44'
    >>> short_id("req-abc-123"), short_id(None)
    ('req-abc-123', '-')
    """
    if value is None:
        return "-"
    if isinstance(value, UUID):
        parsed = value
    else:
        try:
            parsed = UUID(value)
        except ValueError:
            return value
    return str(parsed) if full else parsed.hex[:8]


def display_type_name(type_name: str) -> str:
    """The stable type name of a message, as a one-line view shows it: its last dotted
    part.  Detail views and JSON show the whole name.

    >>> display_type_name("orders.OrderPlaced")
    'OrderPlaced'
    >>> display_type_name("myapp.orders.messages.PlaceOrder")
    'PlaceOrder'
    """
    return type_name.rpartition(".")[2] or type_name


def display_handler_name(handler: str) -> str:
    """A handler's recorded name (its qualified name), as a one-line view shows it.

    The name's last part, after any ``<locals>`` of the function that defined it; a
    method named ``handle...`` or ``__call__`` keeps its class, which says more than
    the method does.  ``cqrs show`` prints the whole name.

    >>> display_handler_name("PlaceOrderHandler")
    'PlaceOrderHandler'
    >>> display_handler_name("build_app.<locals>.place_order")
    'place_order'
    >>> display_handler_name("orders.OrderService.handle")
    'OrderService.handle'
    """
    name = handler.rpartition("<locals>.")[2]
    head, _, last = name.rpartition(".")
    if head and (last.startswith("handle") or last == "__call__"):
        return f"{head.rpartition('.')[2]}.{last}"
    return last or name


def duration(ms: float | None) -> str:
    """A duration in milliseconds, with the digits that matter: two decimals under a
    millisecond, one under a second, seconds beyond.  ``None`` (not measured) is ``-``.

    >>> duration(0.25), duration(48.21), duration(1200.0), duration(None)
    ('0.25 ms', '48.2 ms', '1.20 s', '-')
    """
    if ms is None:
        return "-"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return f"{ms:.1f} ms" if ms >= 1 else f"{ms:.2f} ms"


def clock(moment: datetime) -> str:
    """The UTC time of day to the millisecond, as trees and tables show when a message
    was created.

    >>> clock(datetime(2026, 1, 2, 23, 40, 1, 123456, tzinfo=UTC))
    '23:40:01.123'
    """
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def timestamp(moment: datetime) -> str:
    """A UTC date and time to the second, as summaries show when something started.

    >>> timestamp(datetime(2026, 1, 2, 23, 40, 1, 123456, tzinfo=UTC))
    '2026-01-02 23:40:01 UTC'
    """
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- errors --------------------------------------------------------------------------------


def first_line(text: str, limit: int = 240) -> str:
    r"""The first line of ``text``, at most ``limit`` characters; ``…`` marks that
    something was left out (more lines, or the rest of a long line).

    Any line boundary counts (``\r``, ``\u2028``... as well as ``\n``).

    >>> first_line("connection refused\nretrying in 5 s")
    'connection refused …'
    >>> first_line("x" * 10, limit=5)
    'xxxx…'
    """
    lines = text.strip().splitlines() or [""]
    head = lines[0]
    if len(head) > limit:
        return head[: limit - 1] + "…"
    return head + " …" if len(lines) > 1 else head


class ErrorSummary(NamedTuple):
    """Why a record failed: the exception's type name and the first line of its
    message (``""`` when it had none).  ``str()`` gives ``"Type: message"``."""

    type: str
    message: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


def error_summary(record: MessageRecord | DeliveryRecord) -> ErrorSummary | None:
    """The error a failed record shows, ``None`` for a record that succeeded.

    The record's own error if it has one (the first failure of its dispatch), else
    that of its first failed handler; the message cut to its first line
    (:func:`first_line`).  The text is as stored: pass it through :func:`printable`
    before printing it.

    >>> from python_cqrs_core.store import HandlerOutcome
    >>> record = _example_record(handlers=(
    ...     HandlerOutcome("Audit", "succeeded", 0.2),
    ...     HandlerOutcome("Notify", "failed", 12.0, "SmsGatewayError", "503\\nretry later"),
    ... ))
    >>> str(error_summary(record))
    'SmsGatewayError: 503 …'
    """
    if not record.failed:
        return None
    if record.error_type is not None:
        return ErrorSummary(record.error_type, first_line(record.error_message or ""))
    for handler in record.handlers:
        if handler.outcome == "failed":
            return ErrorSummary(
                handler.error_type or "Exception", first_line(handler.error_message or "")
            )
    return ErrorSummary("Exception", "")


_DELIVERY_OUTCOMES: Final = {
    "succeeded": "handled",
    "failed": "failed",
    "dead_lettered": "dead-lettered",
    "replayed": "replayed",
}


def delivery_line(delivery: DeliveryRecord) -> str:
    """One delivery of a message to a consumer group, on one line: who consumed it, from
    where, which attempt, how it ended and why (the text is as stored: pass it through
    :func:`printable` before printing it).

    >>> from datetime import UTC, datetime
    >>> from uuid import UUID
    >>> from python_cqrs_core.store import DeliveryRecord
    >>> failed = DeliveryRecord(
    ...     UUID(int=7), "orders.OrderPlaced", "op-1", "inventory", "redis",
    ...     "orders.events", "inventory", 2, "1712-0", "failed", (), "TimeoutError",
    ...     "the warehouse did not answer", 12.5, datetime(2026, 1, 1, tzinfo=UTC))
    >>> delivery_line(failed).split("  ")  # doctest: +NORMALIZE_WHITESPACE
    ['inventory (group inventory, redis orders.events) attempt 2: failed 12.5 ms',
     'TimeoutError: the warehouse did not answer']
    """
    who = delivery.service or "?"
    line = (
        f"{who} (group {delivery.group}, {delivery.transport} {delivery.destination}) "
        f"attempt {delivery.attempt}: {_DELIVERY_OUTCOMES.get(delivery.outcome, delivery.outcome)}"
    )
    if delivery.duration_ms is not None:
        line += f" {duration(delivery.duration_ms)}"
    if delivery.requested_by is not None:
        line += f" by {delivery.requested_by}"
    error = error_summary(delivery)
    if error is not None:
        line += f"  {error}"
    elif delivery.outcome == "replayed" and delivery.error_message:
        line += f"  (was: {first_line(delivery.error_message)})"
    return line


# -- order and shape -----------------------------------------------------------------------


def chronological(records: Iterable[MessageRecord]) -> list[MessageRecord]:
    """Records in the order their messages were created (``requested_at``; a cause is
    created before its effects), recorded order breaking ties.

    The store returns records in *recorded* order, where a parent, committed with its
    chain, may follow a child that a concurrent request committed first.
    """
    return sorted(
        records, key=lambda r: (r.requested_at, r.position if r.position is not None else -1)
    )


def effects_tree(root: MessageRecord, effects: Sequence[MessageRecord]) -> CausationNode:
    """The tree of everything ``root`` caused, as
    :meth:`~python_cqrs_core.store.MessageStore.trace_effects` returns it, under
    ``root``.

    The records are linked by :func:`~python_cqrs_core.store.assemble_trees`, the
    store's own tree builder.  ``root`` is not flagged as an orphan (its cause is
    simply outside the view).  An effect whose cause is not among them (impossible in
    a consistent store) is kept, hung under ``root`` as an orphan, never dropped.

    >>> from uuid import UUID
    >>> order = _example_record(message_id=UUID(int=1))
    >>> placed = _example_record(message_id=UUID(int=2), causation_id=str(UUID(int=1)))
    >>> [(depth, n.record.message_id.int) for depth, n in effects_tree(order, [placed]).walk()]
    [(0, 1), (1, 2)]
    """
    top, *strays = assemble_trees([root, *effects])
    top.orphan = False
    top.children.extend(strays)
    return top


def _example_record(**fields: Any) -> MessageRecord:
    """A record for the examples above (the doctests)."""
    moment = datetime(2026, 1, 2, 23, 40, 1, tzinfo=UTC)
    values: dict[str, Any] = {
        "message_id": UUID(int=1),
        "kind": "command",
        "message_type": "shop.NotifyCustomer",
        "correlation_id": "req-1",
        "causation_id": None,
        "requested_by": None,
        "requested_at": moment,
        "recorded_at": moment,
        "payload": {},
        "outcome": "failed" if fields.get("handlers") else "succeeded",
        "handlers": (),
        "error_type": None,
        "error_message": None,
        "duration_ms": None,
        "headers": {},
    }
    values.update(fields)
    return MessageRecord(**values)
