"""A stock service whose worker ``cqrs worker worker_service:worker`` runs, in the
``cqrs worker`` tests.

It consumes ``OrderPlaced`` from the Redis stream ``<prefix>orders`` in the group
``stock``, with the Redis inbox; each handler takes ``WORKER_TEST_DELAY`` seconds and
then counts the order in the hash ``<prefix>handled`` (``HINCRBY``): a value above 1
would be an order handled twice.  Connections are opened in the worker's own event
loop (an async context manager), and closed after it stopped.

Settings (environment): ``CQRS_TEST_REDIS_URL``, ``WORKER_TEST_PREFIX``,
``WORKER_TEST_DELAY`` (seconds, default 0.05).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from python_cqrs_core import BaseEvent, Mediator, MessageRegistry
from python_cqrs_core.apps.worker import Subscription, Worker
from python_cqrs_core.codec import EnvelopeCodec
from python_cqrs_core.transports import RedisInbox
from python_cqrs_core.transports.redis import RedisTransport

DESTINATION, GROUP = "orders", "stock"


class OrderPlaced(BaseEvent):
    __message_type__ = "tests.cli.worker.OrderPlaced"
    order_id: int


CODEC = EnvelopeCodec(MessageRegistry([OrderPlaced]))


@asynccontextmanager
async def worker() -> AsyncIterator[Worker]:
    prefix = os.environ["WORKER_TEST_PREFIX"]
    delay = float(os.environ.get("WORKER_TEST_DELAY", "0.05"))
    transport = RedisTransport.from_url(
        os.environ.get("CQRS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        prefix=prefix,
        poll_interval=0.05,
    )
    bus = Mediator()

    @bus.handler(OrderPlaced)
    async def count(event: OrderPlaced) -> None:
        await asyncio.sleep(delay)
        await transport.client.hincrby(f"{prefix}handled", str(event.order_id), 1)

    try:
        yield Worker(
            name="stock",
            bus=bus,
            transport=transport,
            codec=CODEC,
            consumers=[
                Subscription(
                    DESTINATION, GROUP, inbox=RedisInbox(transport), batch_size=16, wait=0.2
                )
            ],
            status_interval=1.0,
        )
    finally:
        await transport.close()
