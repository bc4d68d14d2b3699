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

import copy
import functools
import inspect
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, NamedTuple, Self
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
from typing_extensions import TypeVar

from ._ids import uuid4, uuid7
from .context import _trace
from .errors import FrozenInstanceError
from .interfaces import ICommand, IEvent, IQuery
from .names import TRACING_FIELDS
from .propagation import SETTLED, inherit
from .validation import (
    MAX_REQUESTED_BY_LENGTH,
    validate_correlation_id,
    validate_request_id,
    validate_requested_by,
    validate_type_name,
)

__all__ = [
    "BaseCommand",
    "BaseEvent",
    "BaseMessage",
    "BaseQuery",
    "CorrelationId",
    "MessageKind",
    "PaginatedQuery",
    "RequestedBy",
    "TimeOrderedIds",
    "TracingFields",
    "message_kind",
    "message_type_name",
    "tracing_fields",
]

MessageKind = Literal["command", "query", "event"]

CorrelationId = Annotated[
    UUID | str,
    PlainValidator(validate_correlation_id, json_schema_input_type=UUID | str),
    PlainSerializer(str, return_type=str, when_used="json"),
]
"""A correlation or causation id: a ``UUID`` or an opaque string (see module docs)."""

RequestId = Annotated[
    UUID,
    PlainValidator(validate_request_id, json_schema_input_type=UUID),
    PlainSerializer(str, return_type=str, when_used="json"),
]
"""A message id: a ``UUID``, or a UUID string (never raw bytes or an opaque string)."""

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

    request_id: RequestId = Field(default_factory=uuid4)
    correlation_id: CorrelationId | None = None
    causation_id: CorrelationId | None = None
    requested_by: RequestedBy | None = None
    requested_at: AwareDatetime = Field(default_factory=_utcnow)

    message_kind: ClassVar[MessageKind]
    __message_type__: ClassVar[str] = "python_cqrs_core.messages.BaseMessage"
    """The stable type name: ``"<module>.<qualname>"`` unless the class sets its own."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        own = cls.__dict__.get("__message_type__")
        if own is None:  # not set on this class: derived, never inherited
            cls.__message_type__ = f"{cls.__module__}.{cls.__qualname__}"
        else:
            try:
                cls.__message_type__ = validate_type_name(own)
            except ValueError as exc:
                raise TypeError(f"{cls.__qualname__}.__message_type__ {exc}") from None

    def __init__(self, /, **data: Any) -> None:
        self.__pydantic_validator__.validate_python(data, self_instance=self)
        frame = _trace_get()
        if frame is not None:
            inherit(self, frame)

    @property
    def model_fields_set(self) -> set[str]:
        """The fields given, inherited or decided by a dispatch (pydantic's
        ``model_fields_set``; the library's internal settled mark left out)."""
        return self.__pydantic_fields_set__ - _INTERNAL_MARKS

    def derive(self, **changes: Any) -> Self:
        """A new message of the same type, with the same business fields except
        ``changes``: the way to "change" an immutable message.

        It is a new message in every respect: a fresh ``request_id`` and
        ``requested_at``, every field validated again, and its correlation id,
        causation id and ``requested_by`` decided like those of any message built
        here (inherited inside a handler or a scope), unless given in ``changes``::

            retry = failed_command.derive()                   # same fields, new identity
            bigger = order.derive(quantity=order.quantity + 1)
            same_op = order.derive(correlation_id=order.correlation_id)

        Unlike ``model_copy(update=...)``, which keeps the ``request_id`` (so the copy
        collides with the original in a store), ``derive`` never reuses an id.
        """
        data = {k: v for k, v in self.__dict__.items() if k not in _TRACING_FIELD_SET}
        data.update(changes)
        return type(self)(**data)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy of the message, the *same* message: same ``request_id`` and
        ``requested_at``.  Values in ``update`` are validated (pydantic's own
        ``model_copy`` would not): an unknown field or an invalid id is an error.

        To make a *new* message from this one, use :meth:`derive`.
        """
        if not update:
            return super().model_copy(deep=deep)
        data = {**self.__dict__, **update}
        if deep:
            data = copy.deepcopy(data)
        copied = type(self).model_validate(data)
        object.__setattr__(
            copied, "__pydantic_fields_set__", self.__pydantic_fields_set__ | set(update)
        )
        return copied

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(
            f"cannot assign to field {name!r}: {type(self).__name__} is immutable; derive "
            f"a new message with message.derive({name}=...) (fresh request_id, fields "
            "validated)"
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
_TRACING_FIELD_SET = frozenset(TRACING_FIELDS)
_INTERNAL_MARKS = frozenset((SETTLED,))


def message_type_name(message: BaseMessage | type[BaseMessage]) -> str:
    """The stable type name of a message or message class.

    By default ``"<module>.<qualname>"``; a class sets its own with
    ``__message_type__``, so that two services agree on a name while their classes
    live in different modules.  Stores record it, and the codec puts it on the wire.

    >>> class OrderPlaced(BaseEvent):
    ...     __message_type__ = "orders.OrderPlaced"
    >>> message_type_name(OrderPlaced)
    'orders.OrderPlaced'
    """
    return message.__message_type__


class TracingFields(NamedTuple):
    """A message's tracing fields as text: what every integration writes.

    ``correlation_id`` is the effective one (the message's own ``request_id`` when it
    has none, i.e. before its first dispatch).  ``causation_id`` and ``requested_by``
    stay ``None`` when unset; each sink says what ``None`` becomes there (left out of
    span attributes, tags and wire headers, ``null`` in JSON, ``""`` in log records).
    """

    request_id: str
    correlation_id: str
    causation_id: str | None
    requested_by: str | None
    requested_at: str
    message_type: str
    kind: MessageKind


def tracing_fields(message: BaseMessage) -> TracingFields:
    """The one conversion of a message to its tracing fields as text.

    >>> class Ping(BaseCommand):
    ...     pass
    >>> fields = tracing_fields(Ping(correlation_id="req-1", requested_by="ada"))
    >>> fields.correlation_id, fields.causation_id, fields.requested_by, fields.kind
    ('req-1', None, 'ada', 'command')
    """
    values = message.__dict__
    correlation = values["correlation_id"]
    causation = values["causation_id"]
    return TracingFields(
        str(values["request_id"]),
        str(values["request_id"] if correlation is None else correlation),
        None if causation is None else str(causation),
        values["requested_by"],
        values["requested_at"].isoformat(),
        message.__message_type__,
        message.message_kind,
    )


TResult = TypeVar("TResult", default=Any)
"""What the handler of a command or query returns; ``Any`` unless the class says."""


class TimeOrderedIds(BaseMessage):
    """Mix in to give a message class time-ordered ids (UUIDv7) instead of random ones.

    ::

        class OrderPlaced(TimeOrderedIds, BaseEvent):
            order_id: int

    ``request_id`` is then a :func:`~python_cqrs_core.uuid7`: ids made later compare
    greater, so the message store's unique index on them grows at its end, and
    recording into a store of millions of records costs what it costs into an empty one
    (random ids scatter their index entries over the whole index).  The trade-off: an
    id reveals when it was made (to the millisecond) and in which order; 74 of its bits
    are random instead of 122 (still unguessable, not a secret); and making one costs
    about a microsecond more.  Random version-4 ids stay the default, as the API guide
    documents.  An id given explicitly is used as it is, whatever its version.
    """

    request_id: RequestId = Field(default_factory=uuid7)


class BaseCommand(BaseMessage, ICommand, Generic[TResult]):
    """A command: an intention to change state, handled by exactly one handler.

    >>> class CreateUserCommand(BaseCommand):
    ...     name: str
    ...     email: str
    >>> cmd = CreateUserCommand(name="Jane", email="jane@example.com", requested_by="admin")
    >>> cmd.correlation_id is None and cmd.requested_by == "admin"
    True

    A command may name the type its handler returns, so that ``await bus.send(cmd)``
    is typed: ``class CreateUser(BaseCommand[int])`` makes ``send`` return ``int`` for
    a type checker.  Without it (the guide's ``class X(BaseCommand)``) it is ``Any``.
    """

    message_kind: ClassVar[MessageKind] = "command"


class BaseQuery(BaseMessage, IQuery, Generic[TResult]):
    """A query: a request to read state, handled by exactly one handler.

    ``class GetUser(BaseQuery[User])`` makes ``await bus.query(GetUser(...))`` typed
    as ``User`` (``Any`` without the parameter), like :class:`BaseCommand`.
    """

    message_kind: ClassVar[MessageKind] = "query"


class BaseEvent(BaseMessage, IEvent):
    """An event: a fact that happened, delivered to every subscribed handler."""

    message_kind: ClassVar[MessageKind] = "event"


class PaginatedQuery(BaseQuery[TResult], Generic[TResult]):
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
