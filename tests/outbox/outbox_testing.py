"""What the outbox tests share: messages, a broker double, and one harness per backend.

Each :class:`Backend` runs the same scenario on one of the three places an application
keeps its transaction: a SQLAlchemy ``AsyncSession`` over asyncpg, a raw asyncpg
connection (both on the run's PostgreSQL database, in a schema of their own), and the
embedded SQLite message store.  The application's own write (``orders`` row) is done
by the command handler through the current transaction, so a test can check that the
order and the outbox entry commit, or roll back, together.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from python_cqrs_core import BaseCommand, BaseEvent, Mediator, MessageRegistry
from python_cqrs_core.codec import EnvelopeCodec
from python_cqrs_core.outbox import OutboxStorage, OutboxWriter, SQLiteOutbox
from python_cqrs_core.outbox.postgres import (
    ConnectionUnitOfWork,
    PostgresOutbox,
    connection_transaction,
    current_connection,
)
from python_cqrs_core.outbox.sqlalchemy import (
    SessionUnitOfWork,
    current_session,
    session_transaction,
)
from python_cqrs_core.store import MessageRecorder, open_store
from python_cqrs_core.transports import MemoryTransport, Routes
from python_cqrs_core.transports.base import Delivery, TransportError

BACKENDS = ["sqlalchemy", "asyncpg", "sqlite"]


class PlaceOrder(BaseCommand):
    __message_type__ = "outbox_tests.PlaceOrder"
    order_id: int
    fail: bool = False


class OrderPlaced(BaseEvent):
    __message_type__ = "outbox_tests.OrderPlaced"
    order_id: int


class OrderAudited(BaseEvent):
    """Stays in the process: not routed."""

    __message_type__ = "outbox_tests.OrderAudited"
    order_id: int


class StockReserved(BaseEvent):
    __message_type__ = "outbox_tests.StockReserved"
    order_id: int


REGISTRY = MessageRegistry([PlaceOrder, OrderPlaced, OrderAudited, StockReserved])
CODEC = EnvelopeCodec(REGISTRY)
ROUTES = Routes({OrderPlaced: "orders.events", StockReserved: "inventory.events"})


class Published:
    """One message a :class:`RecordingTransport` took."""

    __slots__ = ("body", "destination", "headers")

    def __init__(self, destination: str, headers: Mapping[str, str], body: bytes) -> None:
        self.destination = destination
        self.headers = dict(headers)
        self.body = body

    @property
    def message_id(self) -> str:
        return self.headers["cqrs-message-id"]

    def decode(self) -> Any:
        return CODEC.decode(self.headers, self.body).message


class RecordingTransport(MemoryTransport):
    """The in-memory broker, keeping a list of what it took, in order, and refusing
    every publish while ``down`` is set (a broker outage at will)."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[Published] = []
        self.down = False

    async def publish(self, destination: str, headers: Mapping[str, str], body: bytes) -> str:
        if self.down:
            raise TransportError("connection refused (the broker is down)")
        broker_id = await super().publish(destination, headers, body)
        self.published.append(Published(destination, headers, body))
        return broker_id

    def ids(self) -> list[str]:
        return [p.message_id for p in self.published]


def delivery_of(published: Published, attempt: int = 1) -> Delivery:
    """What a broker would hand a consumer for ``published``."""
    return Delivery(
        transport="memory",
        destination=published.destination,
        group="billing",
        delivery_id=f"d-{secrets.token_hex(4)}",
        headers=published.headers,
        body=published.body,
        attempt=attempt,
    )


