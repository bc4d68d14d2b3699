r"""What each view of the Observatory shows, as JSON-ready dicts built from the store.

Every page and every ``/api/...`` endpoint is built from these functions, so the HTML,
the JSON and the live stream show the same values, worded the way the ``cqrs`` command
line words them (:mod:`python_cqrs_core.apps.presentation`):

- :func:`record_view`: one record, its payload with personal data redacted, its handler
  events, the ``display`` strings a row shows and the links to its views;
- :func:`operation_view`: a business operation (a correlation id): every causation tree,
  flattened in drawing order, and the :func:`waterfall` of its handlers;
- :func:`message_view`: one record with its causes and effects;
- :func:`summary_view`, :func:`dead_letter_view`: operations and dead letters in lists.

Stored text is user data.  The dicts hold it as stored (JSON escapes it for machines);
the ``display`` strings are made one-line and harmless to look at
(:func:`~python_cqrs_core.apps.presentation.printable` shows control and bidi
characters escaped), and the HTML templates and the page's script escape whatever they
show (``textContent``, never markup)::

    >>> from python_cqrs_core.apps.presentation import _example_record
    >>> view = record_view(_example_record(payload={"note": "<script>alert(1)</script>"}))
    >>> view["payload"]["note"], view["display"]["type"], view["display"]["id"]
    ('<script>alert(1)</script>', 'NotifyCustomer', '00000000')
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import unquote, urlencode
from uuid import UUID

from ...names import (
    EVENT_HANDLER_COMPLETED,
    EVENT_HANDLER_FAILED,
    TRACEPARENT,
    WIRE_CAUSATION_ID,
    WIRE_CORRELATION_ID,
    WIRE_MESSAGE_ID,
    WIRE_MESSAGE_KIND,
    WIRE_MESSAGE_TYPE,
    WIRE_REQUESTED_BY,
)
from ...store import CausationNode, CorrelationSummary, DeliveryRecord, MessageRecord
from ...transports import DeadLetter
from ...validation import validate_correlation_id, validate_request_id, validate_type_name
from ..presentation import (
    clock,
    delivery_line,
    display_handler_name,
    display_type_name,
    duration,
    effects_tree,
    error_summary,
    first_line,
    printable,
    short_id,
    terminal_json,
    timestamp,
)

__all__ = [
    "ApmLinks",
    "dead_letter_view",
    "delivery_view",
    "drawn",
    "handler_events",
    "message_link",
    "message_view",
    "operation_link",
    "operation_view",
    "record_view",
    "summary_view",
    "waterfall",
    "whole_error_message",
]

_TRACEPARENT: Final = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_NO_TRACE: Final = "0" * 32
_NO_SPAN: Final = "0" * 16
_MIN_BAR_PERCENT: Final = 0.4  # a bar never thinner than this, so a 0.01 ms step shows


# -- links ---------------------------------------------------------------------------------


def message_link(message_id: UUID | str) -> str:
    """The address of a message's view: ``/messages/<uuid>``."""
    return f"/messages/{message_id}"


def operation_link(correlation_id: str, **filters: str | None) -> str:
    """The address of an operation's view, the correlation guide's deep link:
    ``/timeline?correlation=<id>``, keeping the timeline's filters that are set.

    >>> operation_link("req 1&2", outcome="failed", kind=None)
    '/timeline?correlation=req+1%262&outcome=failed'
    """
    query = {"correlation": correlation_id}
    query.update({name: value for name, value in filters.items() if value})
    return f"/timeline?{urlencode(query)}"


