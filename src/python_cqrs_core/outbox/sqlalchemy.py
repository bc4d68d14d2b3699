"""The outbox in a SQLAlchemy ``AsyncSession`` (over asyncpg, on PostgreSQL), and the
outbox tables as SQLAlchemy ``Table`` objects for Alembic.

Writing, in the session's transaction (a FastAPI dependency usually provides the
session)::

    from python_cqrs_core.outbox.sqlalchemy import current_session, session_transaction

    async with session_transaction(session):          # BEGIN, or join the open one
        session.add(Order(id=7))
        await bus.send(PlaceOrder(order_id=7))         # its routed events: outbox
    # COMMIT: the order and the entries; an exception rolls both back

A handler reaches the same session with :func:`current_session`.  A consumer takes
:class:`SessionUnitOfWork` (a session and transaction per delivery).  The relay reads
the same tables on a pool of its own: ``PostgresOutbox.connect(engine.url...)`` (see
:mod:`python_cqrs_core.outbox.postgres`).

**Alembic.**  Declare the tables in the application's metadata and let Alembic create
and upgrade them with the rest of the schema::

    from python_cqrs_core.outbox.sqlalchemy import inbox_table, outbox_table

    outbox_table(Base.metadata)
    inbox_table(Base.metadata)
    # alembic revision --autogenerate; open the relay's storage with migrate=False

These definitions and the library's own migrations
(:mod:`python_cqrs_core.outbox.schema`) create the same tables, column by column and
index by index (a test compares them on PostgreSQL).  Requires the ``sqlalchemy``
extra.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    exists,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..transports.base import Delivery
from .schema import DELIVERED, INBOX_TABLE, OUTBOX_TABLE, PENDING
from .transaction import (
    NoOutboxTransactionError,
    OutboxMessage,
    OutboxTransaction,
    _current,
    consumed_message_id,
    use_transaction,
)

__all__ = [
    "SessionTransaction",
    "SessionUnitOfWork",
    "current_session",
    "inbox_table",
    "outbox_table",
    "session_transaction",
]


def outbox_table(metadata: MetaData) -> Table:
    """The ``cqrs_outbox`` table, declared in ``metadata`` (or the one declared there
    already).  PostgreSQL types; see :mod:`python_cqrs_core.outbox.schema`."""
    existing = metadata.tables.get(OUTBOX_TABLE)
    if existing is not None:
        return existing
    return Table(
        OUTBOX_TABLE,
        metadata,
        Column("position", BigInteger, Identity(always=True), nullable=False),
        Column("message_id", Text, nullable=False),
        Column("message_type", Text, nullable=False),
        Column("destination", Text, nullable=False),
        Column("correlation_id", Text, nullable=False),
        Column("causation_id", Text),
        Column("headers", JSONB, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("status", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("available_at", DateTime(timezone=True), nullable=False),
        Column("delivered_at", DateTime(timezone=True)),
        Column("last_error", Text),
        Column("claimed_by", Text),
        Column("claimed_until", DateTime(timezone=True)),
        PrimaryKeyConstraint("position", name=f"{OUTBOX_TABLE}_pkey"),
        Index("cqrs_outbox_message_id", "message_id", unique=True),
        Index(
            "cqrs_outbox_open",
            "correlation_id",
            "position",
            postgresql_where=text(f"status <> '{DELIVERED}'"),
        ),
        Index("cqrs_outbox_pending", "position", postgresql_where=text(f"status = '{PENDING}'")),
        Index(
            "cqrs_outbox_delivered",
            "delivered_at",
            postgresql_where=text(f"status = '{DELIVERED}'"),
        ),
    )


def inbox_table(metadata: MetaData) -> Table:
    """The ``cqrs_inbox`` table (the transactional inbox), declared in ``metadata``
    (or the one declared there already)."""
    existing = metadata.tables.get(INBOX_TABLE)
    if existing is not None:
        return existing
    return Table(
        INBOX_TABLE,
        metadata,
        Column("consumer_group", Text, nullable=False),
        Column("message_id", Text, nullable=False),
        Column("handled_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("consumer_group", "message_id", name=f"{INBOX_TABLE}_pkey"),
        Index("cqrs_inbox_handled_at", "handled_at"),
    )


_metadata = MetaData()
_OUTBOX = outbox_table(_metadata)
_INBOX = inbox_table(_metadata)


class SessionTransaction(OutboxTransaction):
    """The transaction of a SQLAlchemy ``AsyncSession`` on PostgreSQL (see
    :func:`session_transaction`, which makes one current)."""

    def __init__(self, session: AsyncSession) -> None:
        dialect = session.get_bind().dialect.name
        if dialect != "postgresql":
            raise ValueError(
                f"session: the outbox in a SQLAlchemy session needs PostgreSQL, this session "
                f"is bound to {dialect!r}"
            )
        self.session = session

    def _check(self) -> None:
        if not self.session.in_transaction():
            raise NoOutboxTransactionError(
                "the session made current has no open transaction (it was committed or "
                "rolled back inside the block): the outbox entry would be committed on its own"
            )

    async def write(self, message: OutboxMessage) -> None:
        self._check()
        statement = (
            postgres_insert(_OUTBOX)
            .values(
                message_id=message.message_id,
                message_type=message.message_type,
                destination=message.destination,
                correlation_id=message.correlation_id,
                causation_id=message.causation_id,
                headers=dict(message.headers),
                body=message.body,
                status=PENDING,
                attempts=0,
                created_at=func.now(),
                available_at=func.now(),
            )
            .on_conflict_do_nothing(index_elements=[_OUTBOX.c.message_id])
        )
        await self.session.execute(statement)

    async def mark_handled(self, group: str, message_id: str) -> bool:
        self._check()
        statement = (
            postgres_insert(_INBOX)
            .values(consumer_group=group, message_id=message_id, handled_at=func.now())
            .on_conflict_do_nothing()
            .returning(_INBOX.c.message_id)
        )
        result = await self.session.execute(statement)
        return result.first() is not None

    async def handled(self, group: str, message_id: str) -> bool:
        statement = select(
            exists().where(_INBOX.c.consumer_group == group, _INBOX.c.message_id == message_id)
        )
        return bool(await self.session.scalar(statement))


@asynccontextmanager
async def session_transaction(session: AsyncSession) -> AsyncIterator[SessionTransaction]:
    """Make ``session``'s transaction current for the block.

    A session with no transaction begins one, committed when the block ends (rolled
    back if it raises).  A session already in a transaction (``async with
    session.begin():`` around this block, or autobegun by an earlier statement) is
    joined: whoever owns that transaction commits it, entries included.
    """
    transaction = SessionTransaction(session)
    if session.in_transaction():
        with use_transaction(transaction):
            yield transaction
        return
    async with session.begin():
        with use_transaction(transaction):
            yield transaction


def current_session() -> AsyncSession:
    """The session of the current transaction, for a handler's own writes::

        async def handle(self, command: PlaceOrder) -> None:
            current_session().add(Order(id=command.order_id))

    Raises :class:`~python_cqrs_core.outbox.NoOutboxTransactionError` when the current
    transaction (if any) is not a session's.
    """
    transaction = _current.get()
    if not isinstance(transaction, SessionTransaction):
        raise NoOutboxTransactionError(
            "no SQLAlchemy session transaction is current: open one with "
            "session_transaction(session) or SessionUnitOfWork"
        )
    return transaction.session


class SessionUnitOfWork:
    """A consumer's unit of work on a session factory (``async_sessionmaker``): per
    delivery a new session, its transaction made current, committed when the handling
    succeeded, rolled back if it raised, and the session closed.  Call it without a
    delivery to open one anywhere else::

        unit_of_work = SessionUnitOfWork(async_sessionmaker(engine))
        async with unit_of_work() as session:
            await bus.send(PlaceOrder(order_id=7))
    """

    def __init__(self, session_factory: Callable[[], AbstractAsyncContextManager[AsyncSession]]):
        self.session_factory = session_factory

    @asynccontextmanager
    async def __call__(self, delivery: Delivery | None = None) -> AsyncIterator[AsyncSession]:
        consumed = None if delivery is None else consumed_message_id(delivery)
        async with self.session_factory() as session, session_transaction(session) as transaction:
            transaction.consumed_message_id = consumed
            yield session

    def __repr__(self) -> str:
        return f"<SessionUnitOfWork on {self.session_factory!r}>"
