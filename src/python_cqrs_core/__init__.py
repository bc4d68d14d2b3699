"""python-cqrs-core: CQRS messages, handlers and a mediator in which every command,
query and event can be traced from the request that caused it to the last event it
caused.

The whole public API is importable from this package::

    from python_cqrs_core import BaseCommand, ICommandHandler, Mediator
"""

from ._ids import uuid4, uuid7
from ._version import __version__
from .context import (
    correlation_scope,
    current_causation_id,
    current_correlation_id,
    current_message,
    current_requested_by,
)
from .errors import (
    CQRSError,
    DuplicateHandlerError,
    EventHandlersFailed,
    FrozenInstanceError,
    HandlerNotFoundError,
)
from .interfaces import (
    ICommand,
    ICommandHandler,
    IEvent,
    IEventHandler,
    IQuery,
    IQueryHandler,
)
from .lifecycle import HandlerEvent, HandlerPhase, Listener
from .mediator import CallNext, HandlerMiddleware, Mediator, Middleware
from .messages import (
    BaseCommand,
    BaseEvent,
    BaseMessage,
    BaseQuery,
    CorrelationId,
    MessageKind,
    PaginatedQuery,
    RequestedBy,
    TimeOrderedIds,
    TracingFields,
    message_kind,
    message_type_name,
    tracing_fields,
)
from .pii import PII, REDACTED, pii_fields, redacted_payload
from .registry import MessageRegistry, MessageTypeCollisionError, UnknownMessageTypeError

__all__ = [
    "BaseCommand",
    "BaseEvent",
    "BaseMessage",
    "BaseQuery",
    "CQRSError",
    "CorrelationId",
    "DuplicateHandlerError",
    "EventHandlersFailed",
    "FrozenInstanceError",
    "HandlerEvent",
    "HandlerMiddleware",
    "HandlerNotFoundError",
    "HandlerPhase",
    "ICommand",
    "ICommandHandler",
    "IEvent",
    "IEventHandler",
    "IQuery",
    "IQueryHandler",
    "CallNext",
    "Listener",
    "Mediator",
    "MessageKind",
    "MessageRegistry",
    "MessageTypeCollisionError",
    "Middleware",
    "PII",
    "PaginatedQuery",
    "REDACTED",
    "RequestedBy",
    "TimeOrderedIds",
    "TracingFields",
    "UnknownMessageTypeError",
    "__version__",
    "correlation_scope",
    "current_causation_id",
    "current_correlation_id",
    "current_message",
    "current_requested_by",
    "message_kind",
    "message_type_name",
    "pii_fields",
    "redacted_payload",
    "tracing_fields",
    "uuid4",
    "uuid7",
]