class Backend:
    """One place an application keeps its transaction (see the module docs)."""

    name: str
    storage: OutboxStorage
    bus: Mediator

    def transaction(self) -> AbstractAsyncContextManager[object]:
        """Opened around a dispatch, as the application (an HTTP handler) would."""
        raise NotImplementedError

    def unit_of_work(self, delivery: Delivery) -> AbstractAsyncContextManager[object]:
        """What a consumer opens per delivery."""
        raise NotImplementedError

    async def write_order(self, order_id: int) -> None:
        """The application's own write, in the current transaction."""
        raise NotImplementedError

    async def orders(self) -> list[int]:
        """The orders committed."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def install(self) -> None:
        """The command handler: writes the order, publishes a routed event and an
        unrouted one, and fails when asked, after all that."""

        async def place(command: PlaceOrder) -> None:
            await self.write_order(command.order_id)
            await self.bus.publish(OrderPlaced(order_id=command.order_id))
            await self.bus.publish(OrderAudited(order_id=command.order_id))
            if command.fail:
                raise RuntimeError(f"order {command.order_id} refused")

        self.bus.register(PlaceOrder, place)
        self.bus.subscribe(OrderPlaced, _nothing)
        self.bus.subscribe(OrderAudited, _nothing)
        self.bus.subscribe(StockReserved, _nothing)


async def _nothing(event: BaseEvent) -> None:
    return None


_ORDERS = "CREATE TABLE orders (id INTEGER PRIMARY KEY)"


async def create_schema(url: str) -> str:
    """A fresh schema in ``url``'s database, with the application's ``orders`` table."""
    schema = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(_ORDERS)
    finally:
        await conn.close()
    return schema


class SQLAlchemyBackend(Backend):
    name = "sqlalchemy"

    def __init__(self, engine: AsyncEngine, storage: OutboxStorage) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.storage = storage
        self.bus = Mediator()
        OutboxWriter(ROUTES, CODEC).install(self.bus)
        self.install()
        self._unit_of_work = SessionUnitOfWork(self.sessions)

    @classmethod
    async def open(cls, url: str, schema: str) -> SQLAlchemyBackend:
        engine = create_async_engine(
            url.replace("postgresql://", "postgresql+asyncpg://", 1),
            connect_args={"server_settings": {"search_path": schema}},
        )
        storage = await PostgresOutbox.connect(url, server_settings={"search_path": schema})
        return cls(engine, storage)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[object]:
        async with self.sessions() as session, session_transaction(session) as transaction:
            yield transaction

    def unit_of_work(self, delivery: Delivery) -> AbstractAsyncContextManager[object]:
        return self._unit_of_work(delivery)

    async def write_order(self, order_id: int) -> None:
        await current_session().execute(
            text("INSERT INTO orders (id) VALUES (:id)"), {"id": order_id}
        )

    async def orders(self) -> list[int]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(text("SELECT id FROM orders ORDER BY id"))).scalars())

    async def close(self) -> None:
        await self.storage.close()
        await self.engine.dispose()


class AsyncpgBackend(Backend):
    name = "asyncpg"

    def __init__(self, pool: Any, storage: OutboxStorage) -> None:
        self.pool = pool
        self.storage = storage
        self.bus = Mediator()
        OutboxWriter(ROUTES, CODEC).install(self.bus)
        self.install()
        self._unit_of_work = ConnectionUnitOfWork(pool)

    @classmethod
    async def open(cls, url: str, schema: str) -> AsyncpgBackend:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=4, server_settings={"search_path": schema}
        )
        storage = await PostgresOutbox.connect(pool)
        return cls(pool, storage)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[object]:
        async with self.pool.acquire() as conn, connection_transaction(conn) as transaction:
            yield transaction

    def unit_of_work(self, delivery: Delivery) -> AbstractAsyncContextManager[object]:
        return self._unit_of_work(delivery)

    async def write_order(self, order_id: int) -> None:
        await current_connection().execute("INSERT INTO orders (id) VALUES ($1)", order_id)

    async def orders(self) -> list[int]:
        return [row[0] for row in await self.pool.fetch("SELECT id FROM orders ORDER BY id")]

    async def close(self) -> None:
        await self.storage.close()
        await self.pool.close()


class SQLiteBackend(Backend):
    """The zero-setup path: the chain's records are the application's writes; the
    order is "written" when the chain is recorded (its command succeeded)."""

    name = "sqlite"

    def __init__(self, store: Any, recorder: MessageRecorder, outbox: SQLiteOutbox) -> None:
        self.store = store
        self.recorder = recorder
        self.storage = outbox
        self.bus = Mediator()
        recorder.install(self.bus)
        OutboxWriter(ROUTES, CODEC, chains=outbox).install(self.bus)
        self.install()

    @classmethod
    async def open(cls, path: Path) -> SQLiteBackend:
        store = await open_store(f"sqlite:///{path}")
        recorder = MessageRecorder(store)
        return cls(store, recorder, await SQLiteOutbox.open(recorder))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[object]:
        yield None  # every root dispatch is its own transaction here

    def unit_of_work(self, delivery: Delivery) -> AbstractAsyncContextManager[object]:
        assert isinstance(self.storage, SQLiteOutbox)
        return self.storage.unit_of_work(delivery)

    async def write_order(self, order_id: int) -> None:
        return None

    async def orders(self) -> list[int]:
        records = await self.store.read(0, 1000, message_type=PlaceOrder.__message_type__)
        return sorted(r.payload["order_id"] for r in records if r.outcome == "succeeded")

    async def close(self) -> None:
        await self.storage.close()
        await self.recorder.close()
        await self.store.close()
