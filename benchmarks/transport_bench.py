"""Events through a broker, end to end: ours against a bare redis-py loop and FastStream.

    .venv/bin/python benchmarks/transport_bench.py                 # every leg
    .venv/bin/python benchmarks/transport_bench.py --events 20000 --rate 2000
    .venv/bin/python benchmarks/transport_bench.py --store sqlite:///tmp/bench.db
    .venv/bin/python benchmarks/transport_bench.py --legs bare,ours --json

Every leg runs against the same Redis (``--redis``, default the local one), on a
stream of its own that is deleted afterwards, and measures two things:

1. **throughput**: ``--events`` events published as fast as the producer can (up to
   ``--window`` publishes in flight) while one consumer handles them; events/s from
   the first publish to the last event handled;
2. **latency** at a fixed offered rate: ``--rate`` events/s for ``--seconds``
   seconds; p50 and p99 of "handled" minus the event's ``requested_at``.

The legs (``LEGS``; add one with a function of the same shape):

- ``bare``: the floor.  ``XADD`` a JSON payload; one consumer loop ``XREADGROUP``s
  up to 100 entries, parses each, and ``XACK``s each after handling it;
- ``bare-pipelined``: the same loop with the round trips ours saves: one ``XACK``
  per batch read, and the ``XADD``s of one event-loop turn sent as one pipeline;
- ``ours``: a producer ``Mediator`` with a :class:`DirectPublisher` (``bus.publish``
  encodes with the envelope codec and ``XADD``s through :class:`RedisTransport`), and
  a :class:`Consumer` with every guarantee on: decode and validate, the Redis inbox
  (check before, mark after), dispatch through a ``Mediator`` as the parent, ack
  after success, retries and dead letters configured;
- ``ours+store``: the same, with a ``MessageRecorder`` on the consumer's bus writing
  to ``--store`` (only with ``--store``);
- ``faststream``: FastStream's Redis stream subscriber (consumer group, ack after the
  handler) and ``broker.publish``;
- ``outbox``: every guarantee on, as a service runs: each event is published inside a
  PostgreSQL transaction (``connection_transaction``) on a bus with a
  ``MessageRecorder`` and an ``OutboxWriter`` (the outbox row and the records
  committed), the ``OutboxRelay`` publishes the committed entries to Redis, and the
  ``Consumer`` handles each delivery in a transaction of its own with the
  transactional inbox (``ConnectionUnitOfWork`` + ``TransactionalInbox``), its bus
  recording the delivery into the same store.  It runs in a database of its own,
  created on ``--postgres`` (the server's admin URL) and dropped afterwards;
- ``pg-floor``: the PostgreSQL work those guarantees require and nothing else, with
  the same pools and statements: per event the producer's transaction holding the
  outbox row, then the consumer's transaction holding the inbox mark.  A queue in
  the process stands for the relay and the broker, nothing is recorded, and no code
  of the library runs: ``outbox`` cannot be faster than this.

The legs run in turns, ``--repeat`` rounds (3 by default), and each figure shown is
the median of its leg's rounds: the machine is shared and has two cores.  The line
after the table says whether ``outbox`` reaches 0.4x the ``bare`` loop's throughput.

``--profile LEG`` runs that leg's throughput phase once more under cProfile and
prints where its own time goes, by area (redis-py, asyncpg, asyncio, pydantic, the
store, the outbox, the transports, the codec...), then the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from python_cqrs_core import BaseEvent, Mediator, MessageRegistry
from python_cqrs_core.codec import EnvelopeCodec
from python_cqrs_core.outbox import OutboxRelay, OutboxWriter, TransactionalInbox
from python_cqrs_core.outbox.postgres import (
    ConnectionUnitOfWork,
    PostgresOutbox,
    connection_transaction,
)
from python_cqrs_core.store import MessageRecorder, open_store
from python_cqrs_core.transports import Consumer, DirectPublisher, RedisInbox, Routes
from python_cqrs_core.transports.redis import RedisTransport

DEFAULT_REDIS = os.environ.get("CQRS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
DEFAULT_POSTGRES = os.environ.get(
    "CQRS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
FLOOR = 0.4
"""The outbox leg's throughput must be at least this share of the bare loop's."""


class OrderPlaced(BaseEvent):
    __message_type__ = "bench.OrderPlaced"
    order_id: int
    sku: str
    quantity: int


@dataclass
class Figures:
    leg: str
    events: int
    seconds: float
    events_per_second: float
    rate: int
    latency_p50_ms: float
    latency_p99_ms: float


class Sink:
    """Counts handled events and keeps their latency (handled minus requested_at)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.done = asyncio.Event()
        self.expected = 0

    def expect(self, count: int) -> None:
        self.latencies = []
        self.expected = count
        self.done.clear()

    def handled(self, requested_at: datetime) -> None:
        self.latencies.append((datetime.now(UTC) - requested_at).total_seconds())
        if len(self.latencies) >= self.expected:
            self.done.set()


