"""Where the time goes in ``ours``' construct and dispatch: steps timed one by one,
then cProfile.

    .bench-venv/bin/python benchmarks/profile_ours.py [--ops N] [--no-cprofile]

Each step is a tight loop of ``N`` calls timed with ``perf_counter_ns``, best of
seven repeats (the least disturbed by other processes), minus the cost of the same
loop calling a no-op of the same shape; so a row is what the step itself costs.
Steps overlap (the full construct contains the id and the timestamp), so rows do not
add up exactly: they show the order of magnitude of every piece.

Run in ``.bench-venv`` to include the python-cqrs-core 0.1.0 peer (``pcc_peer``);
in the development ``.venv`` that row is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import cProfile
import functools
import io
import pstats
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

sys.path.insert(0, str(Path(__file__).resolve().parent / "harness"))

from targets import ours
from targets._common import EMAIL, NAME

from python_cqrs_core import _ids, context, mediator

perf_ns = time.perf_counter_ns


def best_sync(fn: Callable[[], Any], n: int, repeat: int = 7) -> float:
    """Best-of-``repeat`` ns per call of ``fn`` in a plain loop."""
    rng = range(n)
    runs = []
    for _ in range(repeat):
        t0 = perf_ns()
        for _ in rng:
            fn()
        runs.append((perf_ns() - t0) / n)
    return min(runs)


async def best_async(fn: Callable[[], Any], n: int, repeat: int = 7) -> float:
    rng = range(n)
    runs = []
    for _ in range(repeat):
        t0 = perf_ns()
        for _ in rng:
            await fn()
        runs.append((perf_ns() - t0) / n)
    return min(runs)


class Plain(BaseModel):
    """A frozen pydantic model with the two business fields and nothing else."""

    model_config = ConfigDict(frozen=True)
    name: str
    email: str


class PlainTracing(BaseModel):
    """The same plus the five tracing fields, all passed in (no factories, no context)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    request_id: uuid.UUID
    correlation_id: uuid.UUID | str | None = None
    causation_id: uuid.UUID | str | None = None
    requested_by: str | None = None
    requested_at: datetime
    name: str
    email: str


def construct_rows(n: int) -> list[tuple[str, float]]:
    noop = best_sync(int, n)  # a C call returning at once: the loop's own cost
    now = functools.partial(datetime.now, UTC)
    rid, at = uuid.uuid4(), now()
    full = ours.construct()
    validator = ours.CreateUser.__pydantic_validator__
    fields = {"name": NAME, "email": EMAIL, "request_id": rid, "requested_at": at}
    rows = [
        ("loop overhead (subtracted below)", noop),
        ("uuid.uuid4() (stdlib: os.urandom per id)", best_sync(uuid.uuid4, n) - noop),
        ("python_cqrs_core.uuid4() (block of 512)", best_sync(_ids.uuid4, n) - noop),
        ("datetime.now(UTC)", best_sync(now, n) - noop),
        ("context lookup (_trace.get())", best_sync(context._trace.get, n) - noop),
        (
            "frozen pydantic model, 2 str fields",
            best_sync(functools.partial(Plain, name=NAME, email=EMAIL), n) - noop,
        ),
        (
            "same + 5 tracing fields, all given",
            best_sync(
                functools.partial(
                    PlainTracing, name=NAME, email=EMAIL, request_id=rid, requested_at=at
                ),
                n,
            )
            - noop,
        ),
        (
            "validate_python(ids given) into a new CreateUser",
            best_sync(
                lambda: validator.validate_python(
                    fields, self_instance=object.__new__(ours.CreateUser)
                ),
                n,
            )
            - noop,
        ),
        ("CreateUser(name=, email=) (ours, full)", best_sync(full, n) - noop),
    ]
    # The chain's event: built inside a handler it inherits correlation, causation.
    event = functools.partial(ours.UserRegistered, name=NAME, email=EMAIL)
    rows.append(("UserRegistered(...) outside any handler", best_sync(event, n) - noop))
    parent = ours.RegisterUser(name=NAME, email=EMAIL)
    parent.__dict__["correlation_id"] = parent.request_id  # as the mediator stamps it
    token = context._trace.set(parent)
    try:
        rows.append(
            ("UserRegistered(...) inside a handler (inherits ids)", best_sync(event, n) - noop)
        )
    finally:
        context._trace.reset(token)
    try:
        from targets import pcc_peer  # needs the renamed 0.1.0 peer (.bench-venv)

        rows.append(
            ("python-cqrs-core 0.1.0 BaseCommand (peer)", best_sync(pcc_peer.construct(), n) - noop)
        )
    except ImportError:
        pass
    return rows


