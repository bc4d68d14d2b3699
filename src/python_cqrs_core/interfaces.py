"""The CQRS vocabulary: message markers and handler interfaces.

These are the smallest pieces of the library and carry no behaviour of their own:

- :class:`ICommand`, :class:`IQuery` and :class:`IEvent` mark what a message *is*:
  an intention to change state, a request to read it, or a fact that happened;
- :class:`ICommandHandler`, :class:`IQueryHandler` and :class:`IEventHandler` are
  the generic abstract bases a handler implements with ``async def handle(...)``.

Most code uses the pydantic bases in :mod:`python_cqrs_core.messages`
(:class:`~python_cqrs_core.BaseCommand` and friends), which subclass these markers;
the markers exist on their own so that any class can take part in type checks::

    class MyCommand(ICommand):
        pass

    class MyHandler(ICommandHandler[MyCommand, int]):
        async def handle(self, command: MyCommand) -> int:
            return 42

A handler class that does not implement ``handle`` cannot be instantiated
(``TypeError``), so a forgotten method fails at start-up, not on the first request.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

__all__ = [
    "ICommand",
    "ICommandHandler",
    "IEvent",
    "IEventHandler",
    "IQuery",
    "IQueryHandler",
    "TCommand",
    "TEvent",
    "TQuery",
    "TResult",
]


class ICommand:
    """Marker for commands: requests to change state (create, update, delete)."""

    __slots__ = ()


class IQuery:
    """Marker for queries: requests to read state, with no side effects."""

    __slots__ = ()


class IEvent:
    """Marker for events: facts that already happened, published to any number of
    subscribers."""

    __slots__ = ()


TCommand = TypeVar("TCommand", bound=ICommand)
TQuery = TypeVar("TQuery", bound=IQuery)
TEvent = TypeVar("TEvent", bound=IEvent)
TResult = TypeVar("TResult")


class ICommandHandler(ABC, Generic[TCommand, TResult]):
    """Handles one command type and returns a result of type ``TResult``."""

    @abstractmethod
    async def handle(self, command: TCommand) -> TResult:
        """Process ``command`` and return the result of the operation."""


class IQueryHandler(ABC, Generic[TQuery, TResult]):
    """Handles one query type and returns what it read, of type ``TResult``."""

    @abstractmethod
    async def handle(self, query: TQuery) -> TResult:
        """Answer ``query``."""


class IEventHandler(ABC, Generic[TEvent]):
    """Reacts to one event type; an event may have any number of handlers."""

    @abstractmethod
    async def handle(self, event: TEvent) -> None:
        """React to ``event``."""
