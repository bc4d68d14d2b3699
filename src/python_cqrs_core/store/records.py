"""What the message store holds: one :class:`MessageRecord` per dispatched message,
and the :class:`CausationNode` trees assembled from them.

A record is a plain, immutable value: every backend stores and returns the same
fields, and :meth:`MessageRecord.to_dict` / :meth:`MessageRecord.from_dict` turn it
into JSON and back (for ``cqrs trace --json``, exports, tests).  A record knows the
stable type name of its message, so :meth:`MessageRecord.to_message` turns it back
into that message through a :class:`~python_cqrs_core.registry.MessageRegistry`, and
it knows which payload fields are personal data, so any later view can keep them
hidden with :meth:`MessageRecord.redacted_payload`.

Ids are kept as text wherever they may be opaque: ``correlation_id`` and
``causation_id`` are ``str`` (``str(uuid)`` for UUIDs, the string itself for an
opaque id such as ``"req-abc-123"``); ``message_id`` is always a :class:`uuid.UUID`,
the message's ``request_id``.

:func:`assemble_trees` is the one place that turns the records of a correlation into
trees; every backend's :meth:`~python_cqrs_core.store.MessageStore.build_causation_tree`
uses it, so all of them agree on roots, orphans and cycles::

    >>> from datetime import UTC, datetime
    >>> from uuid import UUID
    >>> now = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def rec(n, cause):
    ...     return MessageRecord(
    ...         message_id=UUID(int=n), kind="event", message_type=f"E{n}",
    ...         correlation_id="op-1", causation_id=cause, requested_by=None,
    ...         requested_at=now, recorded_at=now, payload={}, outcome="succeeded",
    ...         handlers=(), error_type=None, error_message=None, duration_ms=None,
    ...         headers={}, position=n)
    >>> root = rec(1, None)
    >>> child = rec(2, str(root.message_id))
    >>> [(depth, node.record.message_type) for tree in assemble_trees([root, child])
    ...  for depth, node in tree.walk()]
    [(0, 'E1'), (1, 'E2')]
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from math import isfinite
from typing import Any, Literal, cast
from uuid import UUID

from ..errors import CQRSError
from ..messages import BaseMessage, MessageKind, message_kind
from ..names import TRACING_FIELDS
from ..pii import REDACTED
from ..registry import MessageRegistry
from ..validation import validate_correlation_id

__all__ = [
    "UNRECORDABLE_PAYLOAD",
    "CausationNode",
    "DeliveryOutcome",
    "DeliveryRecord",
    "HandlerOutcome",
    "MessageRecord",
    "Outcome",
    "RecordNotReconstructibleError",
    "assemble_trees",
    "escape_json",
    "escape_text",
    "escaped",
    "escaped_delivery",
    "failing_deliveries",
    "id_prefix_bounds",
    "id_text",
    "order_chain",
    "redact",
    "storable",
    "storable_delivery",
]

Outcome = Literal["succeeded", "failed"]
_OUTCOMES: frozenset[str] = frozenset(("succeeded", "failed"))
DeliveryOutcome = Literal["succeeded", "failed", "dead_lettered", "replayed"]
"""How one delivery of a message to a consumer group ended (see :class:`DeliveryRecord`)."""
_DELIVERY_OUTCOMES: frozenset[str] = frozenset(("succeeded", "failed", "dead_lettered", "replayed"))
_KINDS: frozenset[str] = frozenset(("command", "query", "event"))
_TRACING_FIELD_SET = frozenset(TRACING_FIELDS)

UNRECORDABLE_PAYLOAD = "unrecordable_payload"
"""The one key of the payload recorded for a message JSON cannot hold: its value
says why (the record is kept, its payload is not)."""


class RecordNotReconstructibleError(CQRSError, ValueError):
    """A record cannot be turned back into the message it records: its payload was
    redacted or could not be recorded, its kind does not match the registered class,
    or its payload no longer validates as that class.  The message names the record,
    its type and the reason."""


def redact(payload: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """A copy of ``payload`` in which each field of ``names`` that holds a value is
    :data:`~python_cqrs_core.pii.REDACTED`.

    >>> redact({"email": "ada@example.com", "phone": None, "n": 2}, ("email", "phone"))
    {'email': '***', 'phone': None, 'n': 2}
    """
    redacted = dict(payload)
    for name in names:
        if redacted.get(name) is not None:
            redacted[name] = REDACTED
    return redacted


def id_text(value: UUID | str) -> str:
    """The text form under which an id is stored and looked up.

    UUIDs (and strings that parse as one, in any spelling) become the canonical
    ``str(uuid)``; any other string is an opaque id and is kept as it is.

    >>> id_text("550E8400E29B41D4A716446655440000")
    '550e8400-e29b-41d4-a716-446655440000'
    >>> id_text("req-abc-123")
    'req-abc-123'
    """
    if type(value) is UUID:
        return str(value)
    try:
        return str(validate_correlation_id(value))
    except ValueError:
        # Not an id the library would ever store: looked up as is, it matches nothing.
        return str(value)


_DASHES = frozenset((8, 13, 18, 23))  # where str(uuid) writes its dashes
_HEX = frozenset("0123456789abcdef")


def id_prefix_bounds(prefix: object) -> tuple[UUID, UUID]:
    """The smallest and the largest UUID whose text (``str(uuid)``) starts with
    ``prefix``: the range of the ``message_id`` index a prefix lookup scans.

    ``prefix`` is 1 to 36 characters of a UUID as ``str(uuid)`` writes it: lower-case
    hex digits, with the dashes in their places (characters 9, 14, 19 and 24).
    Anything else is a :class:`ValueError` naming the prefix.  Both bounds are whole
    UUIDs, so the range means the same under any collation a database sorts text by.

    >>> low, high = id_prefix_bounds("6c1f0d1e-8f")
    >>> str(low), str(high)
    ('6c1f0d1e-8f00-0000-0000-000000000000', '6c1f0d1e-8fff-ffff-ffff-ffffffffffff')
    >>> id_prefix_bounds("6C1F")
    Traceback (most recent call last):
        ...
    ValueError: prefix must be 1 to 36 characters of a message id as str(uuid) writes it \