class ApmLinks:
    """Links from a record's ``traceparent`` to an APM's view of that trace.

    ``template`` is an ``http(s)://`` address with ``{trace_id}`` (and optionally
    ``{span_id}``) in it, e.g. ``"https://tempo.example/explore?trace={trace_id}"``.
    Only the hex digits of a well-formed ``traceparent`` are put in it, so a stored
    header can never make a link of its own.

    >>> ApmLinks("https://apm.example/trace/{trace_id}?span={span_id}").link(
    ...     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    'https://apm.example/trace/4bf92f3577b34da6a3ce929d0e0e4736?span=00f067aa0ba902b7'
    >>> ApmLinks("javascript:alert(1)//{trace_id}")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: apm_url_template must start with http:// or https://, got 'javascript:...'
    """

    def __init__(self, template: str) -> None:
        if not template.startswith(("http://", "https://")):
            raise ValueError(
                f"apm_url_template must start with http:// or https://, got {template!r}"
            )
        if "{trace_id}" not in template:
            raise ValueError(f"apm_url_template must contain {{trace_id}}, got {template!r}")
        try:
            template.format(trace_id="0", span_id="0")
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                "apm_url_template may only use the fields {trace_id} and {span_id}, "
                f"got {template!r}"
            ) from None
        self.template = template

    def link(self, traceparent: str | None) -> str | None:
        """The APM address of the trace ``traceparent`` names, ``None`` if it names
        none (absent, malformed, or the all-zero ids the spec makes invalid)."""
        match = _TRACEPARENT.fullmatch(traceparent or "")
        if match is None or match.group(1) == _NO_TRACE or match.group(2) == _NO_SPAN:
            return None
        return self.template.format(trace_id=match.group(1), span_id=match.group(2))


# -- records -------------------------------------------------------------------------------


def whole_error_message(record: MessageRecord) -> str | None:
    """The whole message of the error
    :func:`~python_cqrs_core.apps.presentation.error_summary` summarises in one line:
    the record's own, else its first failed handler's (a detail view shows it all)."""
    if record.error_type is not None:
        return record.error_message
    failed = (handler for handler in record.handlers if handler.outcome == "failed")
    return next((handler.error_message for handler in failed), None)


def handler_events(record: MessageRecord) -> list[dict[str, Any]]:
    """The handler events a record stands for: one ``handler.completed`` or
    ``handler.failed`` per handler that ran, in the shape of
    :meth:`python_cqrs_core.lifecycle.HandlerEvent.to_dict`, so a client reads events
    from the store and from an in-process listener alike.  Their ``timestamp`` is
    when the record's dispatch ended (the store keeps no time per handler)."""
    moment = record.recorded_at.timestamp()
    return [
        {
            "event": EVENT_HANDLER_COMPLETED
            if handler.outcome == "succeeded"
            else EVENT_HANDLER_FAILED,
            "message_id": str(record.message_id),
            "message_type": record.message_type,
            "kind": record.kind,
            "handler": handler.handler,
            "correlation_id": record.correlation_id,
            "causation_id": record.causation_id,
            "requested_by": record.requested_by,
            "duration_ms": handler.duration_ms,
            "error_type": handler.error_type,
            "error_message": handler.error_message,
            "timestamp": moment,
        }
        for handler in record.handlers
    ]


def _display(record: MessageRecord) -> dict[str, Any]:
    """The strings one row shows, worded as ``cqrs trace`` words them."""
    error = error_summary(record)
    return {
        "mark": "✗" if record.failed else "✓",
        "type": printable(display_type_name(record.message_type)),
        "id": short_id(record.message_id),
        "cause": printable(short_id(record.causation_id)),
        "correlation": printable(short_id(record.correlation_id)),
        "duration": duration(record.duration_ms),
        "time": clock(record.requested_at),
        "requested_by": printable(record.requested_by or "-"),
        "service": printable(record.service or "-"),
        "handlers": [
            {
                "name": printable(display_handler_name(handler.handler)),
                "duration": duration(handler.duration_ms),
                "failed": handler.outcome == "failed",
            }
            for handler in record.handlers
        ],
        "error": None if error is None else printable(str(error)),
    }


