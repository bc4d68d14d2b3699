"""The one rule that decides a message's correlation id, causation id and requested_by.

Every place that decides ids calls this module: building a message
(:class:`~python_cqrs_core.BaseMessage`), dispatching it
(:class:`~python_cqrs_core.Mediator`), :meth:`Mediator.process(...,
correlation_id=...) <python_cqrs_core.Mediator.process>`, opening a
:class:`~python_cqrs_core.correlation_scope`, and a consumer that dispatches a message
received from a broker.  The rule, for each field the caller did not set:

1. an **explicit argument** wins: a value passed when the message was built (``None``
   included), or ``process(..., correlation_id=...)``;
2. else the **parent**: the message whose handler is running (a message consumed from
   a broker is the parent of everything its handlers dispatch);
3. else the **ambient scope**: a :class:`~python_cqrs_core.correlation_scope`, as the
   HTTP middleware opens one from ``X-Correlation-ID``;
4. else, for ``correlation_id`` only, the **root's own** ``request_id``.

So a parent gives ``correlation_id`` (its own), ``causation_id`` (its ``request_id``)
and ``requested_by`` (its own); a scope gives ``correlation_id`` and
``requested_by``, and no cause.  ``correlation_id`` is the one field that is never
left ``None`` once dispatched (a dispatched chain always has one): an explicit
``None`` there holds until the dispatch, which then applies rules 2 to 4.

**Write once.**  A field is *decided* once it is in the model's ``fields_set``: given
by the caller, inherited when the message was built, or settled by a dispatch.  A
decided field is never changed again.  A dispatch settles all three fields, so a
message dispatched a second time (on purpose, by a retry, or refused by the
recorder) keeps exactly the ids of its first dispatch: a root stays a root.

Frames are duck-typed: anything with ``correlation_id``, ``request_id`` and
``requested_by`` attributes.  A message is a parent frame; :class:`Ambient` is the
frame of a scope (its ``request_id`` is ``None``: it causes nothing).

>>> from python_cqrs_core import BaseCommand
>>> class Ping(BaseCommand):
...     pass
>>> root = Ping()
>>> stamp(root, None)                      # dispatched with no parent and no scope
>>> root.correlation_id == root.request_id, root.causation_id
(True, None)
>>> child = Ping()
>>> stamp(child, root)                     # dispatched while root's handler runs
>>> child.correlation_id == root.request_id, child.causation_id == root.request_id
(True, True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol, TypeVar
from uuid import UUID

if TYPE_CHECKING:
    from .messages import BaseMessage

__all__ = [
    "SETTLED",
    "Ambient",
    "RemoteParent",
    "Frame",
    "inherit",
    "is_settled",
    "parent_of_scope",
    "stamp",
    "with_correlation",
]


class Frame(Protocol):
    """What a message inherits from: the message being handled, or a scope."""

    @property
    def correlation_id(self) -> UUID | str | None: ...

    @property
    def request_id(self) -> UUID | None: ...

    @property
    def requested_by(self) -> str | None: ...


_F = TypeVar("_F", bound=Frame)

SETTLED: Final = "__cqrs_settled__"
"""The mark, in a message's ``fields_set``, that all three fields are decided.