(lower-case hex digits, dashes as characters 9, 14, 19 and 24), got '6C1F'
    """
    shaped = isinstance(prefix, str) and 1 <= len(prefix) <= 36
    if shaped:
        for index, char in enumerate(cast(str, prefix)):
            if (char != "-") if index in _DASHES else (char not in _HEX):
                shaped = False
                break
    if not shaped:
        shown = repr(prefix) if len(repr(prefix)) <= 60 else repr(prefix)[:57] + "..."
        raise ValueError(
            "prefix must be 1 to 36 characters of a message id as str(uuid) writes it "
            "(lower-case hex digits, dashes as characters 9, 14, 19 and 24), "
            f"got {shown}"
        )
    digits = cast(str, prefix).replace("-", "")
    free_bits = 4 * (32 - len(digits))
    low = int(digits, 16) << free_bits
    return UUID(int=low), UUID(int=low | ((1 << free_bits) - 1))


@dataclass(frozen=True, slots=True)
class HandlerOutcome:
    """How one handler of one message ended (events have one per subscriber)."""

    handler: str
    outcome: Outcome
    duration_ms: float
    error_type: str | None = None
    error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "handler": self.handler,
            "outcome": self.outcome,
            "duration_ms": self.duration_ms,
            "error_type": self.error_type,
            "error_message": self.error_message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HandlerOutcome:
        """Rebuild an outcome from :meth:`to_dict` output."""
        outcome = data["outcome"]
        if outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be 'succeeded' or 'failed', got {outcome!r}")
        return cls(
            handler=str(data["handler"]),
            outcome=outcome,
            duration_ms=float(data["duration_ms"]),
            error_type=data.get("error_type"),
            error_message=data.get("error_message"),
        )


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One dispatched message as the store keeps it.

    ``message_type`` is the stable type name of the message
    (:func:`~python_cqrs_core.message_type_name`, e.g. ``"orders.OrderPlaced"``).
    ``payload`` holds the message's business fields as JSON (the five tracing fields
    have fields of their own; records written by schema 1 also hold them in the
    payload).  ``outcome`` is ``"failed"`` when any handler failed (or the dispatch
    raised before a handler ran); ``error_type``/``error_message`` then describe the
    first failure.  ``handlers`` lists every handler that ran, in the order they ran.
    ``position`` is the global recorded order, assigned by the store on
    :meth:`append <python_cqrs_core.store.MessageStore.append>` (a value given before
    is ignored).

    ``service`` names the service that recorded it (``MessageRecorder(service=...)``),
    ``pii_fields`` the payload fields its class declares :data:`~python_cqrs_core.PII`,
    and ``payload_redacted`` says whether those were already replaced by ``"***"``
    when it was recorded (``MessageRecorder(redact_pii=True)``).

    ``escaped_fields`` names the fields whose content no store could hold as it was
    and that were therefore stored escaped (see :func:`escaped`): text with NUL
    characters or lone surrogates, numbers that are not finite.  It is ``()`` for
    almost every record.
    """

    message_id: UUID
    kind: MessageKind
    message_type: str
    correlation_id: str
    causation_id: str | None
    requested_by: str | None
    requested_at: datetime
    recorded_at: datetime
    payload: dict[str, Any]
    outcome: Outcome
    handlers: tuple[HandlerOutcome, ...]
    error_type: str | None
    error_message: str | None
    duration_ms: float | None
    headers: dict[str, str]
    position: int | None = None
    service: str | None = None
    pii_fields: tuple[str, ...] = ()
    payload_redacted: bool = False
    escaped_fields: tuple[str, ...] = ()

    @property
    def handler(self) -> str | None:
        """The handler names joined with ``", "``, or ``None`` when none ran."""
        return ", ".join(h.handler for h in self.handlers) or None

    @property
    def traceparent(self) -> str | None:
        """The W3C ``traceparent`` of the span that handled the message, if traced."""
        return self.headers.get("traceparent")

    @property
    def failed(self) -> bool:
        """True when the message failed (see ``outcome``)."""
        return self.outcome == "failed"

    def redacted_payload(self) -> dict[str, Any]:
        """The payload with every :data:`~python_cqrs_core.PII` field that holds a
        value replaced by ``"***"``: what a view shows to someone who may not see
        personal data (a copy; the record is unchanged).
        """
        return redact(self.payload, self.pii_fields)

    def to_message(self, registry: MessageRegistry) -> BaseMessage:
        """The message this record records, rebuilt through ``registry``.

        The class is ``registry.resolve(message_type)``; the business fields come
        from the payload and are validated as that class; the five tracing fields come
        from the record (a payload of schema 1 that also holds them is overruled).
        The message is not built with its constructor, so nothing is inherited from
        a handler or scope running now, and its correlation id, causation id and
        ``requested_by`` count as decided: it was dispatched, and stays a root if it
        was one::

            registry = MessageRegistry([PlaceOrder, OrderPlaced])
            for record in await store.by_correlation("req-abc-123"):
                message = record.to_message(registry)

        Raises :class:`~python_cqrs_core.registry.UnknownMessageTypeError` when the
        registry has no class for the type name, and
        :class:`RecordNotReconstructibleError` when the payload was redacted at
        recording, could not be recorded at all, or does not validate as the class.
        """
        cls = registry.resolve(self.message_type)
        where = f"record {self.message_id} ({self.message_type})"
        if self.payload_redacted:
            raise RecordNotReconstructibleError(
                f"{where} cannot be turned back into its message: its personal data "
                f"({', '.join(self.pii_fields)}) was redacted when it was recorded "
                "(MessageRecorder(redact_pii=True))"
            )
        if "payload" in self.escaped_fields:
            raise RecordNotReconstructibleError(
                f"{where} cannot be turned back into its message: its payload held text "
                "or numbers no store can hold, and was escaped when it was recorded"
            )
        if self.payload.keys() == {UNRECORDABLE_PAYLOAD}:
            raise RecordNotReconstructibleError(
                f"{where} cannot be turned back into its message: its payload could not "
                f"be recorded ({self.payload[UNRECORDABLE_PAYLOAD]})"
            )
        if message_kind(cls) != self.kind:
            raise RecordNotReconstructibleError(
                f"{where} records a {self.kind}, but the registered class "
                f"{cls.__module__}.{cls.__qualname__} is a {message_kind(cls)}"
            )
        data = {k: v for k, v in self.payload.items() if k not in _TRACING_FIELD_SET}
        data["request_id"] = self.message_id
        data["correlation_id"] = self.correlation_id
        data["causation_id"] = self.causation_id
        data["requested_by"] = self.requested_by
        data["requested_at"] = self.requested_at
        # Validated in place of the constructor: BaseMessage.__init__ (which
        # model_validate would call too) inherits ids from the running handler.
        message = cls.__new__(cls)
        try:
            cls.__pydantic_validator__.validate_python(data, self_instance=message)
        except ValueError as exc:  # pydantic's ValidationError
            raise RecordNotReconstructibleError(
                f"{where} does not validate as {cls.__module__}.{cls.__qualname__}: {exc}"
            ) from exc
        return message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ids and datetimes as strings.

        It also carries the derived ``handler`` and ``traceparent`` for readers of
        the JSON; :meth:`from_dict` ignores them.
        """
        return {
            "message_id": str(self.message_id),
            "kind": self.kind,
            "message_type": self.message_type,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            "payload": self.payload,
            "outcome": self.outcome,
            "handler": self.handler,
            "handlers": [h.to_dict() for h in self.handlers],
            "error_type": self.error_type,
            "error_message": self.error_message,
            "duration_ms": self.duration_ms,
            "headers": self.headers,
            "traceparent": self.traceparent,
            "position": self.position,
            "service": self.service,
            "pii_fields": list(self.pii_fields),
            "payload_redacted": self.payload_redacted,
            "escaped_fields": list(self.escaped_fields),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MessageRecord:
        """Rebuild a record from :meth:`to_dict` output (or the same shape from JSON)."""
        kind = data["kind"]
        if kind not in _KINDS:
            raise ValueError(f"kind must be 'command', 'query' or 'event', got {kind!r}")
        outcome = data["outcome"]
        if outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be 'succeeded' or 'failed', got {outcome!r}")
        duration = data.get("duration_ms")
        position = data.get("position")
        return cls(
            message_id=UUID(str(data["message_id"])),
            kind=cast(MessageKind, kind),
            message_type=str(data["message_type"]),
            correlation_id=str(data["correlation_id"]),
            causation_id=None if data.get("causation_id") is None else str(data["causation_id"]),
            requested_by=data.get("requested_by"),
            requested_at=_datetime(data["requested_at"]),
            recorded_at=_datetime(data["recorded_at"]),
            payload=dict(data.get("payload") or {}),
            outcome=outcome,
            handlers=tuple(HandlerOutcome.from_dict(h) for h in data.get("handlers") or ()),
            error_type=data.get("error_type"),
            error_message=data.get("error_message"),
            duration_ms=None if duration is None else float(duration),
            headers={str(k): str(v) for k, v in (data.get("headers") or {}).items()},
            position=None if position is None else int(position),
            service=data.get("service"),
            pii_fields=tuple(str(name) for name in data.get("pii_fields") or ()),
            payload_redacted=bool(data.get("payload_redacted", False)),
            escaped_fields=tuple(str(name) for name in data.get("escaped_fields") or ()),
        )


def _datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery of a message to a consumer group, and how it ended.

    A message published by one service and consumed by others has one
    :class:`MessageRecord` (what was sent) and one delivery record per attempt of each
    consuming group (what became of it there).  The
    :class:`~python_cqrs_core.store.MessageRecorder` of a consuming service writes one
    for every dispatch of a consumed message, with the outcomes of its handlers, in
    the commit of the chain that dispatch starts; a consumer's dead letters
    (:class:`~python_cqrs_core.store.DeliveryRecorder`) and an operator's replays are
    delivery records too.

    - ``message_id``, ``message_type``, ``correlation_id``: the message delivered
      (``message_type`` is ``None`` when a dead-lettered message did not say);
    - ``service``: the service that consumed it (or replayed it), as its recorder
      names itself;
    - ``transport``, ``destination``, ``group``, ``delivery_id``: where it came
      from: the transport's name (``"redis"``), the stream, queue or subject, the
      consumer group, and the broker's id of this delivery (never a causation id);
    - ``attempt``: 1 for the first delivery to the group, then 2, 3...;
    - ``outcome``: ``"succeeded"`` or ``"failed"`` (the handlers ran),
      ``"dead_lettered"`` (the group gave up on it) or ``"replayed"`` (an operator
      handed a dead letter back to the group);
    - ``handlers``, ``error_type``, ``error_message``, ``duration_ms``: as in a
      :class:`MessageRecord`, for this attempt; for a dead letter or a replay,
      ``error_message`` is the reason it was dead-lettered;
    - ``requested_by``: who asked for this delivery: the operator of a replay,
      ``None`` for the broker's own deliveries;
    - ``position``: the order deliveries were recorded in, assigned by the store;
    - ``escaped_fields``: as in a :class:`MessageRecord`.

    >>> from datetime import UTC, datetime
    >>> delivery = DeliveryRecord(
    ...     UUID(int=7), "orders.OrderPlaced", "op-1", "inventory", "redis",
    ...     "orders.events", "inventory", 2, "1712-0", "failed", (), "TimeoutError",
    ...     "the warehouse did not answer", 12.5, datetime(2026, 1, 1, tzinfo=UTC))
    >>> delivery.failed, delivery.to_dict()["group"]
    (True, 'inventory')
    """

    message_id: UUID
    message_type: str | None
    correlation_id: str
    service: str | None
    transport: str
    destination: str
    group: str
    attempt: int
    delivery_id: str | None
    outcome: DeliveryOutcome
    handlers: tuple[HandlerOutcome, ...]
    error_type: str | None
    error_message: str | None
    duration_ms: float | None
    recorded_at: datetime
    requested_by: str | None = None
    position: int | None = None
    escaped_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.outcome not in _DELIVERY_OUTCOMES:
            raise ValueError(
                "outcome must be 'succeeded', 'failed', 'dead_lettered' or 'replayed', "
                f"got {self.outcome!r}"
            )
        attempt = self.attempt
        if type(attempt) is not int or attempt < 1:
            raise ValueError(f"attempt must be a whole number >= 1, got {attempt!r}")

    @property
    def failed(self) -> bool:
        """True when the group did not handle the message on this delivery: it failed
        or was dead-lettered."""
        return self.outcome == "failed" or self.outcome == "dead_lettered"

    @property
    def handler(self) -> str | None:
        """The handler names joined with ``", "``, or ``None`` when none ran."""
        return ", ".join(h.handler for h in self.handlers) or None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ids and datetimes as strings."""
        return {
            "message_id": str(self.message_id),
            "message_type": self.message_type,
            "correlation_id": self.correlation_id,
            "service": self.service,
            "transport": self.transport,
            "destination": self.destination,
            "group": self.group,
            "attempt": self.attempt,
            "delivery_id": self.delivery_id,
            "outcome": self.outcome,
            "handlers": [h.to_dict() for h in self.handlers],
            "error_type": self.error_type,
            "error_message": self.error_message,
            "duration_ms": self.duration_ms,
            "recorded_at": self.recorded_at.isoformat(),
            "requested_by": self.requested_by,
            "position": self.position,
            "escaped_fields": list(self.escaped_fields),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeliveryRecord:
        """Rebuild a delivery record from :meth:`to_dict` output."""
        duration = data.get("duration_ms")
        position = data.get("position")
        delivery_id = data.get("delivery_id")
        return cls(
            message_id=UUID(str(data["message_id"])),
            message_type=data.get("message_type"),
            correlation_id=str(data["correlation_id"]),
            service=data.get("service"),
            transport=str(data["transport"]),
            destination=str(data["destination"]),
            group=str(data["group"]),
            attempt=int(data["attempt"]),
            delivery_id=None if delivery_id is None else str(delivery_id),
            outcome=data["outcome"],
            handlers=tuple(HandlerOutcome.from_dict(h) for h in data.get("handlers") or ()),
            error_type=data.get("error_type"),
            error_message=data.get("error_message"),
            duration_ms=None if duration is None else float(duration),
            recorded_at=_datetime(data["recorded_at"]),
            requested_by=data.get("requested_by"),
            position=None if position is None else int(position),
            escaped_fields=tuple(str(name) for name in data.get("escaped_fields") or ()),
        )


def failing_deliveries(deliveries: Iterable[DeliveryRecord]) -> list[DeliveryRecord]:
    """The deliveries that leave their message unhandled by their group: for each
    message and group, the latest delivery (the deliveries are given in recorded
    order), when it failed or was dead-lettered.

    A message that failed twice and then succeeded is handled: its failed attempts
    stay in the tree, but are no failure of the operation.  A dead letter stays one
    until a later delivery of the message to its group (a replay) is recorded.

    >>> from datetime import UTC, datetime
    >>> def attempt(n, outcome):
    ...     return DeliveryRecord(UUID(int=1), None, "op", None, "memory", "orders", "billing",
    ...                           n, None, outcome, (), None, None, None, datetime.now(UTC))
    >>> len(failing_deliveries([attempt(1, "failed"), attempt(2, "succeeded")]))
    0
    >>> [d.outcome for d in failing_deliveries([attempt(1, "failed"), attempt(1, "dead_lettered")])]
    ['dead_lettered']
    """
    latest: dict[tuple[int, str], DeliveryRecord] = {}
    for delivery in deliveries:
        latest[delivery.message_id.int, delivery.group] = delivery
    return [delivery for delivery in latest.values() if delivery.failed]


@dataclass(slots=True)
class CausationNode:
    """One message in a causation tree, with the messages it caused.

    ``orphan`` is true for a node placed at the top of a tree although its record
    has a ``causation_id``: its parent is not in the store (not recorded, recorded
    under another correlation id, or lost), or the stored links form a cycle and
    the tree had to be cut there.

    ``deliveries`` are the deliveries of the message to consumer groups, in recorded
    order (``[]`` for a message no other service consumed): where, by which service,
    at which attempt, and how each ended.  A node's ``record.service`` is the service
    that dispatched the message; each delivery's ``service`` one that consumed it.
    """

    record: MessageRecord
    children: list[CausationNode] = field(default_factory=list)
    orphan: bool = False
    deliveries: list[DeliveryRecord] = field(default_factory=list)

    def walk(self) -> Iterator[tuple[int, CausationNode]]:
        """Yield ``(depth, node)`` depth-first, this node first at depth 0, children
        in recorded order.  Iterative, so deep chains do not hit the recursion limit.
        """
        stack: list[tuple[int, CausationNode]] = [(0, self)]
        while stack:
            depth, node = stack.pop()
            yield depth, node
            stack.extend((depth + 1, child) for child in reversed(node.children))

    def __len__(self) -> int:
        """The number of messages in this tree (this node included)."""
        return sum(1 for _ in self.walk())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready nested dict: the record's fields plus ``orphan``,
        ``deliveries`` (each :meth:`DeliveryRecord.to_dict`) and ``children`` (built
        without recursion, so any depth is fine)."""
        root: dict[str, Any] = {}
        stack: list[tuple[CausationNode, dict[str, Any]]] = [(self, root)]
        while stack:
            node, out = stack.pop()
            out.update(node.record.to_dict())
            out["orphan"] = node.orphan
            out["deliveries"] = [delivery.to_dict() for delivery in node.deliveries]
            out["children"] = [{} for _ in node.children]
            stack.extend(zip(node.children, out["children"], strict=True))
        return root


