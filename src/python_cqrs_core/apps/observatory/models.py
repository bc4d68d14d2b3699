"""The JSON the Observatory's ``/api/...`` endpoints answer, as pydantic models.

They are the OpenAPI document's schemas (``/openapi.json``), and FastAPI checks every
answer against them, so the document cannot drift from what the endpoints send.  The
values are built by :mod:`python_cqrs_core.apps.observatory.views`; the live stream's
events carry a :class:`RecordModel` each.

Times are ISO 8601 text with their UTC offset; ids are text (message ids are UUIDs,
correlation ids a UUID or an opaque id); ``display`` holds the strings the page shows,
worded as the ``cqrs`` command line words them, made one-line and safe to look at.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "DeadLetterModel",
    "DeadLettersModel",
    "FailedOperationModel",
    "FailuresModel",
    "FeedPageModel",
    "HandlerDisplayModel",
    "HandlerEventModel",
    "HandlerModel",
    "HeaderModel",
    "MessageModel",
    "NodeModel",
    "OperationModel",
    "OperationsPageModel",
    "RecordModel",
    "RecordPageModel",
    "SearchModel",
    "StatusModel",
    "SummaryModel",
    "WaterfallModel",
    "WaterfallRowModel",
]

Kind = Literal["command", "query", "event"]
Outcome = Literal["succeeded", "failed"]


class HandlerModel(BaseModel):
    """How one handler of a message ended."""

    handler: str
    outcome: Outcome
    duration_ms: float
    error_type: str | None
    error_message: str | None


class HandlerEventModel(BaseModel):
    """A handler event, in the shape of ``HandlerEvent.to_dict()``: ``event`` is
    ``handler.completed`` or ``handler.failed``; ``timestamp`` (seconds since the
    epoch) is when the message's dispatch ended."""

    event: str
    message_id: str
    message_type: str
    kind: Kind
    handler: str
    correlation_id: str
    causation_id: str | None
    requested_by: str | None
    duration_ms: float | None
    error_type: str | None
    error_message: str | None
    timestamp: float


class HandlerDisplayModel(BaseModel):
    """A handler as a row shows it: short name and duration."""

    name: str
    duration: str
    failed: bool


class RecordDisplayModel(BaseModel):
    """The strings a row of the timeline shows for a record."""

    mark: str = Field(description="✓ or ✗")
    type: str = Field(description="the last part of the stable type name")
    id: str = Field(description="the first 8 hex digits of the message id")
    cause: str
    correlation: str
    duration: str
    time: str = Field(description="UTC time of day the message was created")
    requested_by: str
    service: str
    handlers: list[HandlerDisplayModel]
    error: str | None = Field(description="error type and the first line of its message")


class RecordLinksModel(BaseModel):
    """Where the record's views are."""

    message: str
    operation: str


class RecordModel(BaseModel):
    """One recorded message.  ``payload`` has every personal-data field redacted
    (``"***"``); ``pii_fields`` names them."""

    message_id: str
    kind: Kind
    message_type: str
    correlation_id: str
    causation_id: str | None
    requested_by: str | None
    requested_at: str
    recorded_at: str
    payload: dict[str, Any]
    outcome: Outcome
    handler: str | None
    handlers: list[HandlerModel]
    error_type: str | None
    error_message: str | None
    duration_ms: float | None
    headers: dict[str, str]
    traceparent: str | None
    position: int | None
    service: str | None
    pii_fields: list[str]
    payload_redacted: bool
    handler_events: list[HandlerEventModel]
    display: RecordDisplayModel
    links: RecordLinksModel


class RecordPageModel(BaseModel):
    """The newest records that match the filters, newest first; pass ``next_before``
    as ``before`` for the older page (``null``: there is none).  ``position`` is the
    store's last position: where a live stream of what comes next starts."""

    records: list[RecordModel]
    next_before: int | None
    position: int


class FeedPageModel(BaseModel):
    """Records after a position, oldest first (the store's feed); pass ``next_after``
    as ``after`` for the next page."""

    records: list[RecordModel]
    next_after: int


class SummaryModel(BaseModel):
    """One business operation at a glance (a ``CorrelationSummary``)."""

    correlation_id: str
    root_message_id: str
    root_message_type: str
    outcome: Outcome
    message_count: int
    failed_count: int
    first_recorded_at: str
    last_recorded_at: str
    requested_by: str | None
    service: str | None
    position: int
    display: dict[str, str]
    links: dict[str, str]


