"""The transactional inbox: handled message ids, written with the handler's effects.

A consumer that handles a delivery inside the application's transaction can make the
handling *effectively exactly once* per consumer group: it marks the message id in the
``cqrs_inbox`` table in that same transaction, before the handler runs::

    async with unit_of_work(delivery):                 # BEGIN, made current
        if not await inbox.mark(group, message_id):    # INSERT ... ON CONFLICT DO NOTHING
            return                                      # a redelivery: already handled
        await bus.process(message)                     # effects + outbox entries
    # COMMIT: effects, outbox entries and the mark, or none of them

A redelivered message (the broker delivers at least once) finds its mark and is
dropped; a handler that failed rolled its mark back with its effects, so the retry
handles it.  Two consumers handling the same message at the same moment cannot both
commit: the second insert waits for the first transaction and then finds the mark
(PostgreSQL), or the second chain's records are refused (SQLite: a message id is
recorded once).

What it does not give: effects *outside* the transaction (an e-mail sent, an HTTP
call) happen once per attempt, and a handler that runs twice before either commits
may do them twice.  Those belong in an outbox entry of their own, or must be
idempotent.
"""

from __future__ import annotations

from uuid import UUID

from ..transports.base import Inbox
from ..validation import validate_type_name
from .transaction import NoOutboxTransactionError, OutboxTransaction, _current

__all__ = ["TransactionalInbox"]


class TransactionalInbox(Inbox):
    """The :class:`~python_cqrs_core.transports.Inbox` of the current transaction
    (SQLAlchemy session, asyncpg connection, or the embedded store's chain).

    It holds no state: :meth:`mark` and :meth:`seen` act in the transaction the
    consumer's unit of work made current, and raise
    :class:`~python_cqrs_core.outbox.NoOutboxTransactionError` when there is none.
    """

    transactional = True

    async def seen(self, group: str, message_id: UUID) -> bool:
        """Whether ``group`` has handled ``message_id`` (committed, or marked in the
        current transaction)."""
        checked = _group(group)
        return await self._transaction("seen").handled(checked, str(message_id))

    async def mark(self, group: str, message_id: UUID) -> bool:
        """Mark ``message_id`` handled by ``group`` in the current transaction;
        ``False`` when it was handled already (a duplicate: do not handle it again)."""
        checked = _group(group)
        return await self._transaction("mark").mark_handled(checked, str(message_id))

    @staticmethod
    def _transaction(operation: str) -> OutboxTransaction:
        transaction = _current.get()
        if transaction is None:
            raise NoOutboxTransactionError(
                f"TransactionalInbox.{operation}() needs the transaction of the delivery: "
                "give the consumer a unit_of_work (SessionUnitOfWork, ConnectionUnitOfWork "
                "or SQLiteOutbox.unit_of_work), which makes it current"
            )
        return transaction

    def __repr__(self) -> str:
        return "<TransactionalInbox in the current transaction>"


def _group(group: str) -> str:
    try:
        return validate_type_name(group)
    except ValueError as exc:
        raise ValueError(f"group: {exc}") from None
