"""What recording costs: a chain recorded by ``MessageRecorder``, paired with the same
chain unrecorded, and recording into a store of 1M records paired with an empty one.

    .venv/bin/python benchmarks/recording_bench.py                  # ~2 min the first time
    .venv/bin/python benchmarks/recording_bench.py --rounds 30 --json out.json
    .venv/bin/python benchmarks/recording_bench.py --profile memory # cProfile one job

One op is **100 chains in flight**: 100 ``bus.send(CreateUser(...))`` gathered, each
command's handler publishing one ``UserCreated`` event to one subscriber; a chain is
therefore two messages (two records).  Commands are built inside the op (a store
keeps one record per message id, so a message is dispatched once, as in an
application).  Four jobs, each with its own bus:

- ``unrecorded``: no recorder (the reference);
- ``memory``: ``MessageRecorder`` on ``memory://``;
- ``sqlite``: ``MessageRecorder`` on a new SQLite store, ``durability="sync"`` (every
  ``send`` returns after its chain is committed; concurrent chains share commits);
- ``sqlite_1m``: the same on an SQLite store that already holds 1,000,000 records
  (chains of the same shape, random uuid4 ids);
- ``sqlite_v7`` and ``sqlite_1m_v7``: the last two with messages that mix in
  ``TimeOrderedIds`` (UUIDv7 ``request_id``s, an option; the 1M store filled with
  time-ordered ids too), to show what the option buys.  It is built once, fast (rows
  inserted without indexes, indexes built afterwards, as ``CREATE INDEX`` sorts),
  and cached under ``--data-dir`` (default ``/tmp/cqrs-store-bench``, outside the
  repository), per schema version; each run copies nothing and appends to it.

The method is the harness's (``benchmarks/harness/README.md``): one process, one
event loop; each round times one batch of every job, starting one job later each
round, with ``gc.collect()`` then ``gc.freeze()`` before each batch (not timed:
objects alive then, such as the records the memory store holds, are not scanned
again by the collections of the batch, so no job pays for what another keeps); a
ratio is the median
over rounds of (this job's time per chain / the reference's, *same round*), which
cancels the machine's drift.  Printed: us per chain (median over rounds) and the
paired ratios ``memory / unrecorded``, ``sqlite / unrecorded`` and
``sqlite_1m / sqlite`` (and ``sqlite_1m_v7 / sqlite_v7``), with their targets (3x, 6x,
1.25x).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from python_cqrs_core import BaseCommand, BaseEvent, Mediator, TimeOrderedIds, uuid4, uuid7
from python_cqrs_core.store import (
    HandlerOutcome,
    MessageRecord,
    MessageRecorder,
    MessageStore,
    open_store,
)
from python_cqrs_core.store.columns import SQLITE, RowWriter
from python_cqrs_core.store.migrations import LATEST_VERSION

IN_FLIGHT = 100
FILL = 1_000_000
TARGETS = {"memory": 3.0, "sqlite": 6.0, "sqlite_1m": 1.25, "sqlite_1m_v7": 1.25}


class CreateUser(BaseCommand):
    __message_type__ = "bench.CreateUser"
    name: str
    email: str


class UserCreated(BaseEvent):
    __message_type__ = "bench.UserCreated"
    name: str
    email: str


class CreateUserV7(TimeOrderedIds, BaseCommand):
    __message_type__ = "bench.CreateUserV7"
    name: str
    email: str


class UserCreatedV7(TimeOrderedIds, BaseEvent):
    __message_type__ = "bench.UserCreatedV7"
    name: str
    email: str


Op = Callable[[], Awaitable[Any]]


def chain_bus(
    store: MessageStore | None, *, time_ordered: bool = False
) -> tuple[Op, MessageRecorder | None]:
    """One op of a job: ``IN_FLIGHT`` chains in flight on a bus of its own."""
    bus = Mediator()
    command_type, event_type = (
        (CreateUserV7, UserCreatedV7) if time_ordered else (CreateUser, UserCreated)
    )

    async def create(command: CreateUser) -> int:
        await bus.publish(event_type(name=command.name, email=command.email))
        return 42

    async def created(event: UserCreated) -> None:
        return None

    bus.register(command_type, create)
    bus.subscribe(event_type, created)
    recorder = None if store is None else MessageRecorder(store).install(bus)
    send, gather = bus.send, asyncio.gather

    async def op() -> None:
        await gather(
            *[send(command_type(name="Ada", email="ada@example.com")) for _ in range(IN_FLIGHT)]
        )

    return op, recorder


# -- the 1M-record store ---------------------------------------------------------------


def filler_chain(now: datetime, new_id: Callable[[], UUID] = uuid4) -> list[MessageRecord]:
    """Two records shaped like the benchmark's chain, with fresh ids (uuid4 by default)."""
    command_id, event_id = new_id(), new_id()
    payload = {"name": "Ada", "email": "ada@example.com"}
    command = MessageRecord(
        command_id, "command", "bench.CreateUser", str(command_id), None, None, now, now,
        payload, "succeeded", (HandlerOutcome("create", "succeeded", 0.02),), None, None,
        0.05, {},
    )  # fmt: skip
    event = MessageRecord(
        event_id, "event", "bench.UserCreated", str(command_id), str(command_id), None, now,
        now, payload, "succeeded", (HandlerOutcome("created", "succeeded", 0.01),), None,
        None, 0.02, {},
    )  # fmt: skip
    return [command, event]


