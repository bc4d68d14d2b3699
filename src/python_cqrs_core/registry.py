"""Which class a stable type name stands for: the :class:`MessageRegistry`.

A message leaves the process as text: a store record, a broker message, a CloudEvent.
Each carries its type as the stable name of
:func:`~python_cqrs_core.message_type_name` (``"orders.OrderPlaced"``, or
``"<module>.<qualname>"`` by default), and the registry turns that name back into the
class that validates the payload::

    registry = MessageRegistry()
    registry.register(PlaceOrder, OrderPlaced)        # explicitly
    registry.discover(BaseEvent)                      # or every subclass defined so far
    registry.resolve("orders.OrderPlaced")            # -> OrderPlaced

A name belongs to one class: registering a second class under a name already taken is
an error at that moment (:class:`MessageTypeCollisionError`), never a silent
replacement that would decode one service's events as another's.  Registering the
same class again is harmless.  An unknown name raises
:class:`UnknownMessageTypeError`, which says what the registry knows.

There is no global registry: each codec, consumer or store reader is given the one
that lists the messages it accepts, so a process never decodes a type it did not
choose to accept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar, overload

from .errors import CQRSError
from .messages import BaseMessage, message_kind, message_type_name

__all__ = ["MessageRegistry", "MessageTypeCollisionError", "UnknownMessageTypeError"]

_M = TypeVar("_M", bound=BaseMessage)
_LIBRARY_BASES = BaseMessage.__module__


class UnknownMessageTypeError(CQRSError, LookupError):
    """A type name that the registry has no class for."""

    def __init__(self, type_name: str, known: Iterable[str]) -> None:
        names = sorted(known)
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        super().__init__(
            f"unknown message type {type_name!r}: no class is registered under that name "
            f"({shown or 'the registry is empty'}); register the class, or give it "
            "__message_type__ = ... to match the sender's name"
        )
        self.type_name = type_name


class MessageTypeCollisionError(CQRSError, ValueError):
    """Two different classes claim one type name."""


class MessageRegistry:
    """Maps stable type names to message classes.

    >>> from python_cqrs_core import BaseEvent
    >>> class OrderPlaced(BaseEvent):
    ...     __message_type__ = "orders.OrderPlaced"
    ...     order_id: str
    >>> registry = MessageRegistry([OrderPlaced])
    >>> registry.resolve("orders.OrderPlaced") is OrderPlaced
    True
    >>> "orders.OrderPlaced" in registry, len(registry)
    (True, 1)
    """

    __slots__ = ("_classes",)

    def __init__(self, classes: Iterable[type[BaseMessage]] = ()) -> None:
        self._classes: dict[str, type[BaseMessage]] = {}
        self.register(*classes)

    @overload
    def register(self, cls: type[_M], /) -> type[_M]: ...

    @overload
    def register(self, *classes: type[BaseMessage]) -> None: ...

    def register(self, *classes: type[BaseMessage]) -> Any:
        """Register message classes under their stable names.

        Usable as a class decorator (``@registry.register``), which returns the class.
        Raises :class:`MessageTypeCollisionError` when a name is already taken by
        another class, and :class:`TypeError` for a class that is not a command, query
        or event; nothing of the call is registered then.
        """
        pending: dict[str, type[BaseMessage]] = {}
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, BaseMessage)):
                raise TypeError(f"expected a BaseMessage subclass, got {cls!r}")
            if message_kind(cls) is None:
                raise TypeError(f"{cls.__qualname__} is not a command, query or event")
            name = message_type_name(cls)
            owner = pending.get(name) or self._classes.get(name)
            if owner is not None and owner is not cls:
                raise MessageTypeCollisionError(
                    f"message type name {name!r} is taken by {_where(owner)}; "
                    f"{_where(cls)} cannot have it too (set __message_type__ on one of them)"
                )
            pending[name] = cls
        self._classes.update(pending)
        return classes[0] if len(classes) == 1 else None

    def discover(self, base: type[BaseMessage] = BaseMessage) -> list[type[BaseMessage]]:
        """Register every command, query and event class that subclasses ``base``
        (``base`` included, if it is one) and is defined at this moment.

        Returns the classes registered.  Classes defined later are not seen: call it
        after importing the modules that define them.  The library's own bases
        (``BaseCommand``, ``PaginatedQuery``...) and generic parametrisations are
        skipped.
        """
        found = [
            cls
            for cls in [base, *_subclasses(base)]
            if message_kind(cls) is not None
            and cls.__module__ != _LIBRARY_BASES
            and "[" not in cls.__qualname__
        ]
        self.register(*found)
        return found

    def resolve(self, type_name: str) -> type[BaseMessage]:
        """The class registered under ``type_name``; :class:`UnknownMessageTypeError`
        if there is none."""
        try:
            return self._classes[type_name]
        except KeyError:
            raise UnknownMessageTypeError(type_name, self._classes) from None

    def get(self, type_name: str) -> type[BaseMessage] | None:
        """The class registered under ``type_name``, or ``None``."""
        return self._classes.get(type_name)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._classes

    def __iter__(self) -> Iterator[type[BaseMessage]]:
        return iter(self._classes.values())

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"<MessageRegistry of {len(self)} message types>"


def _subclasses(base: type) -> list[type[BaseMessage]]:
    found: list[type[BaseMessage]] = []
    seen: set[type] = set()
    stack: list[type] = [base]
    while stack:
        subclasses: list[type] = stack.pop().__subclasses__()
        for sub in reversed(subclasses):
            if sub not in seen:
                seen.add(sub)
                found.append(sub)
                stack.append(sub)
    return found


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