# A leg: given the sink, it starts its consumer and returns (publish, stop):
# ``publish(n)`` publishes event number n; ``stop()`` stops and cleans up.
Publish = Callable[[int], Awaitable[None]]
Stop = Callable[[], Awaitable[None]]
Leg = Callable[[argparse.Namespace, str, Sink], Awaitable[tuple[Publish, Stop]]]


def new_event(n: int) -> OrderPlaced:
    return OrderPlaced(order_id=n, sku=f"SKU-{n % 1000}", quantity=n % 5 + 1)


async def bare_leg(
    args: argparse.Namespace, stream: str, sink: Sink
) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    # the same kind of pool as RedisTransport.from_url: bursts wait for a connection
    pool = aioredis.BlockingConnectionPool.from_url(args.redis, max_connections=64)
    client = aioredis.Redis(connection_pool=pool)
    await client.xgroup_create(stream, "bench", "$", mkstream=True)
    running = True

    async def consume() -> None:
        while running:
            response = await client.xreadgroup("bench", "c-1", {stream: ">"}, count=100, block=100)
            for _, entries in response or []:
                for entry_id, fields in entries:
                    payload = json.loads(fields[b"payload"])
                    sink.handled(datetime.fromisoformat(payload["requested_at"]))
                    await client.xack(stream, "bench", entry_id)

    task = asyncio.create_task(consume())

    async def publish(n: int) -> None:
        event = new_event(n)
        payload = event.model_dump_json()
        await client.xadd(stream, {"payload": payload})

    async def stop() -> None:
        nonlocal running
        running = False
        await task
        await client.delete(stream)
        await client.aclose(close_connection_pool=True)

    return publish, stop


async def bare_pipelined_leg(
    args: argparse.Namespace, stream: str, sink: Sink
) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    """The floor with the same round-trip savings as ours: one ``XACK`` per batch read,
    and the ``XADD``s issued in one turn of the event loop sent as one pipeline."""
    client = aioredis.Redis.from_url(args.redis)
    await client.xgroup_create(stream, "bench", "$", mkstream=True)
    running = True
    queued: list[tuple[str, asyncio.Future[None]]] = []

    async def consume() -> None:
        while running:
            response = await client.xreadgroup("bench", "c-1", {stream: ">"}, count=100, block=100)
            for _, entries in response or []:
                for _, fields in entries:
                    payload = json.loads(fields[b"payload"])
                    sink.handled(datetime.fromisoformat(payload["requested_at"]))
                if entries:
                    await client.xack(stream, "bench", *(entry_id for entry_id, _ in entries))

    async def flush() -> None:
        batch = queued[:]
        queued.clear()
        async with client.pipeline(transaction=False) as pipe:
            for payload, _ in batch:
                pipe.xadd(stream, {"payload": payload})
            await pipe.execute()
        for _, future in batch:
            future.set_result(None)

    task = asyncio.create_task(consume())
    flushing: set[asyncio.Task[None]] = set()

    async def publish(n: int) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queued.append((new_event(n).model_dump_json(), future))
        if len(queued) == 1:
            flusher = asyncio.get_running_loop().create_task(flush())
            flushing.add(flusher)
            flusher.add_done_callback(flushing.discard)
        await future

    async def stop() -> None:
        nonlocal running
        running = False
        await task
        await client.delete(stream)
        await client.aclose()

    return publish, stop