async def filled_store(data_dir: Path, size: int, *, time_ordered: bool = False) -> str:
    """The URL of an SQLite store holding ``size`` records (built once, cached)."""
    kind = "-uuid7" if time_ordered else ""
    new_id = uuid7 if time_ordered else uuid4
    path = data_dir / f"recording-{size}{kind}-v{LATEST_VERSION}.db"
    url = f"sqlite:///{path}"
    if path.exists():
        return url
    started = time.perf_counter()
    building = path.with_suffix(".building")
    remove_database(building)
    async with await open_store(f"sqlite:///{building}") as store:
        # One real append: the backend encodes the rows, and writes the opening flags.
        await store.append(filler_chain(datetime.now(UTC), new_id))
    writer = RowWriter(SQLITE)  # the store's own encoding of records into rows
    insert = (
        f"INSERT INTO cqrs_messages ({', '.join(writer.names)}, opens_correlation) "
        f"VALUES ({', '.join('?' for _ in writer.names)}, ?)"
    )
    conn = sqlite3.connect(building, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA journal_mode=OFF")
    indexes = [
        sql
        for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cqrs_messages' "
            "AND sql IS NOT NULL"
        )
    ]
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'cqrs_messages' "
        "AND sql IS NOT NULL"
    ).fetchall():
        conn.execute(f'DROP INDEX "{name}"')
    now = datetime.now(UTC)
    conn.execute("BEGIN")
    written = 2
    while written < size:
        rows = []
        for _ in range(min(50_000, size - written) // 2):
            command, event = writer.rows(filler_chain(now, new_id))
            command.append(1)  # opens its correlation
            event.append(0)
            rows += (command, event)
        conn.executemany(insert, rows)
        written += len(rows)
    conn.execute("COMMIT")
    for sql in indexes:
        conn.execute(sql)
    # No ANALYZE: a store in service never runs one either.
    conn.close()
    building.replace(path)
    print(f"  built {path} ({size:,} records) in {time.perf_counter() - started:.0f} s")
    return url


def remove_database(path: Path) -> None:
    """Remove an SQLite database and its WAL companions."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


# -- rounds ----------------------------------------------------------------------------


async def measure(jobs: dict[str, Op], rounds: int, ops: int) -> dict[str, list[float]]:
    """ns per chain of every job, one batch per round, round-robin, paired by round."""
    names = list(jobs)
    for op in jobs.values():  # warm up
        for _ in range(3):
            await op()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            op = jobs[name]
            gc.collect()
            # What every job keeps (the memory store's records above all) is left out
            # of the collections of the next batch, so that no job pays for the
            # objects another job keeps; the batch's own garbage is collected as usual.
            gc.freeze()
            start = time.perf_counter_ns()
            for _ in range(ops):
                await op()
            samples[name].append((time.perf_counter_ns() - start) / (ops * IN_FLIGHT))
    return samples


def paired(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--ops", type=int, default=10, help="ops (of 100 chains) per batch")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cqrs-store-bench"))
    parser.add_argument("--fill", type=int, default=FILL, help="records of the filled store")
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument(
        "--profile",
        choices=["unrecorded", "memory", "sqlite", "sqlite_1m", "sqlite_v7", "sqlite_1m_v7"],
        help="instead of the rounds, cProfile 30 ops of one job and print the top",
    )
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    filled_url = await filled_store(args.data_dir, args.fill)
    filled_v7_url = await filled_store(args.data_dir, args.fill, time_ordered=True)
    empty_path = args.data_dir / f"recording-empty-{os.getpid()}.db"
    empty_v7_path = args.data_dir / f"recording-empty-uuid7-{os.getpid()}.db"
    stores = [
        await open_store("memory://"),
        await open_store(f"sqlite:///{empty_path}"),
        await open_store(filled_url),
        await open_store(f"sqlite:///{empty_v7_path}"),
        await open_store(filled_v7_url),
    ]
    jobs_and_recorders = {
        "unrecorded": chain_bus(None),
        "memory": chain_bus(stores[0]),
        "sqlite": chain_bus(stores[1]),
        "sqlite_1m": chain_bus(stores[2]),
        "sqlite_v7": chain_bus(stores[3], time_ordered=True),
        "sqlite_1m_v7": chain_bus(stores[4], time_ordered=True),
    }
    jobs = {name: op for name, (op, _) in jobs_and_recorders.items()}
    try:
        if args.profile:
            op = jobs[args.profile]
            for _ in range(3):
                await op()
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(30):
                await op()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return 0
        samples = await measure(jobs, args.rounds, args.ops)
    finally:
        for _, recorder in jobs_and_recorders.values():
            if recorder is not None:
                await recorder.close()
        for store in stores:
            await store.close()
        remove_database(empty_path)
        remove_database(empty_v7_path)

    ratios = {
        "memory": paired(samples["memory"], samples["unrecorded"]),
        "sqlite": paired(samples["sqlite"], samples["unrecorded"]),
        "sqlite_1m": paired(samples["sqlite_1m"], samples["sqlite"]),
        "sqlite_1m_v7": paired(samples["sqlite_1m_v7"], samples["sqlite_v7"]),
    }
    print(
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} "
        f"CPUs, load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds of "
        f"{args.ops} x {IN_FLIGHT} chains in flight per job"
    )
    for name, values in samples.items():
        print(f"  {name:<11} {statistics.median(values) / 1000:8.1f} us/chain")
    labels = {
        "memory": "memory:// / unrecorded",
        "sqlite": "SQLite sync / unrecorded",
        "sqlite_1m": f"SQLite {args.fill:,} records / empty",
        "sqlite_1m_v7": "same, TimeOrderedIds (UUIDv7)",
    }
    for name, ratio in ratios.items():
        verdict = "met" if ratio <= TARGETS[name] else "NOT met"
        print(f"  {labels[name]:<34} {ratio:5.2f}x  (target <= {TARGETS[name]}x: {verdict})")
    if args.json:
        args.json.write_text(json.dumps({"samples_ns": samples, "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
