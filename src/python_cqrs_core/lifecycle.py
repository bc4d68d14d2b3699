"""Lifecycle notifications: one :class:`HandlerEvent` per handler start, completion
and failure.

These are the hooks that the message store, the metrics and the live Observatory
consume.  A listener is a plain synchronous callable::

    def print_failures(event: HandlerEvent) -> None:
        if event.phase == "failed":
            print(event.handler, event.error_type, event.correlation_id)

    bus.add_listener(print_failures)

Listeners run inline, in the dispatching task, so they must be quick; to stream
events elsewhere (a web page, a queue), hand them off without blocking, for example
with ``queue.put_nowait(event)`` or ``loop.call_soon_threadsafe(...)``.  A listener
that raises is logged on the ``python_cqrs_core`` logger and does not affect the
dispatch.  With no listeners registered, the mediator emits nothing and pays nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from .errors import exception_message
from .messages import BaseMessage, MessageKind, message_type_name, tracing_fields
from .names import EVENT_HANDLER_COMPLETED, EVENT_HANDLER_FAILED, EVENT_HANDLER_STARTED

__all__ = ["HandlerEvent", "HandlerPhase", "Listener"]

HandlerPhase = Literal["started", "completed", "failed"]

_EVENT_NAMES: dict[str, str] = {
    "started": EVENT_HANDLER_STARTED,
    "completed": EVENT_HANDLER_COMPLETED,
    "failed": EVENT_HANDLER_FAILED,
}


@dataclass(frozen=True, slots=True)
class HandlerEvent:
    """What happened to one handler of one message.

    ``duration_ns`` is ``None`` for ``started``; ``error`` is set for ``failed`` only.
    """

    phase: HandlerPhase
    message: BaseMessage
    kind: MessageKind
    handler: str
    duration_ns: int | None = None
    error: BaseException | None = None
    timestamp: float = field(default_factory=time.time)

    @property
    def message_id(self) -> UUID:
        """The message's unique id (its ``request_id``)."""
        return self.message.request_id

    @property
    def message_type(self) -> str:
        """The message's stable type name (:func:`~python_cqrs_core.message_type_name`),
        e.g. ``"shop.orders.PlaceOrder"``: what the store records."""
        return message_type_name(self.message)

    @property
    def correlation_id(self) -> UUID | str | None:
        return self.message.correlation_id

    @property
    def causation_id(self) -> UUID | str | None:
        return self.message.causation_id

    @property
    def error_type(self) -> str | None:
        return None if self.error is None else type(self.error).__name__

    @property
    def error_message(self) -> str | None:
        """The error's text; a placeholder if its ``__str__`` itself fails."""
        return None if self.error is None else exception_message(self.error)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (ids as strings, ``None`` as ``null``), e.g. for a
        server-sent event."""
        fields = tracing_fields(self.message)
        return {
            "event": _EVENT_NAMES[self.phase],
            "message_id": fields.request_id,
            "message_type": fields.message_type,
            "kind": self.kind,
            "handler": self.handler,
            "correlation_id": fields.correlation_id,
            "causation_id": fields.causation_id,
            "requested_by": fields.requested_by,
            "duration_ms": None if self.duration_ns is None else self.duration_ns / 1e6,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "timestamp": self.timestamp,
        }


Listener = Callable[[HandlerEvent], None]
