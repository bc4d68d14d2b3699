"""What the worker tests share: a small stock service, its messages and a poller."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from python_cqrs_core import BaseCommand, BaseEvent, Mediator, MessageRegistry
from python_cqrs_core.codec import EnvelopeCodec


class OrderPlaced(BaseEvent):
    __message_type__ = "tests.worker.OrderPlaced"
    order_id: int


class ReserveStock(BaseCommand):
    __message_type__ = "tests.worker.ReserveStock"
    order_id: int


REGISTRY = MessageRegistry([OrderPlaced, ReserveStock])
CODEC = EnvelopeCodec(REGISTRY)


class StockService:
    """A consumer's bus: ``OrderPlaced`` -> ``ReserveStock``, whose handler takes
    ``delay`` seconds, fails for the ``poisoned`` orders, and counts what it did."""

    def __init__(self, delay: float = 0.0, poisoned: frozenset[int] = frozenset()) -> None:
        self.delay = delay
        self.poisoned = poisoned
        self.started = asyncio.Event()
        self.reserved: Counter[int] = Counter()
        self.commands: list[ReserveStock] = []
        self.bus = Mediator()
        self.bus.subscribe(OrderPlaced, self.on_order_placed)
        self.bus.register(ReserveStock, self.reserve)

    async def on_order_placed(self, event: OrderPlaced) -> None:
        await self.bus.send(ReserveStock(order_id=event.order_id))

    async def reserve(self, command: ReserveStock) -> None:
        self.started.set()
        await asyncio.sleep(self.delay)
        if command.order_id in self.poisoned:
            raise RuntimeError(f"order {command.order_id} is poisoned\x1b[2J")
        self.reserved[command.order_id] += 1
        self.commands.append(command)


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 10.0,
    what: str = "the condition",
) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.02)