def record_view(record: MessageRecord, **filters: str | None) -> dict[str, Any]:
    """One record as every view receives it: the fields of
    :meth:`~python_cqrs_core.store.MessageRecord.to_dict` with the payload's personal
    data redacted (:meth:`~python_cqrs_core.store.MessageRecord.redacted_payload`:
    a view never shows a ``PII`` field), plus ``handler_events``
    (:func:`handler_events`), ``display`` (the strings a row shows) and ``links``
    (its message view, and its operation's view keeping ``filters``)."""
    view = record.to_dict()
    view["payload"] = record.redacted_payload()
    view["handler_events"] = handler_events(record)
    view["display"] = _display(record)
    view["links"] = {
        "message": message_link(record.message_id),
        "operation": operation_link(record.correlation_id, **filters),
    }
    return view


def summary_view(summary: CorrelationSummary) -> dict[str, Any]:
    """One business operation in a list: the summary's fields, its display strings
    and links."""
    view = summary.to_dict()
    view["display"] = {
        "mark": "✗" if summary.failed else "✓",
        "type": printable(display_type_name(summary.root_message_type)),
        "correlation": printable(summary.correlation_id),
        "requested_by": printable(summary.requested_by or "-"),
        "service": printable(summary.service or "-"),
        "started": timestamp(summary.first_recorded_at),
    }
    view["links"] = {
        "operation": operation_link(summary.correlation_id),
        "root": message_link(summary.root_message_id),
    }
    return view


# -- operations ------------------------------------------------------------------------------


def drawn(tree: CausationNode) -> Iterator[tuple[int, str, CausationNode]]:
    """``(depth, guide, node)`` of every node of ``tree``, depth first, children in
    recorded order; ``guide`` is the tree's drawing before the node, as
    ``cqrs trace`` draws it (iterative: a deep chain is fine).

    >>> from python_cqrs_core.apps.presentation import _example_record
    >>> from python_cqrs_core.store import assemble_trees
    >>> a, b, c = (_example_record(message_id=UUID(int=n), causation_id=cause)
    ...            for n, cause in ((1, None), (2, str(UUID(int=1))), (3, str(UUID(int=1)))))
    >>> [(guide, node.record.message_id.int)
    ...  for _, guide, node in drawn(assemble_trees([a, b, c])[0])]
    [('', 1), ('├── ', 2), ('└── ', 3)]
    """
    stack: list[tuple[int, str, str, CausationNode]] = [(0, "", "", tree)]
    while stack:
        depth, guide, inner, node = stack.pop()
        yield depth, guide, node
        last = len(node.children) - 1
        stack.extend(
            (
                depth + 1,
                inner + ("└── " if i == last else "├── "),
                inner + ("    " if i == last else "│   "),
                child,
            )
            for i, child in reversed(list(enumerate(node.children)))
        )


def _flatten(trees: Sequence[CausationNode], **filters: str | None) -> list[dict[str, Any]]:
    """The nodes of ``trees`` in drawing order (:func:`drawn`), each with its depth,
    its guide, its tree's index and whether it is an orphan."""
    return [
        {
            "depth": depth,
            "tree": index,
            "guide": guide,
            "orphan": node.orphan,
            "record": record_view(node.record, **filters),
            "deliveries": [delivery_view(delivery) for delivery in node.deliveries],
        }
        for index, tree in enumerate(trees)
        for depth, guide, node in drawn(tree)
    ]


def delivery_view(delivery: DeliveryRecord) -> dict[str, Any]:
    """One delivery of a message to a consumer group, as the operation view lists it
    under its node (:func:`~python_cqrs_core.apps.presentation.delivery_line`)."""
    return {
        "service": None if delivery.service is None else printable(delivery.service),
        "transport": printable(delivery.transport),
        "destination": printable(delivery.destination),
        "group": printable(delivery.group),
        "attempt": delivery.attempt,
        "outcome": delivery.outcome,
        "failed": delivery.failed,
        "line": printable(delivery_line(delivery)),
    }


