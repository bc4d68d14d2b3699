"""Dead letters an operator can act on: find them, read them, replay them into the chain.

A consumer dead-letters what it cannot handle (see
:mod:`python_cqrs_core.transports.consumer`); the transport keeps each dead letter
with its headers, body, reason and attempts.  These functions are what ``cqrs dlq``
runs, on any :class:`~python_cqrs_core.transports.Transport`::

    letters = await all_dead_letters(transport, "orders.events")
    letter = await find_dead_letter(transport, "orders.events", "6c1f0d1e")
    replay = await replay_dead_letter(transport, letter, store=store, requested_by="ada")

**A replay is part of the chain.**  The replayed message keeps its message id and
correlation id (the transport hands it back unchanged), and, given a ``store``, the
replay itself is recorded there twice over:

- as a :class:`DeadLetterReplayed` event whose correlation id is the message's and
  whose cause is the message: ``cqrs trace`` shows who replayed it, and when, as a
  node under the message that had been dead-lettered (when that message was
  recorded);
- as a *delivery* of the message to its group with the outcome ``replayed``
  (:class:`~python_cqrs_core.store.DeliveryRecord`, ``requested_by`` the operator):
  the dead letter is then no longer the group's latest word on the message, so the
  operation's summary stops counting it as failed, until the next attempt says how
  it went.  (Only for a message whose id is valid: a delivery belongs to a message.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar
from urllib.parse import unquote
from uuid import UUID

from ...mediator import Mediator
from ...messages import BaseEvent
from ...names import (
    WIRE_CAUSATION_ID,
    WIRE_CORRELATION_ID,
    WIRE_MESSAGE_ID,
    WIRE_MESSAGE_KIND,
    WIRE_MESSAGE_TYPE,
    WIRE_REQUESTED_BY,
)
from ...store import DeliveryRecord, MessageRecorder, MessageStore
from ...transports import DeadLetter, Transport
from ...validation import (
    validate_correlation_id,
    validate_request_id,
    validate_requested_by,
    validate_type_name,
)

__all__ = [
    "REPLAY_SERVICE",
    "AmbiguousDeadLetterError",
    "DeadLetterIdentity",
    "DeadLetterReplayed",
    "Replay",
    "all_dead_letters",
    "find_dead_letter",
    "identity_of",
    "replay_dead_letter",
]

REPLAY_SERVICE: Final = "cqrs-cli"
"""The service name of the records of replays made by ``cqrs dlq replay``."""

_PAGE: Final = 500  # dead letters read per request
_MIN_PREFIX: Final = 4
_CANDIDATES: Final = 10
_T = TypeVar("_T")


class DeadLetterReplayed(BaseEvent):
    """An operator handed a dead-lettered message back to its consumer group.

    Recorded with the replayed message's correlation id, and the message's id as its
    causation id, so it sits in the message's chain; ``requested_by`` is the operator.
    ``replayed_message_id`` and ``replayed_message_type`` are the message's, as its
    headers said (``None`` when they were not valid); ``reason`` and ``attempts`` say
    why and after how many attempts it had been dead-lettered; ``replayed_as`` is
    the broker's id of the new delivery.
    """

    __message_type__ = "python_cqrs_core.DeadLetterReplayed"

    destination: str
    group: str
    dead_letter_id: str
    replayed_as: str
    replayed_message_id: str | None = None
    replayed_message_type: str | None = None
    reason: str
    attempts: int


@dataclass(frozen=True, slots=True)
class DeadLetterIdentity:
    """Who a dead letter is, read from its headers and checked: each field is
    ``None`` when its header is missing or not valid (a dead letter is often a message
    that did not decode)."""

    message_id: UUID | None
    message_type: str | None
    kind: str | None
    correlation_id: str | None
    causation_id: str | None
    requested_by: str | None


@dataclass(frozen=True, slots=True)
class Replay:
    """One dead letter replayed: the letter, the broker's id of the new delivery, and
    the :class:`DeadLetterReplayed` event recorded for it (``None`` without a store;
    the ``replayed`` delivery recorded with it is in the store's deliveries)."""

    letter: DeadLetter
    replayed_as: str
    recorded: DeadLetterReplayed | None


class AmbiguousDeadLetterError(LookupError):
    """A message id prefix that several dead letters of a destination match; the
    candidates are in :attr:`candidates`."""

    def __init__(self, message: str, candidates: list[DeadLetter]) -> None:
        super().__init__(message)
        self.candidates = candidates


def _checked(value: str | None, check: Callable[[str], _T]) -> _T | None:
    if value is None:
        return None
    with contextlib.suppress(ValueError, TypeError):
        return check(value)
    return None


def _requested_by(value: str | None) -> str | None:
    if value is None:
        return None
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        return validate_requested_by(unquote(value, errors="strict"))  # percent-encoded
    return None


def identity_of(letter: DeadLetter) -> DeadLetterIdentity:
    """The ids of a dead letter's message, each checked by the message rules.

    >>> from datetime import UTC, datetime
    >>> letter = DeadLetter("1", "orders", "billing", {
    ...     "cqrs-message-id": "7d0c1c36-5a0e-4d5e-9d8e-1b2f0f6b6a11",
    ...     "cqrs-correlation-id": "checkout 7"}, b"{}", "undecodable", 1, datetime.now(UTC))
    >>> found = identity_of(letter)
    >>> str(found.message_id), found.correlation_id
    ('7d0c1c36-5a0e-4d5e-9d8e-1b2f0f6b6a11', None)
    """
    headers = letter.headers
    correlation = _checked(headers.get(WIRE_CORRELATION_ID), validate_correlation_id)
    causation = _checked(headers.get(WIRE_CAUSATION_ID), validate_correlation_id)
    kind = headers.get(WIRE_MESSAGE_KIND)
    return DeadLetterIdentity(
        message_id=_checked(headers.get(WIRE_MESSAGE_ID), validate_request_id),
        message_type=_checked(headers.get(WIRE_MESSAGE_TYPE), validate_type_name),
        kind=kind if kind in ("command", "query", "event") else None,
        correlation_id=None if correlation is None else str(correlation),
        causation_id=None if causation is None else str(causation),
        requested_by=_requested_by(headers.get(WIRE_REQUESTED_BY)),
    )


async def all_dead_letters(
    transport: Transport,
    destination: str,
    *,
    group: str | None = None,
    limit: int | None = None,
) -> list[DeadLetter]:
    """The dead letters of ``destination``, oldest first: all of them, or the first
    ``limit``; only ``group``'s when given."""
    found: list[DeadLetter] = []
    after: str | None = None
    while limit is None or len(found) < limit:
        page = await transport.dead_letters(destination, limit=_PAGE, after=after)
        found += [letter for letter in page if group is None or letter.group == group]
        if len(page) < _PAGE:
            break
        after = page[-1].dead_letter_id
    return found if limit is None else found[:limit]


async def find_dead_letter(transport: Transport, destination: str, ref: str) -> DeadLetter:
    """The dead letter of ``destination`` that ``ref`` names: its dead-letter id (as
    ``cqrs dlq list`` prints it), or its message's id, whole or a prefix of at least 4
    hex digits.

    Raises :class:`LookupError` when none matches, and
    :class:`AmbiguousDeadLetterError` when a prefix matches several (a message
    dead-lettered by two groups matches twice: give the dead-letter id).
    """
    text = ref.strip()
    letters = await all_dead_letters(transport, destination)
    for letter in letters:
        if letter.dead_letter_id == text:
            return letter
    prefix = text.lower()
    digits = prefix.replace("-", "")
    if len(digits) < _MIN_PREFIX or any(c not in "0123456789abcdef" for c in digits):
        raise LookupError(f"{destination!r} has no dead letter {text!r}")
    matches = [
        letter
        for letter in letters
        if (found := identity_of(letter).message_id) is not None and found.hex.startswith(digits)
    ]
    if not matches:
        raise LookupError(
            f"{destination!r} has no dead letter {text!r}, nor one whose message id starts with it"
        )
    if len(matches) > 1:
        raise AmbiguousDeadLetterError(
            f"{len(matches)} dead letters of {destination!r} hold a message whose id starts "
            f"with {text}; give one's dead-letter id",
            matches[:_CANDIDATES],
        )
    return matches[0]


async def replay_dead_letter(
    transport: Transport,
    letter: DeadLetter,
    *,
    store: MessageStore | None = None,
    requested_by: str | None = None,
    service: str = REPLAY_SERVICE,
) -> Replay:
    """Hand ``letter`` back to its group (:meth:`Transport.replay
    <python_cqrs_core.transports.Transport.replay>`: same headers, same body, so same
    message id and correlation id) and, with a ``store``, record the replay in it as a
    :class:`DeadLetterReplayed` event (correlation id: the message's; causation id:
    the message's id; ``requested_by``; ``service``).

    The replay comes first: a dead letter someone else replayed meanwhile raises
    :class:`LookupError` and records nothing.  If recording then fails, the store's
    error propagates; the message was replayed all the same.  With a store, a
    ``replayed`` delivery of the message is recorded too (see the module docs).
    """
    replayed_as = await transport.replay(letter)
    if store is None:
        return Replay(letter, replayed_as, None)
    found = identity_of(letter)
    event = DeadLetterReplayed(
        destination=letter.destination,
        group=letter.group,
        dead_letter_id=letter.dead_letter_id,
        replayed_as=replayed_as,
        replayed_message_id=None if found.message_id is None else str(found.message_id),
        replayed_message_type=found.message_type,
        reason=letter.reason,
        attempts=letter.attempts,
        correlation_id=found.correlation_id,
        causation_id=found.message_id,
        requested_by=requested_by,
    )
    bus = Mediator()
    recorder = MessageRecorder(store, service=service).install(bus)
    try:
        await bus.publish(event)
    finally:
        await recorder.close()
    if found.message_id is not None:
        await store.append_deliveries(
            [
                DeliveryRecord(
                    message_id=found.message_id,
                    message_type=found.message_type,
                    correlation_id=found.correlation_id or str(found.message_id),
                    service=service,
                    transport=transport.name,
                    destination=letter.destination,
                    group=letter.group,
                    attempt=1,  # the transport hands it back as a first attempt
                    delivery_id=replayed_as,
                    outcome="replayed",
                    handlers=(),
                    error_type=None,
                    error_message=letter.reason,
                    duration_ms=None,
                    recorded_at=datetime.now(UTC),
                    requested_by=requested_by,
                )
            ]
        )
    return Replay(letter, replayed_as, event)