async def start_consumer(
    bus: Mediator, transport: RedisTransport, codec: EnvelopeCodec, sink: Sink, **guarantees: Any
) -> Consumer:
    """The legs' consumer of ``orders`` in the group ``bench``, running: ``bus`` hands
    each event to ``sink``; ``guarantees`` are the inbox (and unit of work)."""

    async def on_placed(event: OrderPlaced) -> None:
        sink.handled(event.requested_at)

    bus.subscribe(OrderPlaced, on_placed)
    consumer = Consumer(
        bus, transport, codec, "orders", "bench", name="c-1", batch_size=100, wait=0.1, **guarantees
    )
    await transport.ensure_group("orders", "bench")
    consumer.start()
    return consumer


async def close_transport(transport: RedisTransport, prefix: str) -> None:
    """Delete the leg's keys (everything under ``prefix``), then close ``transport``."""
    keys = [key async for key in transport.client.scan_iter(match=f"{prefix}*", count=1000)]
    for start in range(0, len(keys), 1000):
        await transport.client.delete(*keys[start : start + 1000])
    await transport.close()


async def ours_leg(
    args: argparse.Namespace, stream: str, sink: Sink, *, store_url: str | None = None
) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    prefix = stream + ":"
    transport = RedisTransport.from_url(args.redis, prefix=prefix)
    codec = EnvelopeCodec(MessageRegistry([OrderPlaced]))
    producer = Mediator()
    DirectPublisher(transport, codec, Routes({OrderPlaced: "orders"})).install(producer)

    consumer_bus = Mediator()
    store = recorder = None
    if store_url is not None:
        store = await open_store(store_url)
        recorder = MessageRecorder(store, service="bench").install(consumer_bus)

    consumer = await start_consumer(
        consumer_bus, transport, codec, sink, inbox=RedisInbox(transport)
    )

    async def publish(n: int) -> None:
        await producer.publish(new_event(n))

    async def stop() -> None:
        await consumer.stop()
        if recorder is not None and store is not None:
            await recorder.close()
            await store.close()
        await close_transport(transport, prefix)

    return publish, stop


async def ours_store_leg(
    args: argparse.Namespace, stream: str, sink: Sink
) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    return await ours_leg(args, stream, sink, store_url=args.store)


async def faststream_leg(
    args: argparse.Namespace, stream: str, sink: Sink
) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    from faststream.redis import RedisBroker, StreamSub

    broker = RedisBroker(args.redis, logger=None, max_connections=512)

    @broker.subscriber(stream=StreamSub(stream, group="bench", consumer="c-1", max_records=100))
    async def on_placed(event: dict[str, Any]) -> None:
        sink.handled(datetime.fromisoformat(event["requested_at"]))

    await broker.start()

    async def publish(n: int) -> None:
        await broker.publish(new_event(n).model_dump(mode="json"), stream=stream)

    async def stop() -> None:
        await broker.stop()
        client = aioredis.Redis.from_url(args.redis)
        await client.delete(stream)
        await client.aclose()

    return publish, stop


