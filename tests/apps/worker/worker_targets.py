"""What ``module:attribute`` may name, for the loading tests: a worker, and the kinds of
factories that make one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from worker_testing import CODEC, StockService

from python_cqrs_core.apps.worker import Subscription, Worker
from python_cqrs_core.transports import MemoryTransport

events: list[str] = []


def build() -> Worker:
    return Worker(
        name="stock",
        bus=StockService().bus,
        transport=MemoryTransport(),
        codec=CODEC,
        consumers=[Subscription("orders.events", "stock", wait=0.05)],
    )


worker = build()


class Services:
    worker = worker


def make_worker() -> Worker:
    return build()


async def make_worker_in_the_loop() -> Worker:
    return build()


@asynccontextmanager
async def opened_worker() -> AsyncIterator[Worker]:
    events.append("opened")
    try:
        yield build()
    finally:
        events.append("closed")


not_a_worker = 42


def makes_text() -> str:
    return "a worker"
