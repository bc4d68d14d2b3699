"""Pydantic message bases with built-in tracing fields.

Every message, command, query or event, is a frozen pydantic model that carries five
tracing fields besides its own:

===============  =========================  ===============================================
field            type                       meaning
===============  =========================  ===============================================
request_id       ``UUID``                   this message's unique id (fresh uuid4); it is
                                            the ``causation_id`` of everything it causes
correlation_id   ``UUID | str | None``      the business operation the message belongs to
causation_id     ``UUID | str | None``      the ``request_id`` of the message that caused
                                            it (``None`` for a root message)
requested_by     ``str | None``             who asked for it (user, service)
requested_at     aware ``datetime``         when it was created (UTC by default)
===============  =========================  ===============================================

One name for the unique id everywhere: commands, queries and events all call it
``request_id`` (the guide's name), and stores and logs call the same value the
*message id*.

Built outside any handler, a message's ``correlation_id`` and ``causation_id`` default
to ``None`` (the guide's behaviour), or to the ambient id inside a
:class:`~python_cqrs_core.correlation_scope`.  Built while a handler runs, they default
to the handled message's correlation id and ``request_id``, and ``requested_by`` to its
``requested_by``.  The :class:`~python_cqrs_core.Mediator` fills in whatever is still
unset when the message is dispatched, so a dispatched chain never lacks ids.  Values
set explicitly always win.

Field rules:

- ``correlation_id`` / ``causation_id``: a UUID, a UUID string (parsed to ``UUID``),
  or an opaque string of 1-128 printable ASCII characters without whitespace;
- ``requested_by``: at most 256 characters, no control characters;
- ``requested_at``: must be timezone-aware when given (a naive datetime is an error);
- unknown fields are rejected (``extra="forbid"``): a misspelt field is an error
  naming it, not a silently dropped value.

Messages are immutable: assigning a field raises
:class:`~python_cqrs_core.FrozenInstanceError`.  They round-trip through JSON
(``model_dump_json`` / ``model_validate_json``) with every field preserved.
"""

from __future__ import annotations

import functools
import inspect
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
)

from ._ids import uuid4
from .context import _Frame, _trace
from .errors import FrozenInstanceError
from .interfaces import ICommand, IEvent, IQuery
from .validation import MAX_REQUESTED_BY_LENGTH, validate_correlation_id, validate_requested_by

__all__ = [
    "BaseCommand",
    "BaseEvent",
    "BaseMessage",
    "BaseQuery",
    "CorrelationId",
    "MessageKind",
    "PaginatedQuery",
    "RequestedBy",
    "message_kind",
]

MessageKind = Literal["command", "query", "event"]

CorrelationId = Annotated[
    UUID | str,
    PlainValidator(validate_correlation_id, json_schema_input_type=UUID | str),
    PlainSerializer(str, return_type=str, when_used="json"),
]
"""A correlation or causation id: a ``UUID`` or an opaque string (see module docs)."""

RequestedBy = Annotated[
    str,
    StringConstraints(max_length=MAX_REQUESTED_BY_LENGTH),
    AfterValidator(validate_requested_by),
]
"""Who asked: at most 256 characters, no control characters."""

# C-level callables: pydantic calls default factories without a Python frame.
_utcnow = functools.partial(datetime.now, UTC)
_utcnow.__signature__ = inspect.Signature()  # type: ignore[attr-defined]  # see _ids.uuid4


