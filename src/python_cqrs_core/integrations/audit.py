"""Audit events (who did what to which resource, and how it ended) in one schema.

The guide's ``AUDIT_EVENT_SCHEMA``, filled from the message being handled::

    from python_cqrs_core.integrations.audit import audit

    class CreateInviteHandler:
        async def handle(self, command: CreateInviteCommand) -> InviteResult:
            result = await self.repository.create(command)
            audit("CREATE_INVITE", resource_type="invite", resource_id=result.id)
            return result

gives, from ``command`` (the message being handled)::

    {"audit.action": "CREATE_INVITE",
     "audit.actor": "admin@example.com",          # requested_by, else "system"
     "audit.resource_type": "invite",
     "audit.resource_id": "42",
     "audit.timestamp": "2026-02-26T10:30:45+00:00",   # requested_at, ISO 8601
     "audit.business_request_id": "550e8400-...",      # request_id
     "audit.correlation_id": "req-abc-123",
     "audit.result": "success"}                        # success, denied or error

Each event is emitted twice, wherever it can be found later:

- as a **span event** on the current OpenTelemetry span, when ``opentelemetry-api`` is
  installed and a span is recording (the guide's "2026 best practice");
- as a **log record** on the ``python_cqrs_core.integrations.audit`` logger: the JSON of the event
  as the message and the dict as ``record.audit``, so an audit log can be routed to
  its own handler and retention.

:class:`AuditMiddleware` emits one event per audited message, success, denied or
error, with no code in the handlers.  Payloads are never emitted unless asked
(``include_payload=True``), and then with the fields declared
:data:`~python_cqrs_core.PII` replaced by ``"***"``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

from .._optional_otel import recording_span
from ..context import current_correlation_id, current_message, current_requested_by
from ..mediator import CallNext
from ..messages import BaseMessage, tracing_fields
from ..names import (
    AUDIT_ACTION,
    AUDIT_ACTOR,
    AUDIT_BUSINESS_REQUEST_ID,
    AUDIT_CORRELATION_ID,
    AUDIT_ERROR_TYPE,
    AUDIT_PAYLOAD,
    AUDIT_RESOURCE_ID,
    AUDIT_RESOURCE_TYPE,
    AUDIT_RESULT,
    AUDIT_TIMESTAMP,
)
from ..names import AUDIT_LOGGER as _AUDIT_LOGGER
from ..pii import redacted_payload

__all__ = [
    "AUDIT_EVENT_SCHEMA",
    "AUDIT_LOGGER",
    "AuditMiddleware",
    "AuditResult",
    "audit",
]

AuditResult = Literal["success", "denied", "error"]

AUDIT_EVENT_SCHEMA: Final[Mapping[str, str]] = {
    AUDIT_ACTION: "string",  # CREATE_USER, DELETE_ORDER, ...
    AUDIT_ACTOR: "string",  # who: requested_by, else "system"
    AUDIT_RESOURCE_TYPE: "string",  # user, order, invite
    AUDIT_RESOURCE_ID: "string",  # which one
    AUDIT_TIMESTAMP: "ISO8601",  # when: requested_at
    AUDIT_BUSINESS_REQUEST_ID: "UUID",  # the message's request_id
    AUDIT_CORRELATION_ID: "string",  # the business operation
    AUDIT_RESULT: "string",  # success, denied, error
}
"""The keys of every audit event and their types (the guide's schema, plus the
correlation id its span-event example records)."""

AUDIT_LOGGER: Final = _AUDIT_LOGGER

logger = logging.getLogger(AUDIT_LOGGER)

_RESULTS: Final = frozenset(("success", "denied", "error"))
_LEVELS: Final = {"success": logging.INFO, "denied": logging.WARNING, "error": logging.WARNING}


def _attribute_value(value: object) -> str | bool | int | float:
    """OpenTelemetry attribute values are str, bool, int or float: others become str."""
    if isinstance(value, str | bool | int | float):
        return value
    return str(value)


def audit(
    action: str,
    *,
    resource_type: str,
    resource_id: object,
    result: AuditResult = "success",
    message: BaseMessage | None = None,
    event_name: str = "audit",
    include_payload: bool = False,
    **attributes: object,
) -> dict[str, str | bool | int | float]:
    """Emit one audit event as a span event and a log record, and return it.

    ``message`` defaults to the message being handled
    (:func:`~python_cqrs_core.current_message`); outside any handler the actor and
    correlation id come from the enclosing
    :class:`~python_cqrs_core.correlation_scope` and the timestamp is now.
    ``attributes`` are added as they are, e.g.
    ``**{"compliance.data_classification": "PII"}``; ``None`` values are left out.
    ``event_name`` names the span event (the guide uses ``"invite.created"``).  A
    ``resource_id`` of ``None`` (not known, e.g. the creation failed) is ``"unknown"``.

    >>> from python_cqrs_core import BaseCommand
    >>> class DeleteUser(BaseCommand):
    ...     user_id: int
    >>> cmd = DeleteUser(user_id=7, requested_by="admin@example.com")
    >>> event = audit("DELETE_USER", resource_type="user", resource_id=7, message=cmd)
    >>> event["audit.actor"], event["audit.resource_id"], event["audit.result"]
    ('admin@example.com', '7', 'success')
    """
    if result not in _RESULTS:
        raise ValueError(f"result must be one of {sorted(_RESULTS)}, got {result!r}")
    if message is None:
        message = current_message()
    event: dict[str, str | bool | int | float] = {
        AUDIT_ACTION: action,
        AUDIT_RESOURCE_TYPE: resource_type,
        AUDIT_RESOURCE_ID: "unknown" if resource_id is None else str(resource_id),
        AUDIT_RESULT: result,
    }
    if message is not None:
        fields = tracing_fields(message)
        event[AUDIT_ACTOR] = fields.requested_by or "system"
        event[AUDIT_TIMESTAMP] = fields.requested_at
        event[AUDIT_BUSINESS_REQUEST_ID] = fields.request_id
        event[AUDIT_CORRELATION_ID] = fields.correlation_id
        if include_payload:
            event[AUDIT_PAYLOAD] = json.dumps(redacted_payload(message), sort_keys=True)
    else:
        event[AUDIT_ACTOR] = current_requested_by() or "system"
        event[AUDIT_TIMESTAMP] = datetime.now(UTC).isoformat()
        correlation_id = current_correlation_id()
        if correlation_id is not None:  # an attribute is left out, never "None"
            event[AUDIT_CORRELATION_ID] = str(correlation_id)
    for key, value in attributes.items():
        if value is not None:
            event[key] = _attribute_value(value)
    _emit(event_name, event, result)
    return event


def _emit(event_name: str, event: dict[str, str | bool | int | float], result: str) -> None:
    span = recording_span()
    if span is not None:
        span.add_event(event_name, attributes=event)
    if logger.isEnabledFor(_LEVELS[result]):
        logger.log(_LEVELS[result], json.dumps(event, sort_keys=True), extra={"audit": dict(event)})


ActionOf = Callable[[BaseMessage], "str | None"]
"""Returns the audit action of a message, or ``None`` for a message not audited."""


class AuditMiddleware:
    """Emit an audit event for every audited message: success, denied or error.

    ``actions`` says which messages are audited and under which action: a mapping
    from message class to action (subclasses included), or a callable returning the
    action or ``None``::

        bus.add_middleware(
            AuditMiddleware(
                {CreateInvite: "CREATE_INVITE", RevokeInvite: "REVOKE_INVITE"},
                resource_type="invite",
                resource_id=lambda message, result: result.id if result else message.invite_id,
            )
        )

    - ``resource_type``: a string, or a callable of the message; by default the
      message class name;
    - ``resource_id``: ``callable(message, result)``, where ``result`` is what the
      handler returned (``None`` when it raised); by default the result itself when
      the handler returned one, else ``"unknown"``;
    - ``denied``: the exception types that mean "not allowed" (result ``denied``);
      any other exception gives ``error``.  Exceptions are re-raised unchanged.

    Add it *after* the tracing middleware (``add_middleware`` order is outermost
    first), so the event lands on the span of the message.
    """

    __slots__ = ("_actions", "denied", "include_payload", "resource_id", "resource_type")

    def __init__(
        self,
        actions: Mapping[type[BaseMessage], str] | ActionOf,
        *,
        resource_type: str | Callable[[BaseMessage], str] | None = None,
        resource_id: Callable[[BaseMessage, Any], object] | None = None,
        denied: type[BaseException] | tuple[type[BaseException], ...] = PermissionError,
        include_payload: bool = False,
    ) -> None:
        if callable(actions):
            self._actions: ActionOf = actions
        else:
            self._actions = _ActionTable(actions)
        self.resource_type = resource_type
        self.resource_id = resource_id
        self.denied = denied
        self.include_payload = include_payload

    async def __call__(self, message: BaseMessage, call_next: CallNext) -> Any:
        action = self._actions(message)
        if action is None:
            return await call_next(message)
        try:
            result = await call_next(message)
        except Exception as exc:
            outcome: AuditResult = "denied" if isinstance(exc, self.denied) else "error"
            self._emit(action, message, None, outcome, **{AUDIT_ERROR_TYPE: type(exc).__name__})
            raise
        self._emit(action, message, result, "success")
        return result

    def _emit(
        self,
        action: str,
        message: BaseMessage,
        result: Any,
        outcome: AuditResult,
        **attributes: Any,
    ) -> None:
        resource_type = self.resource_type
        if resource_type is None:
            resource_type = type(message).__name__
        elif not isinstance(resource_type, str):
            resource_type = resource_type(message)
        resource_id = result if self.resource_id is None else self.resource_id(message, result)
        audit(
            action,
            resource_type=resource_type,
            resource_id=resource_id,
            result=outcome,
            message=message,
            include_payload=self.include_payload,
            **attributes,
        )


class _ActionTable:
    """``actions`` given as a mapping: looked up by class, then by base classes."""

    __slots__ = ("_cache", "_table")

    def __init__(self, table: Mapping[type[BaseMessage], str]) -> None:
        self._table = dict(table)
        self._cache: dict[type, str | None] = {}

    def __call__(self, message: BaseMessage) -> str | None:
        message_type = type(message)
        try:
            return self._cache[message_type]
        except KeyError:
            action = next(
                (self._table[cls] for cls in message_type.__mro__ if cls in self._table), None
            )
            self._cache[message_type] = action
            return action