def assemble_trees(
    records: Iterable[MessageRecord], deliveries: Iterable[DeliveryRecord] = ()
) -> list[CausationNode]:
    """Link records into causation trees: one tree per root, in recorded order.

    ``records`` are the records of one correlation id in recorded order.  A record
    whose ``causation_id`` is ``None`` is a root; so is a record whose parent is not
    among ``records`` (an *orphan*, flagged with ``CausationNode.orphan``).  Records
    caught in a cycle of causation links (possible only in corrupted or hand-written
    data) would have no root: the earliest of them becomes an orphan root and its
    link into the cycle is dropped.  Every record appears in
    exactly one tree, once; nothing is silently left out.

    ``deliveries`` (of the same correlation id, in recorded order) go to the node of
    their message (``CausationNode.deliveries``).  A delivery of a message that has
    no record among ``records`` (a message dead-lettered undecoded, whose producer
    records into another store) belongs to no node: it is still listed by
    :meth:`~python_cqrs_core.store.MessageStore.deliveries_by_correlation`.
    """
    ordered = list(records)
    nodes: dict[str, CausationNode] = {}
    for record in ordered:
        nodes.setdefault(str(record.message_id), CausationNode(record))
    for delivery in deliveries:
        holder = nodes.get(str(delivery.message_id))
        if holder is not None:
            holder.deliveries.append(delivery)
    roots: list[CausationNode] = []
    for node in nodes.values():
        cause = node.record.causation_id
        parent = None if cause is None else nodes.get(cause)
        if parent is None:
            node.orphan = cause is not None
            roots.append(node)
        else:
            parent.children.append(node)
    reached = {id(node) for root in roots for _, node in root.walk()}
    if len(reached) < len(nodes):
        # Whatever a root does not reach hangs off a cycle: the earliest such record
        # becomes an orphan root (cutting its link), until everything is reached.
        for node in nodes.values():
            if id(node) in reached:
                continue
            cause = node.record.causation_id
            parent = nodes[cast(str, cause)]
            parent.children.remove(node)
            node.orphan = True
            roots.append(node)
            reached.update(id(n) for _, n in node.walk())
        order = {id(node): index for index, node in enumerate(nodes.values())}
        roots.sort(key=lambda node: order[id(node)])
    return roots