class BaseMessage(BaseModel):
    """Common base of :class:`BaseCommand`, :class:`BaseQuery` and :class:`BaseEvent`.

    Use it in type hints for "any message"; subclass one of the three kinds instead.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: UUID = Field(default_factory=uuid4)
    correlation_id: CorrelationId | None = None
    causation_id: CorrelationId | None = None
    requested_by: RequestedBy | None = None
    requested_at: AwareDatetime = Field(default_factory=_utcnow)

    message_kind: ClassVar[MessageKind]

    def __init__(self, /, **data: Any) -> None:
        self.__pydantic_validator__.validate_python(data, self_instance=self)
        frame = _trace_get()
        if frame is not None:
            _inherit(self, frame, data)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(
            f"cannot assign to field {name!r}: {type(self).__name__} is immutable; "
            "build a new message or use model_copy(update=...)"
        )

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(
            f"cannot delete field {name!r}: {type(self).__name__} is immutable"
        )

    def __hash__(self) -> int:
        # The unique id identifies the message; it never changes, while the mediator
        # may fill in unset correlation fields at dispatch (see Mediator docs).
        return hash((type(self), self.request_id))

    @property
    def effective_correlation_id(self) -> UUID | str:
        """The correlation id, or the message's own ``request_id`` when it has none.

        This is the guide's ``command.correlation_id or command.request_id``: the id
        that names the business operation even for a message never dispatched.
        """
        return self.correlation_id if self.correlation_id is not None else self.request_id


_trace_get = _trace.get


def _inherit(message: BaseMessage, frame: _Frame, given: dict[str, Any]) -> None:
    """Give a message built inside a handler or scope the ids of that context.

    Only fields the caller did not pass (even as ``None``) are filled.  The values
    come from a message or scope that validated them when they entered, so they are
    written as they are instead of running the field validators again; they count as
    set, like a value passed by the caller.
    """
    fields = message.__dict__
    fields_set = message.__pydantic_fields_set__
    if "correlation_id" not in given:
        fields["correlation_id"] = frame.correlation_id
        fields_set.add("correlation_id")
    if frame.request_id is not None and "causation_id" not in given:
        fields["causation_id"] = frame.request_id  # a handler is running: it is the cause
        fields_set.add("causation_id")
    if frame.requested_by is not None and "requested_by" not in given:
        fields["requested_by"] = frame.requested_by
        fields_set.add("requested_by")


class BaseCommand(BaseMessage, ICommand):
    """A command: an intention to change state, handled by exactly one handler.

    >>> class CreateUserCommand(BaseCommand):
    ...     name: str
    ...     email: str
    >>> cmd = CreateUserCommand(name="Jane", email="jane@example.com", requested_by="admin")
    >>> cmd.correlation_id is None and cmd.requested_by == "admin"
    True
    """

    message_kind: ClassVar[MessageKind] = "command"


class BaseQuery(BaseMessage, IQuery):
    """A query: a request to read state, handled by exactly one handler."""

    message_kind: ClassVar[MessageKind] = "query"


class BaseEvent(BaseMessage, IEvent):
    """An event: a fact that happened, delivered to every subscribed handler."""

    message_kind: ClassVar[MessageKind] = "event"


class PaginatedQuery(BaseQuery):
    """A query over a list, with 1-indexed ``page`` and ``page_size`` (1 to 100).

    >>> class ListUsersQuery(PaginatedQuery):
    ...     status: str = "active"
    >>> ListUsersQuery(page=3, page_size=20).offset
    40
    """

    page: int = Field(default=1, ge=1, description="1-indexed page number")
    page_size: int = Field(default=10, ge=1, le=100, description="items per page (max 100)")

    @property
    def offset(self) -> int:
        """Rows to skip: ``(page - 1) * page_size``, for ``OFFSET`` clauses."""
        return (self.page - 1) * self.page_size


_KINDS: dict[type, MessageKind | None] = {}


def message_kind(message_type: type) -> MessageKind | None:
    """Return ``"command"``, ``"query"`` or ``"event"`` for a message class, from the
    marker it implements (``None`` if it implements none).

    >>> message_kind(BaseEvent)
    'event'
    """
    try:
        return _KINDS[message_type]
    except KeyError:
        kind: MessageKind | None
        if issubclass(message_type, ICommand):
            kind = "command"
        elif issubclass(message_type, IQuery):
            kind = "query"
        elif issubclass(message_type, IEvent):
            kind = "event"
        else:
            kind = None
        _KINDS[message_type] = kind
        return kind