class OperationsPageModel(BaseModel):
    """Business operations, newest first; ``next_before`` pages back."""

    operations: list[SummaryModel]
    next_before: int | None


class DeliveryModel(BaseModel):
    """What became of a message in a service that consumed it: one attempt of one
    consumer group (``outcome``: succeeded, failed, dead_lettered or replayed), and
    the line the page shows for it (the CLI's, escaped)."""

    service: str | None
    transport: str
    destination: str
    group: str
    attempt: int
    outcome: str
    failed: bool
    line: str


class NodeModel(BaseModel):
    """A message in a causation tree, in drawing order: ``depth`` 0 is a root,
    ``tree`` numbers the roots, ``guide`` is the tree's drawing before the node
    (as ``cqrs trace`` draws it), ``orphan`` says its cause is not in the store,
    ``deliveries`` what became of it in the services that consumed it."""

    depth: int
    tree: int
    guide: str
    orphan: bool
    record: RecordModel
    deliveries: list[DeliveryModel]


class WaterfallRowModel(BaseModel):
    """One handler on the operation's time axis: it started ``start_ms`` after the
    operation did; ``left`` and ``width`` place its bar in percent of the span;
    ``slowest`` marks the handler with the most time of its own (``self_ms``)."""

    message_id: str
    depth: int
    type: str
    id: str
    handler: str
    service: str
    outcome: Outcome
    start_ms: float
    duration_ms: float
    self_ms: float = Field(description="its duration less the dispatches it made")
    duration: str
    left: float
    width: float
    slowest: bool


class WaterfallModel(BaseModel):
    """The handlers of an operation on one time axis."""

    span_ms: float
    span: str
    rows: list[WaterfallRowModel]


class OperationModel(BaseModel):
    """A business operation: every causation tree of the correlation id (several roots
    when requests shared it) and the waterfall of its handlers."""

    correlation_id: str
    message_count: int
    failed_count: int
    outcome: Outcome
    roots: int
    requested_by: str | None
    services: list[str]
    started_at: str
    display: dict[str, str]
    nodes: list[NodeModel]
    waterfall: WaterfallModel
    links: dict[str, str]


class HeaderModel(BaseModel):
    """A header of a record; ``link`` goes to the APM's view of the trace when an APM
    address template is configured and the header is a valid ``traceparent``."""

    name: str
    value: str
    link: str | None


class MessageModel(BaseModel):
    """One message in full, with the chain of its causes (root first) and the tree of
    its effects."""

    record: RecordModel
    error_message: str | None
    headers: list[HeaderModel]
    payload_json: str
    causes: list[RecordModel]
    effects: list[NodeModel]


class SearchModel(BaseModel):
    """What a search found: messages (by id or unique id prefix) and operations (by
    correlation id or ``requested_by``); ``problem`` says why a query found nothing
    it could look for."""

    query: str
    messages: list[RecordModel]
    operations: list[SummaryModel]
    problem: str | None


class DeadLetterModel(BaseModel):
    """A message a consumer group gave up on.  Its identity comes from its headers and
    is ``null`` where a header is missing or invalid; the body is not shown."""

    dead_letter_id: str
    destination: str
    group: str
    reason: str
    attempts: int
    dead_lettered_at: str
    original_delivery_id: str | None
    message_id: str | None
    message_type: str | None
    kind: str | None
    correlation_id: str | None
    causation_id: str | None
    display: dict[str, str]
    links: dict[str, str | None]


class DeadLettersModel(BaseModel):
    """The dead letters of the configured destinations (``transport`` is ``null``
    when none is configured); ``error`` says why the broker could not be read."""

    transport: str | None
    destinations: list[str]
    dead_letters: list[DeadLetterModel]
    error: str | None


class FailedOperationModel(BaseModel):
    """A failed operation and the errors of its failed messages."""

    operation: SummaryModel
    failures: list[RecordModel]


class FailuresModel(BaseModel):
    """Failed operations, newest first, and dead-lettered messages."""

    operations: list[FailedOperationModel]
    next_before: int | None
    dead_letters: DeadLettersModel


class StatusModel(BaseModel):
    """The Observatory's own state."""

    store: str = Field(description="the store's URL, password masked")
    position: int = Field(description="the newest position the live feed has read")
    feed_error: str | None
    stream_clients: int
    transport: str | None
    version: str