async def dispatch_rows(n: int) -> list[tuple[str, float]]:
    async def anoop() -> int:
        return 42

    noop = await best_async(anoop, n)
    handler = ours.CreateUserHandler()
    command = ours.CreateUser(name=NAME, email=EMAIL)
    bus = ours.dispatch_bus()
    await bus.send(command)  # compile the route, stamp the command's ids
    routes = bus._routes[0]
    trace = context._trace

    def lookup() -> Any:
        return routes.get(type(command))

    def set_reset() -> None:
        trace.reset(trace.set(command))

    def stamping_checks() -> bool:
        # What dispatch() reads before deciding whether to stamp.
        frame = trace.get()
        return frame is None and command.correlation_id is None

    async def bare_send() -> Any:
        route = routes.get(type(command))
        token = trace.set(command)
        try:
            return await route(command)
        finally:
            trace.reset(token)

    handle = functools.partial(handler.handle, command)
    send = functools.partial(bus.send, command)
    sync_noop = best_sync(int, n)
    return [
        ("async loop overhead (subtracted below)", noop),
        ("await handler.handle(cmd) (= direct)", await best_async(handle, n) - noop),
        ("route lookup routes.get(type(cmd))", best_sync(lookup, n) - sync_noop),
        ("ContextVar set + reset", best_sync(set_reset, n) - sync_noop),
        ("stamping checks (frame, correlation_id)", best_sync(stamping_checks, n) - sync_noop),
        ("bare send: lookup + set/reset + route", await best_async(bare_send, n) - noop),
        ("bus.send(cmd) (ours, full)", await best_async(send, n) - noop),
    ]


def _ns(ns: float) -> str:
    # A step cheaper than the no-op the loop was calibrated with shows as "~0".
    return f"{ns:>8.0f}" if ns >= 5 else f"{'~0':>8}"


def context_size_rows(n: int) -> list[tuple[str, float]]:
    """``ContextVar`` set + reset with ``k`` other variables set in the context."""

    def measure(k: int) -> float:
        for i in range(k):
            contextvars.ContextVar(f"other_{i}").set(i)
        var = contextvars.ContextVar("measured")
        return best_sync(lambda: var.reset(var.set(1)), n) - best_sync(lambda: None, n)

    return [
        (f"set + reset, {k} other variables in the context", contextvars.Context().run(measure, k))
        for k in (0, 1, 3, 10, 30)
    ]


def profile(label: str, stmt: Callable[[], Any], top: int = 12) -> str:
    prof = cProfile.Profile()
    prof.enable()
    stmt()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    return f"-- cProfile: {label} (sorted by own time)\n" + buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=int, default=100_000, help="calls per timed loop")
    p.add_argument("--no-cprofile", action="store_true")
    args = p.parse_args(argv)
    n = args.ops

    print(f"== construct: ns per call (best of 7 x {n:,}, loop overhead subtracted)")
    for label, ns in construct_rows(n):
        print(f"  {label:<52} {_ns(ns)}")
    print()
    print(f"== dispatch: ns per call (best of 7 x {n:,}, loop overhead subtracted)")
    for label, ns in asyncio.run(dispatch_rows(n)):
        print(f"  {label:<52} {_ns(ns)}")

    print()
    print("== ContextVar cost against the size of the context (lambda overhead subtracted)")
    for label, ns in context_size_rows(n):
        print(f"  {label:<52} {_ns(ns)}")

    if not args.no_cprofile:
        construct = ours.construct()
        print()
        print(profile("construct x 100k", lambda: [construct() for _ in range(100_000)]))

        async def sends() -> None:
            bus = ours.dispatch_bus()
            command = ours.CreateUser(name=NAME, email=EMAIL)
            send = functools.partial(bus.send, command)
            for _ in range(100_000):
                await send()

        print(profile("dispatch x 100k", lambda: asyncio.run(sends())))
    print(f"(mediator module: {mediator.__file__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
