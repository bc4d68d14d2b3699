"""Exceptions raised by the library itself.

Exceptions raised by *handlers* are never wrapped: they reach the caller with their
own type and traceback (see :class:`~python_cqrs_core.Mediator`).  The only
exception to that rule is :class:`EventHandlersFailed`, raised when more than one
subscriber of one event fails, since one exception cannot carry two.
"""

from __future__ import annotations

import dataclasses

__all__ = [
    "CQRSError",
    "DuplicateHandlerError",
    "EventHandlersFailed",
    "FrozenInstanceError",
    "HandlerNotFoundError",
]


class CQRSError(Exception):
    """Base class of the library's own errors (configuration and routing)."""


class HandlerNotFoundError(CQRSError, LookupError):
    """A command or query was sent but no handler is registered for its type."""


class DuplicateHandlerError(CQRSError, ValueError):
    """A second handler was registered for a command or query type."""


class FrozenInstanceError(dataclasses.FrozenInstanceError):
    """Raised on assignment to (or deletion of) a field of a message.

    Messages are immutable once built.  This is a subclass of
    :class:`dataclasses.FrozenInstanceError` (and so of :class:`AttributeError`), the
    error the guide names; build a new message, or use ``message.model_copy(update=...)``
    to derive one.
    """


class EventHandlersFailed(ExceptionGroup):
    """More than one subscriber of one event raised.

    Every subscriber still ran; the group holds each failure unchanged, in the order
    the subscribers ran.  A single failing subscriber raises its own exception instead.
    """