async def outbox_leg(
    args: argparse.Namespace, stream: str, sink: Sink
) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    """Outbox, relay, Redis, consumer with the transactional inbox, and recording on
    both sides, in a PostgreSQL database made for the run (see the module docs)."""
    import asyncpg

    database, url = await create_database(args.postgres)
    codec = EnvelopeCodec(MessageRegistry([OrderPlaced]))
    transport = RedisTransport.from_url(args.redis, prefix=stream + ":")
    store = await open_store(url)
    producer_pool = await asyncpg.create_pool(url, min_size=2, max_size=20)
    consumer_pool = await asyncpg.create_pool(url, min_size=2, max_size=10)
    outbox = await PostgresOutbox.connect(producer_pool)  # creates the outbox tables

    producer = Mediator()
    producer_recorder = MessageRecorder(store, service="producer").install(producer)
    OutboxWriter(Routes({OrderPlaced: "orders"}), codec).install(producer)
    relay = OutboxRelay(outbox, transport, poll_interval=args.relay_poll)
    relay_task = asyncio.create_task(relay.run())

    consumer_bus = Mediator()
    consumer_recorder = MessageRecorder(store, service="consumer").install(consumer_bus)

    consumer = await start_consumer(
        consumer_bus,
        transport,
        codec,
        sink,
        inbox=TransactionalInbox(),
        unit_of_work=ConnectionUnitOfWork(consumer_pool),
    )

    async def publish(n: int) -> None:
        async with producer_pool.acquire() as connection, connection_transaction(connection):
            await producer.publish(new_event(n))

    async def stop() -> None:
        await consumer.stop()
        relay.stop()
        await relay_task
        await producer_recorder.close()
        await consumer_recorder.close()
        await outbox.close()
        await consumer_pool.close()
        await producer_pool.close()
        await store.close()
        await close_transport(transport, stream + ":")
        await drop_database(args.postgres, database)

    return publish, stop


async def create_database(admin_url: str) -> tuple[str, str]:
    """A database of its own for one leg on the server of ``admin_url``: (name, URL)."""
    import asyncpg

    database = f"bench_outbox_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    return database, admin_url.rsplit("/", 1)[0] + "/" + database