Checking one mark is what keeps a dispatch as cheap as it was before write-once
held on every path (an attribute of a pydantic model costs tens of nanoseconds to
read).  ``BaseMessage.model_fields_set`` leaves it out, so users never see it.
"""


class Ambient:
    """The frame of a :class:`~python_cqrs_core.correlation_scope`: a correlation id
    and an optional ``requested_by``, and no message (``request_id`` is ``None``).

    ``used`` is the correlation id of the first root message dispatched under it
    (``None`` until one is): the scope's own id, unless that message carried another
    one explicitly (rule 1).  The HTTP middleware reports it, "the id that was
    actually used".
    """

    __slots__ = ("correlation_id", "requested_by", "used")

    request_id = None

    def __init__(self, correlation_id: UUID | str, requested_by: str | None) -> None:
        self.correlation_id = correlation_id
        self.requested_by = requested_by
        self.used: UUID | str | None = None


class RemoteParent:
    """The frame of a message received from another process that this process does not
    dispatch itself (it has no class for it, or hands its payload to plain code): the
    parent of what is dispatched while it is being handled, like a local message.

    It gives its correlation id, its id as causation id, and its ``requested_by``
    (rule 2).  :func:`~python_cqrs_core.current_message` is ``None`` under it: there
    is no local message object.
    """

    __slots__ = ("correlation_id", "request_id", "requested_by")

    def __init__(
        self, correlation_id: UUID | str, request_id: UUID, requested_by: str | None
    ) -> None:
        self.correlation_id = correlation_id
        self.request_id = request_id
        self.requested_by = requested_by


def inherit(message: BaseMessage, frame: Frame) -> None:
    """Apply the rule to a message just built inside a handler or a scope.

    Only rules 2 and 3 apply.  A parent decides all three fields the caller did not
    give, ``None`` included (a parent without ``requested_by`` gives none, and a scope
    can no longer supply one), so a message built in a handler is settled at once.  A
    scope gives its correlation id, and its ``requested_by`` when it has one; a root's
    cause and fallback correlation are left to its dispatch (a message built in a scope
    may still be dispatched inside a handler).  Values come from a frame that validated
    them when they entered, so they are written without running the validators again.
    """
    fields = message.__dict__
    decided = message.__pydantic_fields_set__
    kind = frame.__class__
    if kind is not Ambient and _DECIDED_BY_A_PARENT.isdisjoint(decided):
        # The usual case, a message built in a handler with none of the three given:
        # the parent decides all three (the parent's own fields read once, not
        # through three attribute lookups of a pydantic model).
        parent = _frame_fields(frame) if kind is RemoteParent else frame.__dict__
        fields["correlation_id"] = parent["correlation_id"]
        fields["causation_id"] = parent["request_id"]
        requested_by = parent["requested_by"]
        if requested_by is not None:
            fields["requested_by"] = requested_by
        decided |= _SETTLED_BY_A_PARENT
        return
    if "correlation_id" not in decided and frame.correlation_id is not None:
        fields["correlation_id"] = frame.correlation_id
        decided.add("correlation_id")
    cause = frame.request_id
    if cause is not None:  # a parent: it decides the cause and requested_by
        if "causation_id" not in decided:
            fields["causation_id"] = cause
            decided.add("causation_id")
        if "requested_by" not in decided:
            fields["requested_by"] = frame.requested_by
            decided.add("requested_by")
        if fields["correlation_id"] is not None:
            decided.add(SETTLED)
    elif frame.requested_by is not None and "requested_by" not in decided:
        fields["requested_by"] = frame.requested_by
        decided.add("requested_by")


_DECIDED_BY_A_PARENT: Final = frozenset(("correlation_id", "causation_id", "requested_by"))
_SETTLED_BY_A_PARENT: Final = _DECIDED_BY_A_PARENT | {SETTLED}


def _frame_fields(frame: Frame) -> dict[str, object]:
    return {
        "correlation_id": frame.correlation_id,
        "request_id": frame.request_id,
        "requested_by": frame.requested_by,
    }


def stamp(message: BaseMessage, frame: Frame | None) -> None:
    """Apply the whole rule to a message about to be dispatched, and settle it.

    ``frame`` is the dispatch context: the message being handled, a scope, or
    ``None``.  Afterwards all three fields are decided (``correlation_id`` is never
    ``None``), so a later dispatch of the same message changes nothing.
    """
    fields = message.__dict__
    decided = message.__pydantic_fields_set__
    if fields["correlation_id"] is None:
        inherited = None if frame is None else frame.correlation_id
        fields["correlation_id"] = message.request_id if inherited is None else inherited
        decided.add("correlation_id")
    if "causation_id" not in decided:
        cause = None if frame is None else frame.request_id
        if cause is not None:
            fields["causation_id"] = cause
        decided.add("causation_id")  # a root has no cause, for good
    if "requested_by" not in decided:
        requested_by = None if frame is None else frame.requested_by
        if requested_by is not None:
            fields["requested_by"] = requested_by
        decided.add("requested_by")
    decided.add(SETTLED)
    if isinstance(frame, Ambient) and frame.used is None:
        frame.used = fields["correlation_id"]


def is_settled(message: BaseMessage) -> bool:
    """Whether all three fields of ``message`` are decided, so that :func:`stamp`
    would change nothing.

    The dispatcher's fast path checks only the :data:`SETTLED` mark that :func:`stamp`
    and :func:`inherit` leave; a message decided some other way (all three fields
    given, a message decoded from the wire) goes through :func:`stamp` once, which
    changes none of its fields and marks it.
    """
    decided = message.__pydantic_fields_set__
    return SETTLED in decided or (
        message.correlation_id is not None
        and "causation_id" in decided
        and "requested_by" in decided
    )


def with_correlation(message: BaseMessage, correlation_id: UUID | str) -> BaseMessage:
    """Rule 1 for ``process(message, correlation_id=...)``: the explicit id wins.

    A message without a correlation id takes it (decided from then on).  A message that
    already carries a *different* one is not changed: the returned copy (same
    ``request_id``) carries the explicit id, and the caller's object is left as it was.
    ``correlation_id`` must already be validated.
    """
    current = message.correlation_id
    if current is None:
        message.__dict__["correlation_id"] = correlation_id
        message.__pydantic_fields_set__.add("correlation_id")
        return message
    if current == correlation_id:
        return message
    return message.model_copy(update={"correlation_id": correlation_id})


def parent_of_scope(outer: _F | None, scope: Ambient) -> _F | Ambient:
    """The frame a :class:`~python_cqrs_core.correlation_scope` puts in effect.

    Rule 2 beats rule 3: inside a handler the message being handled stays the frame,
    so a scope opened there never splits a chain into two correlation ids.
    """
    if outer is not None and outer.request_id is not None:
        return outer
    return scope
