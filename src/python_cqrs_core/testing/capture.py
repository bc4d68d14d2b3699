"""Capture what a mediator dispatched, to assert on it in a test.

:func:`capture` installs a middleware and a lifecycle listener on a
:class:`~python_cqrs_core.Mediator` and records every message dispatched through it
(commands, queries and events, nested ones included) as a :class:`Dispatch`: the
message, how its dispatch ended, the exception if it failed, the handlers that ran,
and the dispatch of the message that caused it::

    with capture(bus) as dispatched:
        await bus.send(PlaceOrder(order_id="o-1"))

    placed = dispatched.one(OrderPlaced)             # exactly one, or AssertionError
    assert placed.order_id == "o-1"
    assert dispatched.dispatch_of(placed).handlers == ["ReserveInventory"]
    assert not dispatched.failed

Leaving the ``with`` block (or calling :meth:`Capture.stop`) removes the middleware
and the listener; what was captured stays readable.  Without ``with``,
``dispatched = capture(bus)`` starts capturing at once and ``dispatched.stop()``
ends it.  The ``cqrs_dispatched`` fixture of
:mod:`python_cqrs_core.testing.pytest_plugin` is a capture on a fresh mediator.

**What "parent" means.**  A dispatch's :attr:`Dispatch.parent` is the captured
dispatch of the message its ``causation_id`` names: the causation link, exactly as
the message store records it.  A message built inside a handler and dispatched later
by the caller is therefore still the child of the message whose handler built it.

The capture is middleware like any other: installed after a middleware that refuses
a message, it never sees that message.  Capture first to see everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar, overload
from uuid import UUID

from ..lifecycle import HandlerEvent
from ..mediator import CallNext, Mediator
from ..messages import (
    BaseCommand,
    BaseEvent,
    BaseMessage,
    BaseQuery,
    MessageKind,
    message_type_name,
)

__all__ = ["Capture", "Dispatch", "DispatchOutcome", "capture"]

DispatchOutcome = Literal["running", "succeeded", "failed"]
"""How a captured dispatch ended; ``"running"`` until it has."""

_M = TypeVar("_M", bound=BaseMessage)


@dataclass(eq=False, slots=True)
class Dispatch:
    """One message dispatched through a captured mediator.

    ``outcome`` is ``"succeeded"`` or ``"failed"`` once the dispatch has returned
    (``"running"`` before); ``error`` is the exception the dispatch raised, the very
    object the caller received.  ``handlers`` names the handlers that ran, in the
    order they started (every subscriber of an event).  ``parent`` is the captured
    dispatch of the message that caused this one (``None`` for a root, or when the
    cause was not captured) and ``children`` the dispatches it caused, in dispatch
    order.
    """

    message: BaseMessage
    parent: Dispatch | None = None
    outcome: DispatchOutcome = "running"
    error: BaseException | None = None
    handlers: list[str] = field(default_factory=list)
    children: list[Dispatch] = field(default_factory=list)

    @property
    def kind(self) -> MessageKind:
        """``"command"``, ``"query"`` or ``"event"``."""
        return self.message.message_kind

    @property
    def type_name(self) -> str:
        """The message's stable type name (:func:`~python_cqrs_core.message_type_name`)."""
        return message_type_name(self.message)

    @property
    def request_id(self) -> UUID:
        """The message's own id."""
        return self.message.request_id

    @property
    def correlation_id(self) -> UUID | str | None:
        """The message's correlation id (always set once it was dispatched)."""
        return self.message.correlation_id

    @property
    def causation_id(self) -> UUID | str | None:
        """The id of the message that caused this one; ``None`` for a root."""
        return self.message.causation_id

    @property
    def succeeded(self) -> bool:
        """The dispatch returned without raising."""
        return self.outcome == "succeeded"

    @property
    def failed(self) -> bool:
        """The dispatch raised (:attr:`error` is what it raised)."""
        return self.outcome == "failed"

    def __repr__(self) -> str:
        error = "" if self.error is None else f" {type(self.error).__name__}"
        return (
            f"<Dispatch {self.kind} {type(self.message).__name__} {self.outcome}{error} "
            f"request_id={self.request_id}>"
        )


