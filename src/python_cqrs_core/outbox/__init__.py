"""The transactional outbox, its relay, and the transactional inbox.

An event meant for other services (routed by :class:`~python_cqrs_core.transports.Routes`)
and published while a command is handled is written to an outbox table **in the same
database transaction as the application's own writes**; a relay publishes committed
entries to the broker afterwards.  So the event leaves the service if and only if the
transaction commits, and is never lost once it did::

    writer = OutboxWriter(routes, codec).install(bus)
    async with session_transaction(session):           # or connection_transaction(conn)
        session.add(Order(id=7))
        await bus.send(PlaceOrder(order_id=7))          # OrderPlaced -> cqrs_outbox
    relay = OutboxRelay(await PostgresOutbox.connect(url), transport)
    await relay.run()                                   # at least once, ordered per correlation

On the consuming side, :class:`TransactionalInbox` records each handled message id in
the handler's transaction, so a redelivered message is handled once per consumer group.

Modules: :mod:`.transaction` (the current transaction), :mod:`.writer` (the mediator
middleware), :mod:`.inbox`, :mod:`.relay`, :mod:`.storage` (what the relay needs of a
table), :mod:`.schema` (tables and migrations), and one per backend:
:mod:`.sqlalchemy` (``AsyncSession``; the ``sqlalchemy`` extra), :mod:`.postgres`
(asyncpg; the ``postgres`` extra), :mod:`.sqlite` (the embedded message store).  See
``docs/services.md``, section "Outbox".
"""

from .inbox import TransactionalInbox
from .relay import OutboxEvent, OutboxListener, OutboxRelay
from .schema import DELIVERED, FAILED, PENDING, EntryStatus, OutboxTableError
from .sqlite import SQLiteOutbox
from .storage import OutboxEntry, OutboxStorage
from .transaction import (
    NoOutboxTransactionError,
    OutboxMessage,
    OutboxTransaction,
    current_transaction,
    use_transaction,
)
from .writer import ChainTransactions, OutboxWriter

__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "ChainTransactions",
    "EntryStatus",
    "NoOutboxTransactionError",
    "OutboxEntry",
    "OutboxEvent",
    "OutboxListener",
    "OutboxMessage",
    "OutboxRelay",
    "OutboxStorage",
    "OutboxTableError",
    "OutboxTransaction",
    "OutboxWriter",
    "SQLiteOutbox",
    "TransactionalInbox",
    "current_transaction",
    "use_transaction",
]
