"""A consumer process for the crash test: ``python consumer_process.py URL PREFIX NAME``.

It consumes ``OrderPlaced`` events from the destination ``orders`` in the group
``billing`` and records each one it handles in the Redis hash ``<PREFIX>effects``
(``HINCRBY effects <order_id> 1``).  Orders whose id is a multiple of 500 plus 7 are
poisoned: their handler always raises.

Its effects and its inbox marks are written in one Redis transaction per delivery,
through the consumer's ``unit_of_work`` convention: the unit of work ``WATCH``es the
inbox key and opens ``MULTI``; the inbox's mark queues the mark (or says "duplicate");
the handler queues its write; the unit of work ``EXEC``s on success.  So a message
redelivered after a crash (handled, not yet acknowledged) finds its mark and is not
handled again: every effect happens exactly once, whenever the process is killed.

SIGTERM stops it gracefully; the test kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from contextvars import ContextVar
from pathlib import Path
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent))

from redis.asyncio.client import Pipeline
from transport_testing import OrderPlaced, make_codec

from python_cqrs_core import Mediator
from python_cqrs_core.transports import Backoff, Consumer, Delivery, Inbox
from python_cqrs_core.transports.redis import RedisTransport

POISONED_EVERY = 500
POISONED_AT = 7
_transaction: ContextVar[Pipeline | None] = ContextVar("transaction", default=None)


def is_poisoned(order_id: int) -> bool:
    return order_id % POISONED_EVERY == POISONED_AT


class RedisTransactionalInbox(Inbox):
    """Marks queued in the delivery's Redis transaction (see the module docs)."""

    transactional = True

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    async def seen(self, group: str, message_id: UUID) -> bool:
        raise AssertionError("a transactional inbox is only marked")

    async def mark(self, group: str, message_id: UUID) -> bool:
        pipe = _transaction.get()
        assert pipe is not None, "marked outside the unit of work"
        key = f"{self.prefix}inbox:{group}:{message_id}"
        await pipe.watch(key)
        if await pipe.exists(key):
            return False
        pipe.multi()
        pipe.set(key, b"1")
        return True


async def main(url: str, prefix: str, name: str) -> None:
    transport = RedisTransport.from_url(url, prefix=prefix, claim_idle=1.0, poll_interval=0.05)
    client = transport.client

    @contextlib.asynccontextmanager
    async def unit_of_work(delivery: Delivery) -> AsyncIterator[object]:
        async with client.pipeline(transaction=True) as pipe:
            token = _transaction.set(pipe)
            try:
                yield pipe
                if pipe.explicit_transaction:
                    await pipe.execute()  # the mark and the effects, or neither
            finally:
                _transaction.reset(token)

    bus = Mediator()

    async def on_placed(event: OrderPlaced) -> None:
        if is_poisoned(event.order_id):
            raise ValueError(f"order {event.order_id} is poisoned")
        pipe = _transaction.get()
        assert pipe is not None
        pipe.hincrby(f"{prefix}effects", str(event.order_id), 1)

    bus.subscribe(OrderPlaced, on_placed)
    consumer = Consumer(
        bus,
        transport,
        make_codec(),
        "orders",
        "billing",
        name=name,
        inbox=RedisTransactionalInbox(prefix),
        unit_of_work=unit_of_work,
        max_attempts=3,
        backoff=Backoff(initial=0.05, factor=2, maximum=0.2),
        batch_size=64,
        wait=0.2,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(consumer.stop()))
    print("ready", flush=True)
    await consumer.run()
    await transport.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