async def drop_database(admin_url: str, database: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


async def pg_floor_leg(
    args: argparse.Namespace, stream: str, sink: Sink
) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    """The PostgreSQL work the outbox leg's guarantees require, and nothing else: per
    event, the producer's transaction with its outbox row, and the consumer's
    transaction with its inbox mark, each on a pooled connection as in ``outbox``
    (same pool sizes, same statements).  An in-process queue stands for the relay and
    the broker; nothing is recorded, and no code of ours runs.  The ``outbox`` leg
    cannot be faster than this."""
    import asyncpg

    from python_cqrs_core.outbox.postgres import _INSERT_ENTRY, _MARK, migrate_outbox

    database, url = await create_database(args.postgres)
    producer_pool = await asyncpg.create_pool(url, min_size=2, max_size=20)
    consumer_pool = await asyncpg.create_pool(url, min_size=2, max_size=10)
    async with producer_pool.acquire() as connection:
        await migrate_outbox(connection)
    queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()

    async def consume() -> None:
        while (item := await queue.get()) is not None:
            message_id, body = item
            async with consumer_pool.acquire() as connection, connection.transaction():
                await connection.fetchval(_MARK, "bench", message_id)
            sink.handled(datetime.fromisoformat(json.loads(body)["requested_at"]))

    workers = [asyncio.create_task(consume()) for _ in range(10)]

    async def publish(n: int) -> None:
        event = new_event(n)
        message_id, body = str(event.request_id), event.model_dump_json()
        headers = json.dumps({"cqrs-message-id": message_id, "cqrs-correlation-id": message_id})
        async with producer_pool.acquire() as connection, connection.transaction():
            await connection.execute(
                _INSERT_ENTRY,
                message_id,
                "bench.OrderPlaced",
                "orders",
                message_id,
                None,
                headers,
                body.encode(),
            )
        queue.put_nowait((message_id, body))

    async def stop() -> None:
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        await consumer_pool.close()
        await producer_pool.close()
        await drop_database(args.postgres, database)

    return publish, stop


LEGS: dict[str, Leg] = {
    "bare": bare_leg,
    "bare-pipelined": bare_pipelined_leg,
    "ours": ours_leg,
    "ours+store": ours_store_leg,
    "faststream": faststream_leg,
    "outbox": outbox_leg,
    "pg-floor": pg_floor_leg,
}


async def throughput(publish: Publish, sink: Sink, events: int, window: int) -> float:
    sink.expect(events)
    started = time.perf_counter()
    for start in range(0, events, window):
        await asyncio.gather(*(publish(n) for n in range(start, min(start + window, events))))
    await asyncio.wait_for(sink.done.wait(), 300)
    return time.perf_counter() - started


async def latency(publish: Publish, sink: Sink, rate: int, seconds: float) -> list[float]:
    """Publish ``rate`` events/s for ``seconds`` s, in ticks of 10 ms."""
    total = int(rate * seconds)
    sink.expect(total)
    tick = 0.01
    per_tick = max(rate * tick, 1.0)
    started = time.perf_counter()
    sent = 0
    pending: set[asyncio.Task[None]] = set()
    while sent < total:
        due = min(int((time.perf_counter() - started) / tick * per_tick) + 1, total)
        while sent < due:
            task = asyncio.create_task(publish(sent))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(tick)
    await asyncio.gather(*pending)
    await asyncio.wait_for(sink.done.wait(), 300)
    return sink.latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def run_leg(name: str, args: argparse.Namespace) -> Figures:
    sink = Sink()
    stream = f"bench:{name}:{secrets.token_hex(4)}"
    publish, stop = await LEGS[name](args, stream, sink)
    try:
        await throughput(publish, sink, min(500, args.events), args.window)  # warm up
        seconds = await throughput(publish, sink, args.events, args.window)
        latencies = await latency(publish, sink, args.rate, args.seconds)
    finally:
        await stop()
    return Figures(
        leg=name,
        events=args.events,
        seconds=round(seconds, 3),
        events_per_second=round(args.events / seconds),
        rate=args.rate,
        latency_p50_ms=round(percentile(latencies, 0.50) * 1000, 2),
        latency_p99_ms=round(percentile(latencies, 0.99) * 1000, 2),
    )


# Where a profiled function's own time is counted: the first fragment of its file's
# path that matches (the package's own modules by subpackage).
AREAS = (
    ("/redis/", "redis-py"),
    ("/hiredis/", "redis-py"),
    ("/asyncpg/", "asyncpg"),
    ("python_cqrs_core/store/", "store (recorder, PostgreSQL store)"),
    ("python_cqrs_core/outbox/", "outbox (writer, relay, inbox)"),
    ("python_cqrs_core/transports/", "transports (Redis transport, consumer)"),
    ("python_cqrs_core/codec", "codec"),
    ("python_cqrs_core/", "core (mediator, messages, context)"),
    ("/pydantic", "pydantic"),
    ("/opentelemetry/", "OpenTelemetry (no SDK)"),
    ("/asyncio/", "asyncio"),
    ("/json/", "json"),
    ("/uuid.py", "uuid"),
)


def area_of(filename: str, function: str) -> str:
    if filename == "~":  # a built-in: tell waiting and socket calls from the rest
        if "epoll" in function or "select" in function:
            return "waiting for the network (epoll)"
        if "socket" in function:
            return "socket send/recv"
        return "other C calls"
    return next((area for fragment, area in AREAS if fragment in filename), "other")


async def profile_leg(name: str, args: argparse.Namespace) -> str:
    """The leg's throughput phase under cProfile: own time by area, then the top
    functions."""
    sink = Sink()
    stream = f"bench:{name}:{secrets.token_hex(4)}"
    publish, stop = await LEGS[name](args, stream, sink)
    profiler = cProfile.Profile()
    try:
        await throughput(publish, sink, min(500, args.events), args.window)  # warm up
        profiler.enable()
        seconds = await throughput(publish, sink, args.events, args.window)
        profiler.disable()
    finally:
        await stop()
    stats = pstats.Stats(profiler)
    by_area: dict[str, float] = {}
    for (filename, _, function), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        area = area_of(filename, function)
        by_area[area] = by_area.get(area, 0.0) + own
    total = sum(by_area.values()) or 1.0
    lines = [f"-- {name}: {args.events} events in {seconds:.2f} s; own time by area"]
    for area, own in sorted(by_area.items(), key=lambda item: -item[1]):
        lines.append(f"  {own / total:6.1%}  {area}")
    buffer = io.StringIO()
    stats.stream = buffer  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(15)
    return "\n".join(lines) + "\n" + buffer.getvalue()


def median_of(runs: list[Figures]) -> Figures:
    """The median of each figure over the runs of one leg (legs run in turns, so a
    burst of load on the shared machine hits every leg)."""
    return Figures(
        leg=runs[0].leg,
        events=runs[0].events,
        seconds=statistics.median(r.seconds for r in runs),
        events_per_second=round(statistics.median(r.events_per_second for r in runs)),
        rate=runs[0].rate,
        latency_p50_ms=round(statistics.median(r.latency_p50_ms for r in runs), 2),
        latency_p99_ms=round(statistics.median(r.latency_p99_ms for r in runs), 2),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=100, help="publishes in flight")
    parser.add_argument("--rate", type=int, default=1000, help="offered events/s")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--store", default=None, help="store URL for the ours+store leg")
    parser.add_argument(
        "--postgres", default=DEFAULT_POSTGRES, help="admin URL of the outbox leg's server"
    )
    parser.add_argument(
        "--relay-poll", type=float, default=0.05, help="the outbox relay's poll interval (s)"
    )
    parser.add_argument(
        "--legs", default="bare,bare-pipelined,ours,ours+store,faststream,outbox,pg-floor"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are shown")
    parser.add_argument("--profile", metavar="LEG", help="profile LEG's throughput phase")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.profile:
        print(asyncio.run(profile_leg(args.profile, args)))
        return
    legs = [leg for leg in args.legs.split(",") if leg != "ours+store" or args.store]
    rounds = [[asyncio.run(run_leg(leg, args)) for leg in legs] for _ in range(args.repeat)]
    results = [median_of([r[i] for r in rounds]) for i in range(len(legs))]
    if args.json:
        json.dump([asdict(r) for r in results], sys.stdout, indent=2)
        print()
        return
    floor = next((r.events_per_second for r in results if r.leg == "bare"), None)
    print(f"{'leg':<15} {'events/s':>9} {'x bare':>7}  {'rate':>5}  {'p50 ms':>7} {'p99 ms':>7}")
    for r in results:
        ratio = f"{r.events_per_second / floor:.2f}" if floor else "-"
        print(
            f"{r.leg:<15} {r.events_per_second:>9} {ratio:>7}  {r.rate:>5}  "
            f"{r.latency_p50_ms:>7} {r.latency_p99_ms:>7}"
        )
    outbox = next((r for r in results if r.leg == "outbox"), None)
    if floor and outbox is not None:
        share = outbox.events_per_second / floor
        verdict = "reaches" if share >= FLOOR else "does NOT reach"
        print(f"outbox: {share:.2f}x the bare loop: {verdict} the {FLOOR}x floor")
    sql = next((r for r in results if r.leg == "pg-floor"), None)
    if floor and sql is not None:
        line = f"pg-floor: {sql.events_per_second / floor:.2f}x the bare loop (the SQL alone)"
        if outbox is not None:
            line += f"; outbox is {outbox.events_per_second / sql.events_per_second:.2f}x of it"
        print(line)


if __name__ == "__main__":
    main()
