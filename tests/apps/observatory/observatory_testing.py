"""What the Observatory tests share: a small shop recorded into a store, hostile text in
its payloads and errors, and a real HTTP server around the application.

Run as a script, it is *another process* writing into a store:

    python observatory_testing.py chains URL COUNT [--rate N] [--seconds S]

records ``COUNT`` shop operations (or ``--rate`` operations per second for
``--seconds``), printing ``ready`` once its store is open and ``done <n>`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import uvicorn

from python_cqrs_core import PII, BaseCommand, BaseEvent, Mediator, correlation_scope
from python_cqrs_core.store import MessageRecorder, MessageStore, open_store

HERE = Path(__file__).resolve().parent
SCRIPT = "<script>alert('payload')</script>"
HTML_ERROR = "<b>mail</b> server <img src=x onerror=alert(1)> unreachable\nretry later"
EMAIL = "ada@example.com"


class PlaceOrder(BaseCommand):
    """A root command with personal data and hostile text in its payload."""

    __message_type__ = "obs.PlaceOrder"
    order_id: int
    email: Annotated[str, PII]
    note: str = SCRIPT


class OrderPlaced(BaseEvent):
    __message_type__ = "obs.OrderPlaced"
    order_id: int


class ReserveStock(BaseCommand):
    __message_type__ = "obs.ReserveStock"
    order_id: int


class MailError(Exception):
    """The failure of the shop's mail server, with HTML in its message."""


def build_shop() -> Mediator:
    """PlaceOrder -> OrderPlaced -> (ReserveStock, send_mail); an odd ``order_id``
    whose last digit is 3 makes ``send_mail`` fail with :data:`HTML_ERROR`."""
    bus = Mediator()

    async def place_order(command: PlaceOrder) -> None:
        await bus.publish(OrderPlaced(order_id=command.order_id))

    async def reserve_when_placed(event: OrderPlaced) -> None:
        await bus.send(ReserveStock(order_id=event.order_id))

    async def send_mail(event: OrderPlaced) -> None:
        if event.order_id % 10 == 3:
            raise MailError(HTML_ERROR)

    async def reserve_stock(command: ReserveStock) -> None:
        return None

    bus.register(PlaceOrder, place_order)
    bus.register(ReserveStock, reserve_stock)
    bus.subscribe(OrderPlaced, reserve_when_placed)
    bus.subscribe(OrderPlaced, send_mail)
    return bus


MESSAGES_PER_ORDER = 3


async def place(bus: Mediator, order_id: int, *, user: str = "user:ada") -> str:
    """Dispatch one order under its own correlation id ``order-<id>``; returns it."""
    correlation_id = f"order-{order_id}"
    with correlation_scope(correlation_id, requested_by=user), contextlib.suppress(MailError):
        await bus.send(PlaceOrder(order_id=order_id, email=EMAIL))
    return correlation_id


async def record_orders(
    store: MessageStore, order_ids: range, *, service: str = "shop", user: str = "user:ada"
) -> list[str]:
    """Record the orders ``order_ids`` into ``store``; their correlation ids."""
    bus = build_shop()
    recorder = MessageRecorder(store, service=service).install(bus)
    try:
        return [await place(bus, order_id, user=user) for order_id in order_ids]
    finally:
        await recorder.close()


def free_port() -> socket.socket:
    """A socket listening on a free port of 127.0.0.1."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    return listener


@asynccontextmanager
async def running(app: object) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` with uvicorn on a free local port, in this event loop; yield an
    httpx client for it (real HTTP, so event streams stream)."""
    listener = free_port()
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        observatory = getattr(app.state, "observatory", None)  # type: ignore[attr-defined]
        if observatory is not None:
            observatory.follower.stop()  # ends the open streams, as serve() does
        server.should_exit = True
        await task
        listener.close()


def writer_command(
    url: str, count: int, *extra: str, options: dict[str, Any] | None = None
) -> list[str]:
    """The command line of another process recording ``count`` orders into ``url``
    (opened with ``options``: a PostgreSQL schema's ``search_path``)."""
    command = [sys.executable, str(HERE / "observatory_testing.py"), "chains", url, str(count)]
    settings = (options or {}).get("server_settings")
    if settings:
        command += ["--search-path", settings["search_path"]]
    return [*command, *extra]


async def _write(
    url: str,
    count: int,
    rate: float | None,
    seconds: float | None,
    first: int,
    search_path: str | None,
) -> int:
    options: dict[str, Any] = {}
    if search_path:
        options["server_settings"] = {"search_path": search_path}
    store = await open_store(url, **options)
    bus = build_shop()
    recorder = MessageRecorder(store, service="writer").install(bus)
    print("ready", flush=True)
    written = 0
    try:
        if rate is None:
            for order_id in range(first, first + count):
                await place(bus, order_id, user="user:writer")
                written += 1
        else:
            # ``rate`` orders a second, dispatched concurrently in ticks of 50 ms.
            start = time.monotonic()
            tick = 0.05
            per_tick = rate * tick
            due = 0.0
            while time.monotonic() - start < (seconds or 0):
                due += per_tick
                batch = int(due) - written
                ids = range(first + written, first + written + batch)
                await asyncio.gather(*(place(bus, order_id, user="user:load") for order_id in ids))
                written += batch
                sleep = start + (written / rate) - time.monotonic()
                await asyncio.sleep(max(sleep, 0))
    finally:
        await recorder.close()
        await store.close()
    print(f"done {written}", flush=True)
    return written


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["chains"])
    parser.add_argument("url")
    parser.add_argument("count", type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--search-path")
    options = parser.parse_args()
    asyncio.run(
        _write(
            options.url,
            options.count,
            options.rate,
            options.seconds,
            options.first,
            options.search_path,
        )
    )


if __name__ == "__main__":
    main()
