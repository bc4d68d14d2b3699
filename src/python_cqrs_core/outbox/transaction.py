"""The application's transaction, as the outbox and the transactional inbox see it.

The outbox's promise is that a routed message leaves the service *if and only if* the
transaction holding the application's own writes commits.  The outbox therefore writes
into that transaction, and has to be told which one it is: the application makes its
transaction *current* for a block of code, through a :class:`~contextvars.ContextVar`,
and everything dispatched inside the block (and every task it spawns) writes there::

    from python_cqrs_core.outbox.sqlalchemy import session_transaction

    async with session_transaction(session):       # BEGIN, or join the open one
        session.add(Order(id=7))
        await bus.send(PlaceOrder(order_id=7))    # OrderPlaced goes to the outbox
    # COMMIT: the order and the outbox entry; an exception rolls both back

Each backend adapts its own kind of transaction to :class:`OutboxTransaction`:

- :mod:`python_cqrs_core.outbox.sqlalchemy`: a SQLAlchemy ``AsyncSession``;
- :mod:`python_cqrs_core.outbox.postgres`: a raw asyncpg connection;
- :mod:`python_cqrs_core.outbox.sqlite`: the embedded SQLite message store, where the
  transaction is the one recording the chain (no application transaction to open).

A consumer opens one per delivery through a *unit of work* factory
(``unit_of_work(delivery)``, an async context manager that begins, makes current,
and commits or rolls back), so that the handler's effects, its outbox entries and the
inbox mark of the delivery commit together.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ClassVar

from ..errors import CQRSError
from ..names import WIRE_MESSAGE_ID
from ..transports.base import Delivery
from ..validation import validate_request_id

__all__ = [
    "NoOutboxTransactionError",
    "OutboxMessage",
    "OutboxTransaction",
    "consumed_message_id",
    "current_transaction",
    "use_transaction",
]


class NoOutboxTransactionError(CQRSError, RuntimeError):
    """A routed message was dispatched, or the transactional inbox was asked, while no
    transaction was current.

    Deliberately an error, raised *before* any handler of the message ran: writing the
    entry in a transaction of its own would deliver the message even if the
    application's writes then rolled back, and dropping it would lose it.  Open the
    application's transaction around the dispatch (``session_transaction(session)``,
    ``connection_transaction(conn)``, or a consumer's ``unit_of_work``), or publish
    the message directly through a transport if at-most-once atomicity is acceptable.
    """


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A routed message, encoded, as the writer hands it to a transaction.

    ``headers`` and ``body`` are exactly what :meth:`EnvelopeCodec.encode
    <python_cqrs_core.codec.EnvelopeCodec.encode>` returned, trace context included;
    the other fields are copied out of the headers so that the table can be indexed
    and read without decoding anything.
    """

    message_id: str
    message_type: str
    destination: str
    correlation_id: str
    causation_id: str | None
    headers: Mapping[str, str]
    body: bytes


class OutboxTransaction(ABC):
    """One open transaction of the application, able to hold outbox entries and inbox
    marks.  Backends implement the three methods; applications use the backend's
    context managers rather than this class.

    ``per_chain`` is true for the embedded store's transactions, which commit with
    the records of one root dispatch (a *chain*) instead of being opened by the
    application; ``root_message_id`` is then the id of that root message and
    ``sealed`` says the root dispatch ended (a dispatch that comes later, from a task
    it spawned, is a chain of its own, as the message recorder sees it).

    ``consumed_message_id`` is the id of the message a consumer's unit of work opened
    the transaction for: that message came from the broker, and the writer never
    sends it out again, even if its type is routed (a service consuming the events
    it routes would otherwise publish each one back, forever).
    """

    per_chain: ClassVar[bool] = False
    root_message_id: str | None = None
    sealed: bool = False
    consumed_message_id: str | None = None

    @abstractmethod
    async def write(self, message: OutboxMessage) -> None:
        """Add ``message`` to the outbox in this transaction.  A message id already in
        the outbox is left as it is (the message was written before)."""

    @abstractmethod
    async def mark_handled(self, group: str, message_id: str) -> bool:
        """Record in this transaction that ``group`` handled ``message_id``; ``False``
        if that was recorded already, by a committed transaction or by this one."""

    @abstractmethod
    async def handled(self, group: str, message_id: str) -> bool:
        """Whether a committed transaction (or this one) recorded that ``group``
        handled ``message_id``."""


_current: ContextVar[OutboxTransaction | None] = ContextVar("cqrs_outbox_transaction", default=None)


def current_transaction() -> OutboxTransaction | None:
    """The transaction made current in this context, or ``None``.

    >>> current_transaction() is None
    True
    """
    return _current.get()


@contextmanager
def use_transaction(transaction: OutboxTransaction) -> Iterator[OutboxTransaction]:
    """Make ``transaction`` current for the block (and the tasks started in it).

    The backends' context managers call it after opening their transaction; a custom
    backend does the same.  Blocks nest: the innermost transaction is current, and the
    outer one is current again when the block ends.
    """
    token = _current.set(transaction)
    try:
        yield transaction
    finally:
        _current.reset(token)


def consumed_message_id(delivery: Delivery) -> str:
    """The id of the message ``delivery`` carries (its ``cqrs-message-id`` header), as
    the unit-of-work factories record it; a header that is not a message id raises a
    :class:`ValueError` naming it."""
    try:
        return str(validate_request_id(delivery.headers.get(WIRE_MESSAGE_ID)))
    except ValueError as exc:
        raise ValueError(f"header {WIRE_MESSAGE_ID}: {exc}") from None