def waterfall(trees: Sequence[CausationNode]) -> dict[str, Any]:
    """The handlers of an operation on one time axis, so that the slow step stands out.

    One row per handler that ran (a record without handlers gets one row for its
    dispatch), in drawing order.  A dispatch ends when it was recorded
    (``recorded_at``) and lasted ``duration_ms``; its handlers ran one after another
    from its start (the mediator runs an event's subscribers in turn), so each starts
    where the one before it ended.  ``start_ms`` is measured from the operation's
    first start; ``left`` and ``width`` place the bar in percent of the whole span.

    A handler's duration includes the dispatches it made (a command handler that
    publishes an event waits for the event's subscribers), so ``self_ms`` is its own
    time: its duration less those of the dispatches that started while it ran.
    ``slowest`` marks the handler with the most time of its own: the slow step.
    Clocks of different services may disagree: each bar is placed by the clock of the
    service that recorded it.
    """
    rows: list[dict[str, Any]] = []
    starts: list[datetime] = []
    dispatches: dict[str, tuple[datetime, float, list[int]]] = {}
    for tree in trees:
        for depth, node in tree.walk():
            record = node.record
            took = record.duration_ms or sum(h.duration_ms for h in record.handlers)
            start = record.recorded_at - timedelta(milliseconds=took)
            steps = [(h.handler, h.duration_ms, h.outcome) for h in record.handlers] or [
                ("(no handler)", took, record.outcome)
            ]
            dispatches[str(record.message_id)] = (
                start,
                took,
                list(range(len(rows), len(rows) + len(steps))),
            )
            offset = 0.0
            for handler, took_ms, outcome in steps:
                starts.append(start)
                rows.append(
                    {
                        "message_id": str(record.message_id),
                        "depth": depth,
                        "type": printable(display_type_name(record.message_type)),
                        "id": short_id(record.message_id),
                        "handler": printable(display_handler_name(handler)),
                        "service": printable(record.service or "-"),
                        "outcome": outcome,
                        "offset_ms": offset,
                        "duration_ms": took_ms,
                        "self_ms": took_ms,
                        "duration": duration(took_ms),
                    }
                )
                offset += took_ms
    if not rows:
        return {"span_ms": 0.0, "span": duration(0.0), "rows": []}
    origin = min(starts)
    for row, start in zip(rows, starts, strict=True):
        row["start_ms"] = (start - origin) / timedelta(milliseconds=1) + row.pop("offset_ms")
    for tree in trees:
        for _, node in tree.walk():
            parent = dispatches[str(node.record.message_id)][2]
            for child in node.children:
                child_start, child_took, _ = dispatches[str(child.record.message_id)]
                at = (child_start - origin) / timedelta(milliseconds=1)
                # The parent's handler running when the child started: the last one
                # that had started by then (the first, if clocks put it earlier).
                during = [i for i in parent if rows[i]["start_ms"] <= at] or parent[:1]
                row = rows[during[-1]]
                row["self_ms"] = max(row["self_ms"] - child_took, 0.0)
    span = max(row["start_ms"] + row["duration_ms"] for row in rows) or 1.0
    slowest = max(rows, key=lambda row: row["self_ms"])
    for row in rows:
        row["left"] = round(min(row["start_ms"] / span * 100, 100 - _MIN_BAR_PERCENT), 3)
        row["width"] = round(
            min(max(row["duration_ms"] / span * 100, _MIN_BAR_PERCENT), 100 - row["left"]), 3
        )
        row["slowest"] = row is slowest
    return {"span_ms": span, "span": duration(span), "rows": rows}


def operation_view(
    correlation_id: str, trees: Sequence[CausationNode], **filters: str | None
) -> dict[str, Any]:
    """A business operation: its heading figures (as ``cqrs trace`` heads a tree),
    every tree flattened in drawing order (``nodes``; several roots when requests
    shared the correlation id, orphans flagged) and the :func:`waterfall`."""
    records = [node.record for tree in trees for _, node in tree.walk()]
    who = {record.requested_by for record in records}
    requested_by = next(iter(who)) if len(who) == 1 else None
    services = sorted({record.service for record in records if record.service is not None})
    first = min(record.requested_at for record in records)
    failed = sum(record.failed for record in records)
    return {
        "correlation_id": correlation_id,
        "message_count": len(records),
        "failed_count": failed,
        "outcome": "failed" if failed else "succeeded",
        "roots": len(trees),
        "requested_by": requested_by,
        "services": services,
        "started_at": first.isoformat(),
        "display": {
            "correlation": printable(correlation_id),
            "started": timestamp(first),
            "requested_by": printable(requested_by or "-") if len(who) == 1 else "several",
            "services": printable(", ".join(services) or "-"),
        },
        "nodes": _flatten(trees, **filters),
        "waterfall": waterfall(trees),
        "links": {"self": operation_link(correlation_id)},
    }


