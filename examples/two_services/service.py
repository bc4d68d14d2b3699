"""What both services are made of: settings from the environment, and the pieces each
opens in its own process (its database, the shared message store, the broker).

Every process of a service (the orders web app, the orders worker, the inventory
worker) calls :func:`open_service` in its own event loop, and gets:

- ``pool``: an asyncpg pool on the service's **own** database, where its tables, its
  outbox (``cqrs_outbox``) and its inbox (``cqrs_inbox``) live;
- ``store``: the **shared** message store (PostgreSQL), recorded into under the
  service's name;
- ``transport``: Redis Streams, every key under the run's prefix;
- ``bus``: a mediator with the recorder and the outbox writer installed: a routed
  event dispatched in a transaction is written to the outbox in that transaction;
- ``outbox``: the relay's view of the outbox (used by the worker).

Settings (environment): ``<SERVICE>_DATABASE_URL`` (e.g. ``ORDERS_DATABASE_URL``),
``CQRS_STORE_URL``, ``REDIS_URL`` and ``REDIS_PREFIX``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from messages import REGISTRY

from python_cqrs_core import Mediator
from python_cqrs_core.codec import EnvelopeCodec
from python_cqrs_core.outbox import OutboxWriter
from python_cqrs_core.outbox.postgres import PostgresOutbox
from python_cqrs_core.store import MessageRecorder, MessageStore, open_store
from python_cqrs_core.transports import Routes
from python_cqrs_core.transports.redis import RedisTransport

# Serialises the schema set-up of the processes of one service (a lock of its database).
_SCHEMA_LOCK = 0x5457_4F53


@dataclass
class Service:
    name: str
    pool: Any  # asyncpg.Pool
    store: MessageStore
    transport: RedisTransport
    codec: EnvelopeCodec
    bus: Mediator
    recorder: MessageRecorder
    outbox: PostgresOutbox


@asynccontextmanager
async def open_service(name: str, routes: Routes, schema: str) -> AsyncIterator[Service]:
    """Open the pieces of service ``name`` (see the module docs), creating its tables
    with ``schema`` if needed; close them all when the block ends."""
    pool = await asyncpg.create_pool(
        os.environ[f"{name.upper()}_DATABASE_URL"], min_size=1, max_size=8
    )
    try:
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await connection.execute(schema)
        outbox = await PostgresOutbox.connect(pool)  # creates cqrs_outbox and cqrs_inbox
        store = await open_store(os.environ["CQRS_STORE_URL"])
        transport = RedisTransport.from_url(
            os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            prefix=os.environ.get("REDIS_PREFIX", "two-services:"),
            poll_interval=0.05,
        )
        # service=: the producing service travels in the cqrs-service header
        codec = EnvelopeCodec(REGISTRY, service=name)
        bus = Mediator()
        recorder = MessageRecorder(store, service=name).install(bus)
        OutboxWriter(routes, codec).install(bus)
        try:
            yield Service(name, pool, store, transport, codec, bus, recorder, outbox)
        finally:
            await recorder.close()
            await store.close()
            await transport.close()
            await outbox.close()
    finally:
        await pool.close()
