"""Which messages leave the process, and for which destination.

Most messages stay in the process that dispatches them.  The ones other services
consume (usually events) are *routed*: a :class:`Routes` table maps a message class to
a destination (a stream, a queue, a subject).  The outbox writer and the direct
publisher both read it, so a message is routed in one place::

    routes = Routes({OrderPlaced: "orders.events"})
    routes.route(OrderCancelled, "orders.events")
    routes.destination_of(OrderPlaced(order_id=7))    # "orders.events"

A class inherits the route of its nearest routed base class (method resolution order),
so routing a base event routes its subclasses; a class routed itself wins.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from ..messages import BaseMessage
from ..validation import validate_type_name

__all__ = ["Routes"]


class Routes:
    """Message classes -> destination names.

    >>> from python_cqrs_core import BaseEvent
    >>> class OrderPlaced(BaseEvent):
    ...     order_id: int
    >>> routes = Routes({OrderPlaced: "orders.events"})
    >>> routes.destination_of(OrderPlaced(order_id=7))
    'orders.events'
    """

    __slots__ = ("_cache", "_routes")

    def __init__(self, routes: Mapping[type[BaseMessage], str] | None = None) -> None:
        self._routes: dict[type[BaseMessage], str] = {}
        self._cache: dict[type, str | None] = {}
        for message_type, destination in (routes or {}).items():
            self.route(message_type, destination)

    def route(self, message_type: type[BaseMessage], destination: str) -> None:
        """Send messages of ``message_type`` (and of its subclasses) to ``destination``.

        A destination is 1-256 printable ASCII characters without whitespace (it becomes
        a stream key, a queue or a subject name).
        """
        if not (isinstance(message_type, type) and issubclass(message_type, BaseMessage)):
            raise TypeError(f"expected a message class, got {message_type!r}")
        try:
            self._routes[message_type] = validate_type_name(destination)
        except ValueError as exc:
            raise ValueError(f"destination: {exc}") from None
        self._cache.clear()

    def destination_of(self, message: BaseMessage | type[BaseMessage]) -> str | None:
        """The destination of a message (or class), or ``None`` if it is not routed."""
        message_type = message if isinstance(message, type) else type(message)
        try:
            return self._cache[message_type]
        except KeyError:
            found = next(
                (self._routes[cls] for cls in message_type.__mro__ if cls in self._routes), None
            )
            self._cache[message_type] = found
            return found

    def destinations(self) -> list[str]:
        """Every destination some message is routed to, sorted."""
        return sorted(set(self._routes.values()))

    def __iter__(self) -> Iterator[tuple[type[BaseMessage], str]]:
        return iter(self._routes.items())

    def __len__(self) -> int:
        return len(self._routes)

    def __repr__(self) -> str:
        return f"<Routes of {len(self)} message types to {self.destinations()}>"
