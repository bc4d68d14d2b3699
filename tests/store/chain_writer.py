"""A separate OS process that records chains into a store (used by test_store_processes).

Usage::

    python chain_writer.py stream URL
        dispatch chains forever; print each correlation id (flushed) once its
        dispatch returned, i.e. once the recorder committed it.
    python chain_writer.py exchange URL SCHEMA COUNT MY_FILE OTHER_FILE
        (PostgreSQL) record COUNT chains, write their correlation ids to MY_FILE,
        wait for OTHER_FILE from the other process, read every chain listed there
        and check its shape; exit 0 when all are complete.
    python chain_writer.py background URL SCHEMA COUNT ENDING
        record COUNT chains with durability="async" (SCHEMA: the PostgreSQL
        search_path, "-" for none) and end without closing the recorder or the store,
        as a script that forgets to.  ENDING says how the event loop ends:
        "asyncio.run" (returns from asyncio.run), "left-open" (run_until_complete on a
        loop never closed) or "closed" (the loop closed with the writes queued).

Each chain is ``PlaceOrder`` (command) -> ``OrderPlaced`` (event) -> ``ReserveStock``
(command): three records, recorded under the stable type names ``shop.*`` (the
classes live in ``__main__`` here, which would otherwise be part of their names).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from python_cqrs_core import BaseCommand, BaseEvent, Mediator
from python_cqrs_core.store import MessageRecorder, MessageStore, open_store
from python_cqrs_core.store.recorder import Durability

CHAIN_TYPES = ["shop.PlaceOrder", "shop.OrderPlaced", "shop.ReserveStock"]


class PlaceOrder(BaseCommand):
    __message_type__ = "shop.PlaceOrder"
    order_id: int


class OrderPlaced(BaseEvent):
    __message_type__ = "shop.OrderPlaced"
    order_id: int


class ReserveStock(BaseCommand):
    __message_type__ = "shop.ReserveStock"
    order_id: int


def build_bus(store: MessageStore, durability: Durability = "sync") -> Mediator:
    bus = Mediator()

    async def place(command: PlaceOrder) -> int:
        await bus.publish(OrderPlaced(order_id=command.order_id))
        return command.order_id

    async def on_placed(event: OrderPlaced) -> None:
        await bus.send(ReserveStock(order_id=event.order_id))

    async def reserve(command: ReserveStock) -> None:
        return None

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, on_placed)
    bus.register(ReserveStock, reserve)
    MessageRecorder(store, durability=durability).install(bus)
    return bus


async def stream(url: str) -> None:
    store = await open_store(url)
    bus = build_bus(store)
    order_id = 0
    while True:
        order_id += 1
        command = PlaceOrder(order_id=order_id)
        await bus.send(command)  # returns after the chain is committed
        sys.stdout.write(f"{command.correlation_id}\n")
        sys.stdout.flush()


async def exchange(url: str, schema: str, count: int, mine: Path, other: Path) -> int:
    store = await open_store(url, server_settings={"search_path": schema})
    try:
        bus = build_bus(store)
        commands = [PlaceOrder(order_id=n) for n in range(count)]
        await asyncio.gather(*(bus.send(command) for command in commands))
        partial = mine.with_suffix(".partial")
        partial.write_text("\n".join(str(c.correlation_id) for c in commands))
        partial.replace(mine)  # atomic: the other process never sees half a file
        deadline = time.monotonic() + 60
        while not other.exists():
            if time.monotonic() > deadline:
                print(f"timed out waiting for {other}", file=sys.stderr)
                return 2
            await asyncio.sleep(0.05)
        problems: list[Any] = []
        for correlation_id in other.read_text().split():
            trees = await store.build_causation_tree(correlation_id)
            shape = [
                (depth, node.record.message_type) for tree in trees for depth, node in tree.walk()
            ]
            if shape != list(enumerate(CHAIN_TYPES)):
                problems.append((correlation_id, shape))
        if problems:
            print(f"incomplete chains of the other process: {problems[:3]}", file=sys.stderr)
            return 1
        print(f"read {len(other.read_text().split())} chains of the other process", flush=True)
        return 0
    finally:
        await store.close()


async def background(url: str, schema: str, count: int) -> None:
    options = {} if schema == "-" else {"server_settings": {"search_path": schema}}
    store = await open_store(url, **options)
    bus = build_bus(store, durability="async")
    for order_id in range(count):
        await bus.send(PlaceOrder(order_id=order_id))
    # No recorder.close(), no flush(), no store.close(): the queue is still full.


def background_then(url: str, schema: str, count: int, ending: str) -> int:
    if ending == "asyncio.run":
        asyncio.run(background(url, schema, count))
    elif ending in ("left-open", "closed"):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(background(url, schema, count))
        if ending == "closed":
            loop.close()
    else:
        print(f"unknown ending {ending!r}", file=sys.stderr)
        return 64
    return 0


def main(argv: list[str]) -> int:
    mode = argv[1]
    if mode == "stream":
        asyncio.run(stream(argv[2]))
        return 0
    if mode == "background":
        url, schema, count, ending = argv[2:6]
        return background_then(url, schema, int(count), ending)
    if mode == "exchange":
        url, schema, count, mine, other = argv[2:7]
        return asyncio.run(exchange(url, schema, int(count), Path(mine), Path(other)))
    print(f"unknown mode {mode!r}", file=sys.stderr)
    return 64


if __name__ == "__main__":
    os.environ.pop("CQRS_STORE_URL", None)
    sys.exit(main(sys.argv))