# -- messages ------------------------------------------------------------------------------


def message_view(
    record: MessageRecord,
    causes: Sequence[MessageRecord],
    effects: Sequence[MessageRecord],
    apm: ApmLinks | None = None,
) -> dict[str, Any]:
    """One message in full: the record, its whole error message, its headers (the
    ``traceparent`` linking to the APM when ``apm`` is configured), the chain of its
    causes (root first, the message itself left out) and the tree of its effects
    under it (:func:`~python_cqrs_core.apps.presentation.effects_tree`)."""
    whole = whole_error_message(record)
    headers = [
        {
            "name": printable(name),
            "value": printable(value),
            "link": apm.link(value) if apm is not None and name == TRACEPARENT else None,
        }
        for name, value in sorted(record.headers.items())
    ]
    tree = effects_tree(record, effects)
    return {
        "record": record_view(record),
        "error_message": None if whole is None else printable(whole, keep_newlines=True),
        "headers": headers,
        "payload_json": terminal_json(record.redacted_payload()),
        "causes": [record_view(cause) for cause in causes if cause.message_id != record.message_id],
        "effects": _flatten([tree])[1:],
    }


# -- dead letters ----------------------------------------------------------------------------


def _checked(value: str | None, check: Any) -> str | None:
    """``value`` when ``check`` accepts it, else ``None`` (a hostile header links
    nowhere)."""
    if value is None:
        return None
    try:
        return str(check(value))
    except ValueError:
        return None


def dead_letter_view(letter: DeadLetter) -> dict[str, Any]:
    """A dead-lettered message: where it was going, the group that gave up, why, after
    how many attempts, and the message's identity read from its headers.

    The headers come from the broker, so each is checked before it is used: the id
    links to the message's view only when it is a UUID, the correlation id only when
    valid.  The body is not shown: the Observatory has no message classes, so it
    cannot tell which of its fields are personal data.
    """
    headers: Mapping[str, str] = letter.headers
    message_id = _checked(headers.get(WIRE_MESSAGE_ID), validate_request_id)
    correlation_id = _checked(headers.get(WIRE_CORRELATION_ID), validate_correlation_id)
    type_name = _checked(headers.get(WIRE_MESSAGE_TYPE), validate_type_name)
    requested_by = headers.get(WIRE_REQUESTED_BY)
    return {
        "dead_letter_id": letter.dead_letter_id,
        "destination": letter.destination,
        "group": letter.group,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "dead_lettered_at": letter.dead_lettered_at.isoformat(),
        "original_delivery_id": letter.original_delivery_id,
        "message_id": message_id,
        "message_type": type_name,
        "kind": headers.get(WIRE_MESSAGE_KIND),
        "correlation_id": correlation_id,
        "causation_id": headers.get(WIRE_CAUSATION_ID),
        "display": {
            "destination": printable(letter.destination),
            "group": printable(letter.group),
            "reason": printable(first_line(letter.reason)),
            "when": timestamp(letter.dead_lettered_at),
            "type": printable(display_type_name(type_name)) if type_name else "?",
            "id": short_id(message_id) if message_id else "?",
            "requested_by": printable(unquote(requested_by)) if requested_by else "-",
        },
        "links": {
            "message": None if message_id is None else message_link(message_id),
            "operation": None if correlation_id is None else operation_link(correlation_id),
        },
    }
