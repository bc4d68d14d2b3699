"""What every broker transport offers, and what a consumer needs from an inbox.

A *transport* moves encoded messages (the headers and body of
:class:`~python_cqrs_core.codec.EnvelopeCodec`) between processes.  The interface is
deliberately not shaped after one broker: it is what a consumer group on Redis
Streams, RabbitMQ, NATS JetStream or Kafka all let us do.

- **publish** to a *destination* (a stream, a queue, a subject);
- **receive** in a *consumer group*: each message of a destination is delivered to one
  consumer of each group, and stays pending until it is acknowledged; a message a
  dead consumer left pending is delivered again to another one after an idle time;
- **ack** once the message was handled (never before);
- **retry** a message later, with its attempt count increased;
- **dead-letter** a message that cannot be handled (poisoned, or out of attempts),
  keeping it, with the reason, where an operator can inspect and replay it.

The broker's own delivery id (a Redis stream entry id, an AMQP delivery tag) is
:attr:`Delivery.delivery_id`: it identifies the *delivery*, and is never used as a
causation id.  The message's identity is its ``cqrs-message-id`` header.

An *inbox* makes a consumer idempotent: it remembers which message ids a consumer
group has handled, so that a redelivered message (same message id) is handled once
per group (see :class:`Inbox`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from uuid import UUID

from ..errors import CQRSError

__all__ = [
    "DeadLetter",
    "Delivery",
    "Inbox",
    "Transport",
    "TransportError",
]


class TransportError(CQRSError):
    """The broker could not be reached or refused an operation; the cause is chained."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a consumer of a group.

    ``headers`` and ``body`` are exactly what was published (decode them with the
    codec; they come from outside and are hostile until decoded).  ``attempt`` is 1
    the first time the message is delivered to the group and grows with every retry
    and every redelivery after a consumer died.
    """

    transport: str
    destination: str
    group: str
    delivery_id: str
    headers: Mapping[str, str]
    body: bytes
    attempt: int = 1
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message a consumer group gave up on, kept with the reason."""

    dead_letter_id: str
    destination: str
    group: str
    headers: Mapping[str, str]
    body: bytes
    reason: str
    attempts: int
    dead_lettered_at: datetime
    original_delivery_id: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


class Transport(ABC):
    """A broker, as consumers and the outbox relay use it (see the module docs)."""

    name: str
    """Short name of the transport, e.g. ``"redis"``, ``"memory"``."""

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    async def publish(self, destination: str, headers: Mapping[str, str], body: bytes) -> str:
        """Publish one message; returns the broker's id of it.  Raises
        :class:`TransportError` when the broker does not take it."""

    @abstractmethod
    async def ensure_group(self, destination: str, group: str) -> None:
        """Create the consumer group of ``destination`` if it does not exist
        (idempotent).  A new group starts with the messages published after it."""

    @abstractmethod
    async def receive(
        self, destination: str, group: str, consumer: str, *, count: int = 10, wait: float = 1.0
    ) -> list[Delivery]:
        """Up to ``count`` deliveries for ``consumer`` of ``group``, waiting up to
        ``wait`` seconds for the first; ``[]`` when none came.

        Messages due for a retry, and messages another consumer of the group left
        pending longer than the transport's idle time (it died), are delivered again,
        with their attempt count increased.
        """

    @abstractmethod
    async def ack(self, delivery: Delivery) -> None:
        """The delivery was handled: it will not be delivered to this group again."""

    @abstractmethod
    async def retry(self, delivery: Delivery, *, delay: float, reason: str) -> None:
        """Deliver the message to the group again after ``delay`` seconds, as attempt
        ``delivery.attempt + 1``; this delivery is settled."""

    @abstractmethod
    async def dead_letter(self, delivery: Delivery, *, reason: str) -> None:
        """Give up on the message: keep it, with ``reason``, among the dead letters of
        its destination and group; this delivery is settled."""

    @abstractmethod
    async def dead_letters(
        self, destination: str, *, limit: int = 50, after: str | None = None
    ) -> list[DeadLetter]:
        """The dead letters of ``destination`` (every group), oldest first, after the
        dead-letter id ``after``."""

    @abstractmethod
    async def replay(self, dead_letter: DeadLetter) -> str:
        """Publish a dead letter again to its destination, unchanged (same message id,
        same correlation id), and remove it from the dead letters; returns the new
        broker id."""

    @abstractmethod
    async def lag(self, destination: str, group: str) -> int:
        """Messages of ``destination`` the group has not acknowledged yet (pending and
        not yet delivered): the consumer lag metric."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; idempotent."""


class Inbox(ABC):
    """The message ids a consumer group has handled: what makes a consumer idempotent.

    Two ways to use it, depending on where the handler writes its effects:

    - **transactional** (``transactional`` is true): :meth:`mark` runs inside the
      application's transaction that the consumer opened for the delivery (the same
      one the handler's writes and its outbox entries use), *before* the handler;
      ``False`` means the message was handled already (a duplicate).  The mark commits
      or rolls back with the handler's effects: handled exactly once, in effect.
    - **not transactional**: :meth:`seen` before the handler, :meth:`mark` after it
      succeeded.  A crash between the handler and the mark lets the message be
      handled again when it is redelivered (at least once).
    """

    transactional: bool = False

    @abstractmethod
    async def seen(self, group: str, message_id: UUID) -> bool:
        """Whether ``group`` has handled ``message_id``."""

    @abstractmethod
    async def mark(self, group: str, message_id: UUID) -> bool:
        """Remember that ``group`` handled ``message_id``; ``False`` if it was
        remembered already (the message is a duplicate)."""