def order_chain(target: UUID | str, rows: Mapping[str, MessageRecord]) -> list[MessageRecord]:
    """Order the ancestors of ``target`` found in ``rows`` (message id text -> record)
    from the root down to ``target``, stopping at a missing parent or a cycle.

    The SQL backends fetch a causation chain with one recursive query, whose row
    order SQL does not define; this puts it in order, the same way for every backend.
    """
    chain: list[MessageRecord] = []
    seen: set[str] = set()
    key: str | None = id_text(target)
    while key is not None and key not in seen:
        record = rows.get(key)
        if record is None:
            break
        seen.add(key)
        chain.append(record)
        key = record.causation_id
    chain.reverse()
    return chain


# -- what no store can hold, escaped the same way for every backend -------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
_NON_FINITE_NAMES = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _surrogate_escape(found: re.Match[str]) -> str:
    return f"\\u{ord(found.group()):04x}"


def _fine_text(text: str) -> bool:
    return "\x00" not in text and (text.isascii() or _SURROGATE.search(text) is None)


def escape_text(text: str) -> str:
    r"""``text`` with every NUL character and every lone surrogate written out as the
    six characters ``\uXXXX``; any other text is returned as it is.

    A NUL cannot be stored in PostgreSQL text, and a lone surrogate (what Python's
    ``surrogateescape`` makes of a file name that is not UTF-8) cannot be encoded
    in UTF-8 at all, so no store can hold either.  Backslashes are not doubled: an
    escaped text reads as the original to a person, and the record that holds it
    says it was escaped (``MessageRecord.escaped_fields``).

    >>> print(escape_text("report\x00.pdf"), escape_text("caf\udce9.txt"), escape_text("ok"))
    report\u0000.pdf caf\udce9.txt ok
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    if not text.isascii():
        text = _SURROGATE.sub(_surrogate_escape, text)
    return text


def _fine_json(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return _fine_text(value)
    if kind is dict:
        for key, item in value.items():
            if not (type(key) is not str or _fine_text(key)) or not _fine_json(item):
                return False
        return True
    if kind is float:
        return isfinite(value)
    if kind is list or kind is tuple:
        return all(map(_fine_json, value))
    return True


def escape_json(value: Any) -> Any:
    """A JSON value with its text escaped (:func:`escape_text`, keys included) and
    its numbers that are not finite written as the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"`` (strict JSON, and PostgreSQL's ``jsonb``,
    have no such numbers).  What is fine is returned as it is.

    >>> escape_json({"ratio": float("nan"), "path": "a\\udcff", "n": [1.5, float("-inf")]})
    {'ratio': 'NaN', 'path': 'a\\\\udcff', 'n': [1.5, '-Infinity']}
    """
    kind = type(value)
    if kind is str:
        return escape_text(value)
    if kind is float:
        return value if isfinite(value) else _NON_FINITE_NAMES[repr(value)]
    if kind is dict:
        return {
            escape_text(key) if type(key) is str else key: escape_json(item)
            for key, item in value.items()
        }
    if kind is list or kind is tuple:
        return [escape_json(item) for item in value]
    return value


def _escaped_handler(outcome: HandlerOutcome) -> HandlerOutcome:
    duration = outcome.duration_ms
    return HandlerOutcome(
        escape_text(outcome.handler),
        outcome.outcome,
        duration if isfinite(duration) else 0.0,
        None if outcome.error_type is None else escape_text(outcome.error_type),
        None if outcome.error_message is None else escape_text(outcome.error_message),
    )


_TEXT_FIELDS = ("message_type", "correlation_id", "causation_id", "requested_by", "error_type",
                "error_message", "service")  # fmt: skip


def escaped(record: MessageRecord) -> MessageRecord:
    """``record`` as every store holds it: the same record when all of it can be
    stored, else a copy in which what cannot is escaped, and whose
    ``escaped_fields`` names the fields that changed.

    - text (any text field, the payload's keys and strings, header names and values,
      handler names and error texts) with NUL characters or lone surrogates:
      :func:`escape_text`;
    - numbers that are not finite: in the payload and headers the strings ``"NaN"``,
      ``"Infinity"``, ``"-Infinity"`` (:func:`escape_json`); ``duration_ms``
      ``None``; a handler's duration ``0.0``.

    Every backend applies it on ``append``, so a record reads back the same from
    each of them, and any view of it (``cqrs ... --json`` included) is valid, strict
    JSON.  A record whose payload was escaped cannot be turned back into its message
    (:meth:`MessageRecord.to_message`).

    >>> from datetime import UTC, datetime
    >>> now = datetime(2026, 1, 1, tzinfo=UTC)
    >>> broken = MessageRecord(
    ...     UUID(int=1), "command", "files.Upload", "op-1", None, None, now, now,
    ...     {"name": "caf\\udce9.txt", "ratio": float("inf")}, "failed", (), "OSError",
    ...     "cannot open caf\\udce9.txt\\x00", 1.0, {})
    >>> stored = escaped(broken)
    >>> stored.payload
    {'name': 'caf\\\\udce9.txt', 'ratio': 'Infinity'}
    >>> print(stored.error_message, stored.escaped_fields)
    cannot open caf\\udce9.txt\\u0000 ('error_message', 'payload')
    """
    changes: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        text = getattr(record, name)
        if text is not None and not _fine_text(text):
            changes[name] = escape_text(text)
    duration = record.duration_ms
    if duration is not None and not isfinite(duration):
        changes["duration_ms"] = None
    for name in ("payload", "headers"):
        if not _fine_json(getattr(record, name)):
            changes[name] = escape_json(getattr(record, name))
    handlers = record.handlers
    if not all(_fine_handler(outcome) for outcome in handlers):
        changes["handlers"] = tuple(_escaped_handler(outcome) for outcome in handlers)
    if not all(map(_fine_text, record.pii_fields)):
        changes["pii_fields"] = tuple(escape_text(name) for name in record.pii_fields)
    if not changes:
        return record
    names = sorted({*record.escaped_fields, *changes})
    return dataclasses.replace(record, **changes, escaped_fields=tuple(names))


def _fine_handler(outcome: HandlerOutcome) -> bool:
    return (
        _fine_text(outcome.handler)
        and isfinite(outcome.duration_ms)
        and (outcome.error_type is None or _fine_text(outcome.error_type))
        and (outcome.error_message is None or _fine_text(outcome.error_message))
    )


_DELIVERY_TEXT_FIELDS = ("message_type", "correlation_id", "service", "transport", "destination",
                         "group", "delivery_id", "error_type", "error_message",
                         "requested_by")  # fmt: skip


def escaped_delivery(delivery: DeliveryRecord) -> DeliveryRecord:
    r"""``delivery`` as every store holds it: escaped as :func:`escaped` escapes a
    record (text with NUL characters or lone surrogates, durations that are not
    finite), with ``escaped_fields`` naming what changed; the same delivery when
    nothing needs it.

    >>> from datetime import UTC, datetime
    >>> bad = DeliveryRecord(UUID(int=1), None, "op-1", None, "memory", "orders\x00",
    ...                      "billing", 1, None, "failed", (), "KeyError", "caf\udce9",
    ...                      float("nan"), datetime(2026, 1, 1, tzinfo=UTC))
    >>> stored = escaped_delivery(bad)
    >>> print(stored.destination, stored.error_message, stored.duration_ms)
    orders\u0000 caf\udce9 None
    >>> stored.escaped_fields
    ('destination', 'duration_ms', 'error_message')
    """
    changes: dict[str, Any] = {}
    for name in _DELIVERY_TEXT_FIELDS:
        text = getattr(delivery, name)
        if text is not None and not _fine_text(text):
            changes[name] = escape_text(text)
    duration = delivery.duration_ms
    if duration is not None and not isfinite(duration):
        changes["duration_ms"] = None
    if not all(map(_fine_handler, delivery.handlers)):
        changes["handlers"] = tuple(_escaped_handler(outcome) for outcome in delivery.handlers)
    if not changes:
        return delivery
    names = sorted({*delivery.escaped_fields, *changes})
    return dataclasses.replace(delivery, **changes, escaped_fields=tuple(names))


def storable_delivery(delivery: DeliveryRecord) -> DeliveryRecord:
    """:func:`escaped_delivery`, with a quick test first: the delivery itself when
    nothing in it needs escaping (what the memory store calls on every append)."""
    texts = "".join(
        text for name in _DELIVERY_TEXT_FIELDS if (text := getattr(delivery, name)) is not None
    )
    duration = delivery.duration_ms
    if (
        texts.isascii()
        and "\x00" not in texts
        and (duration is None or isfinite(duration))
        and all(map(_fine_handler, delivery.handlers))
    ):
        return delivery
    return escaped_delivery(delivery)


def storable(record: MessageRecord) -> MessageRecord:
    """:func:`escaped`, with a quick test first: the record itself when, as nearly
    always, nothing in it needs escaping (what the memory store calls on every
    append; the SQL stores test the rows they encode instead)."""
    # One test for the plain texts: their concatenation is ASCII without NUL.
    texts = (
        f"{record.message_type}{record.correlation_id}{record.causation_id}"
        f"{record.requested_by}{record.error_type}{record.error_message}{record.service}"
    )
    duration = record.duration_ms
    if (
        texts.isascii()
        and "\x00" not in texts
        and (duration is None or isfinite(duration))
        and _fine_json(record.payload)
        and (not record.headers or _fine_json(record.headers))
        and all(map(_fine_handler, record.handlers))
        and (not record.pii_fields or all(map(_fine_text, record.pii_fields)))
    ):
        return record
    return escaped(record)


# -- records built fast -----------------------------------------------------------------


def _fast_init(cls: type) -> None:
    """Give a frozen slots dataclass an ``__init__`` that fills its slots through
    their descriptors, instead of the one :mod:`dataclasses` writes, which goes
    through ``object.__setattr__`` for every field (it must get past the frozen
    ``__setattr__``): about half the cost, on the path of every recorded message.
    Same parameters and defaults, written out as :mod:`dataclasses` writes its own."""
    namespace: dict[str, Any] = {}
    parameters: list[str] = []
    body: list[str] = []
    for number, item in enumerate(dataclasses.fields(cls)):
        if item.default is dataclasses.MISSING:
            parameters.append(item.name)
        else:
            namespace[f"default_{number}"] = item.default
            parameters.append(f"{item.name}=default_{number}")
        namespace[f"set_{number}"] = cls.__dict__[item.name].__set__
        body.append(f"    set_{number}(self, {item.name})")
    source = f"def __init__(self, {', '.join(parameters)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # noqa: S102 - built from the class's own fields, no input
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = vars(cls)["__init__"].__doc__
    setattr(cls, "__init__", init)  # noqa: B010 - mypy keeps the dataclass signature


_fast_init(HandlerOutcome)
_fast_init(MessageRecord)
