"""The dispatch context: which message is being handled, and the ambient correlation.

Everything the library knows about "where am I in a causation tree" lives in one
:class:`contextvars.ContextVar`, never in globals or thread-locals, so it follows
``await``, ``asyncio.gather``, ``asyncio.create_task`` and ``asyncio.to_thread``
exactly the way Python's own context does.  It holds one *trace frame*:

- the **message being handled**: set by the :class:`~python_cqrs_core.Mediator` for
  the duration of a handler.  Messages built or dispatched while it is set inherit
  its correlation id, take its ``request_id`` as their ``causation_id`` and default
  their ``requested_by`` to its ``requested_by``;
- or an **ambient correlation**: set by :class:`correlation_scope` (for example by
  the HTTP middleware from an ``X-Correlation-ID`` header).  Root messages, those
  built or dispatched while no message is being handled, take their correlation id
  (and ``requested_by``, if the scope has one) from it.

Reading the context is always safe: outside any dispatch or scope,
:func:`current_message` and :func:`current_correlation_id` return ``None``.

>>> with correlation_scope("req-abc-123"):
...     current_correlation_id()
'req-abc-123'
>>> current_correlation_id() is None
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Union, cast
from uuid import UUID

from ._ids import uuid4
from .propagation import Ambient, RemoteParent, parent_of_scope
from .validation import validate_correlation_id, validate_requested_by

if TYPE_CHECKING:
    from .messages import BaseMessage

__all__ = [
    "Consumption",
    "consuming",
    "correlation_scope",
    "current_consumption",
    "current_causation_id",
    "current_correlation_id",
    "current_message",
    "current_requested_by",
]


_Frame = Union["BaseMessage", Ambient, RemoteParent]

# The trace frame of this context: the message being handled, an ambient scope, or None.
_trace: ContextVar[_Frame | None] = ContextVar("cqrs_trace", default=None)


def current_message() -> BaseMessage | None:
    """Return the message whose handler is running in this context, or ``None``."""
    frame = _trace.get()
    if frame is None or frame.__class__ is Ambient or frame.__class__ is RemoteParent:
        return None
    return frame  # type: ignore[return-value]


def current_correlation_id() -> UUID | str | None:
    """Return the correlation id that a message built here would inherit, or ``None``.

    That is the correlation id of the message being handled, else the one of the
    enclosing :class:`correlation_scope`.
    """
    frame = _trace.get()
    return None if frame is None else frame.correlation_id


def current_causation_id() -> UUID | None:
    """Return the ``request_id`` of the message being handled (what a message built
    here is caused by), or ``None`` outside a handler."""
    frame = _trace.get()
    return None if frame is None else frame.request_id


def current_requested_by() -> str | None:
    """Return the ``requested_by`` a message built here would default to, or ``None``."""
    frame = _trace.get()
    return None if frame is None else frame.requested_by


class correlation_scope:  # noqa: N801 - used like a function: ``with correlation_scope(...)``
    """Set the ambient correlation id (and optionally ``requested_by``) for a block.

    Root messages built or dispatched inside the block get this correlation id unless
    they carry one already.  Inside a handler the scope changes nothing: messages
    there keep inheriting from the message being handled (a parent message beats the
    ambient correlation, as in Protean), so one chain never splits into two
    correlations.  Works with ``with`` and ``async with``, nests, and restores the
    outer value on exit, also when the block raises.

    ``correlation_id`` follows the rules of the message field: a UUID, a UUID string
    (parsed to :class:`uuid.UUID`), or an opaque id of at most 128 printable ASCII
    characters without spaces (anything else raises :class:`ValueError`).  When it is
    omitted a fresh UUID is generated, so a scope always has an id::

        async with correlation_scope(header_value, requested_by=user.email) as scope:
            await bus.send(PlaceOrder(...))
        response.headers["X-Correlation-ID"] = str(scope.correlation_id)

    A scope object can be active once at a time; build a new one for each block.
    """

    __slots__ = ("_frame", "_token", "correlation_id", "requested_by")

    def __init__(
        self, correlation_id: UUID | str | None = None, *, requested_by: str | None = None
    ) -> None:
        try:
            self.correlation_id: UUID | str = (
                uuid4() if correlation_id is None else validate_correlation_id(correlation_id)
            )
        except ValueError as exc:
            raise ValueError(f"correlation_id: {exc}") from None
        try:
            self.requested_by = (
                None if requested_by is None else validate_requested_by(requested_by)
            )
        except ValueError as exc:
            raise ValueError(f"requested_by: {exc}") from None
        self._token: Token[_Frame | None] | None = None
        self._frame: _Frame | None = None

    def __enter__(self) -> correlation_scope:
        if self._token is not None:
            raise RuntimeError("this correlation_scope is already active; create a new one")
        frame = parent_of_scope(_trace.get(), Ambient(self.correlation_id, self.requested_by))
        if frame.correlation_id is not None:  # inside a handler: report the id in effect
            self.correlation_id = frame.correlation_id
        self._frame = cast(_Frame, frame)
        self._token = _trace.set(self._frame)
        return self

    @property
    def used_correlation_id(self) -> UUID | str:
        """The correlation id actually used in this scope: that of the first root message
        dispatched in it, which is the scope's own id unless that message carried
        another one explicitly (``process(msg, correlation_id=...)``); before any
        dispatch, the scope's id.  The HTTP middleware answers with it.
        """
        frame = self._frame
        if isinstance(frame, Ambient) and frame.used is not None:
            return frame.used
        return self.correlation_id

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is None:
            raise RuntimeError("correlation_scope exited without being entered")
        _trace.reset(self._token)
        self._token = None

    async def __aenter__(self) -> correlation_scope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


@dataclass(frozen=True, slots=True)
class Consumption:
    """A message received from a broker, while a consumer handles it.

    Consumers (the library's :class:`~python_cqrs_core.transports.consumer.Consumer`,
    the FastStream middleware) describe each delivery with one, through
    :func:`consuming`; the message recorder reads it to record the *delivery* of a
    message another service may have recorded already, instead of recording the
    message twice.  ``service`` is the producer's, from the wire's ``cqrs-service``
    header when it carried one (the consuming service is the recorder's own); ``attempt``
    is 1 on the first delivery to the group.
    """

    message_id: UUID
    message_type: str
    correlation_id: UUID | str
    causation_id: UUID | str | None
    requested_by: str | None
    transport: str
    destination: str
    group: str
    attempt: int = 1
    delivery_id: str | None = None
    service: str | None = None


_consumption: ContextVar[Consumption | None] = ContextVar("cqrs_consumption", default=None)


def current_consumption() -> Consumption | None:
    """The delivery being handled in this context (see :func:`consuming`), or ``None``."""
    return _consumption.get()


@contextmanager
def consuming(consumption: Consumption, *, as_parent: bool = False) -> Iterator[Consumption]:
    """Handle one delivery from a broker inside this block.

    The delivery is :func:`current_consumption` for the block (and for the tasks it
    starts).  A consumer that dispatches the decoded message through a mediator needs
    nothing more: that message is the parent of what its handlers dispatch.  A consumer
    that runs plain code on the payload instead (no local message object) passes
    ``as_parent=True``: the received message is then the parent of what the block
    dispatches, through a :class:`~python_cqrs_core.propagation.RemoteParent` frame
    (its correlation id, its id as causation id, its ``requested_by``)::

        with consuming(consumption, as_parent=True):
            await bus.send(ReserveInventory(order_id=payload["order_id"]))
    """
    token = _consumption.set(consumption)
    frame_token = (
        _trace.set(
            RemoteParent(
                consumption.correlation_id, consumption.message_id, consumption.requested_by
            )
        )
        if as_parent
        else None
    )
    try:
        yield consumption
    finally:
        if frame_token is not None:
            _trace.reset(frame_token)
        _consumption.reset(token)