class Capture:
    """The dispatches captured on one mediator, in dispatch order.

    Build it with :func:`capture`.  It is a sequence of :class:`Dispatch`
    (``len(dispatched)``, ``dispatched[0]``, ``for d in dispatched``) with accessors
    for the common questions of a test; the lists they return are fresh copies.
    """

    def __init__(self, bus: Mediator) -> None:
        self.bus = bus
        self._dispatches: list[Dispatch] = []
        # The latest dispatch of each message id: where a child finds its parent.
        self._by_request_id: dict[UUID | str, Dispatch] = {}
        # The dispatch whose pipeline runs in this context: where a handler's name goes.
        self._current: ContextVar[Dispatch | None] = ContextVar(
            f"cqrs_capture_{id(self):x}", default=None
        )
        self._capturing = True
        # Bound once: the mediator removes middleware by identity, and every
        # ``self._capture`` expression would be a new bound-method object.
        self._middleware = self._capture
        self._listener = self._on_handler_event
        bus.add_middleware(self._middleware)
        bus.add_listener(self._listener)

    # -- starting and stopping ----------------------------------------------------------

    @property
    def capturing(self) -> bool:
        """Whether the capture is still installed on its mediator."""
        return self._capturing

    def stop(self) -> None:
        """Remove the middleware and the listener from the mediator; the captured
        dispatches stay readable.  Stopping twice is harmless."""
        if not self._capturing:
            return
        self._capturing = False
        self.bus.remove_middleware(self._middleware)
        self.bus.remove_listener(self._listener)

    def clear(self) -> None:
        """Forget what was captured so far (e.g. the set-up of a test) and go on."""
        self._dispatches.clear()
        self._by_request_id.clear()

    def __enter__(self) -> Capture:
        if not self._capturing:
            raise RuntimeError("this capture was stopped; start a new one with capture(bus)")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the sequence of dispatches -----------------------------------------------------

    @property
    def dispatches(self) -> list[Dispatch]:
        """Every captured dispatch, in the order the dispatches started."""
        return list(self._dispatches)

    def __iter__(self) -> Iterator[Dispatch]:
        return iter(list(self._dispatches))

    def __len__(self) -> int:
        return len(self._dispatches)

    @overload
    def __getitem__(self, index: int) -> Dispatch: ...
    @overload
    def __getitem__(self, index: slice) -> list[Dispatch]: ...
    def __getitem__(self, index: int | slice) -> Dispatch | list[Dispatch]:
        return self._dispatches[index]

    def __repr__(self) -> str:
        state = "capturing" if self._capturing else "stopped"
        return f"<Capture {state}, {len(self._dispatches)} dispatch(es)>"

    # -- accessors --------------------------------------------------------------------------

    @property
    def messages(self) -> list[BaseMessage]:
        """The dispatched messages, in dispatch order."""
        return [d.message for d in self._dispatches]

    @property
    def commands(self) -> list[BaseCommand]:
        """The dispatched commands, in dispatch order."""
        return [d.message for d in self._dispatches if isinstance(d.message, BaseCommand)]

    @property
    def queries(self) -> list[BaseQuery]:
        """The dispatched queries, in dispatch order."""
        return [d.message for d in self._dispatches if isinstance(d.message, BaseQuery)]

    @property
    def events(self) -> list[BaseEvent]:
        """The published events, in dispatch order."""
        return [d.message for d in self._dispatches if isinstance(d.message, BaseEvent)]

    @property
    def failed(self) -> list[Dispatch]:
        """The dispatches that raised, in dispatch order (``[]`` when none did)."""
        return [d for d in self._dispatches if d.outcome == "failed"]

    @property
    def roots(self) -> list[Dispatch]:
        """The dispatches with no captured parent: where each causation tree starts."""
        return [d for d in self._dispatches if d.parent is None]

    def of_type(self, message_type: type[_M]) -> list[_M]:
        """The dispatched messages of ``message_type`` (subclasses included), in order."""
        return [d.message for d in self._dispatches if isinstance(d.message, message_type)]

    def one(self, message_type: type[_M]) -> _M:
        """The one dispatched message of ``message_type``.

        Raises :class:`AssertionError` when there is none or more than one, showing
        what was dispatched.
        """
        __tracebackhide__ = True
        found = self.of_type(message_type)
        if len(found) == 1:
            return found[0]
        count = "none" if not found else f"{len(found)}"
        raise AssertionError(
            f"expected exactly one {message_type.__name__} to be dispatched, found {count}; "
            f"dispatched:\n{self._rendered()}"
        )

    def dispatch_of(self, message: BaseMessage) -> Dispatch:
        """The (latest) dispatch of ``message``: its outcome, error and handlers.

        A message is known by its ``request_id``, so this also finds the dispatch of
        the copy that ``bus.process(message, correlation_id=...)`` hands the handler.
        Raises :class:`AssertionError` when that message was not dispatched.
        """
        __tracebackhide__ = True
        for dispatch in reversed(self._dispatches):
            if dispatch.message.request_id == message.request_id:
                return dispatch
        raise AssertionError(
            f"{type(message).__name__} {message.request_id} was not dispatched; "
            f"dispatched:\n{self._rendered()}"
        )

    def _rendered(self) -> str:
        from .chains import render_chain  # chains imports this module

        text = render_chain(self)
        return "\n".join(f"    {line}" for line in text.splitlines()) or "    (nothing)"

    # -- the middleware and the listener ---------------------------------------------------

    async def _capture(self, message: BaseMessage, call_next: CallNext) -> Any:
        cause = message.causation_id
        parent = None if cause is None else self._by_request_id.get(cause)
        dispatch = Dispatch(message, parent)
        if parent is not None:
            parent.children.append(dispatch)
        self._dispatches.append(dispatch)
        self._by_request_id[message.request_id] = dispatch
        token = self._current.set(dispatch)
        try:
            result = await call_next(message)
        except BaseException as exc:
            dispatch.outcome = "failed"
            dispatch.error = exc
            raise
        finally:
            self._current.reset(token)
        dispatch.outcome = "succeeded"
        return result

    def _on_handler_event(self, event: HandlerEvent) -> None:
        if event.phase != "started":
            return
        dispatch = self._current.get()
        if dispatch is not None and dispatch.message is event.message:
            dispatch.handlers.append(event.handler)


def capture(bus: Mediator) -> Capture:
    """Start capturing every dispatch of ``bus``; use it as a context manager
    (``with capture(bus) as dispatched:``) or call :meth:`Capture.stop` when done.

    >>> import asyncio
    >>> from python_cqrs_core import BaseCommand, Mediator
    >>> class Ping(BaseCommand):
    ...     pass
    >>> bus = Mediator()
    >>> async def pong(command: Ping) -> str:
    ...     return "pong"
    >>> bus.register(Ping, pong)
    >>> with capture(bus) as dispatched:
    ...     asyncio.run(bus.send(Ping()))
    'pong'
    >>> [(d.kind, d.outcome, d.handlers) for d in dispatched]
    [('command', 'succeeded', ['pong'])]
    """
    return Capture(bus)
