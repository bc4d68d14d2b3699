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
    "exception_message",
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


def exception_message(error: BaseException) -> str:
    """``str(error)``, or a placeholder when the exception cannot be turned into text.

    A handler's exception is recorded, logged and put on spans; an exception whose
    ``__str__`` raises (or returns something that is not a string) must not replace
    itself with another exception there, nor lose the record.  Every place the library
    writes an exception's text uses this function.

    >>> class Broken(Exception):
    ...     def __str__(self):
    ...         raise RuntimeError("no text")
    >>> exception_message(ValueError("bad amount"))
    'bad amount'
    >>> exception_message(Broken())
    '<unprintable Broken: its __str__ raised RuntimeError>'
    """
    try:
        text = str(error)
    except Exception as exc:  # noqa: BLE001 - any failure of user code becomes a placeholder
        return f"<unprintable {type(error).__name__}: its __str__ raised {type(exc).__name__}>"
    if type(text) is not str:  # a str subclass whose methods may misbehave too
        try:
            return str.__str__(text)
        except Exception:  # noqa: BLE001
            return f"<unprintable {type(error).__name__}>"
    return text
