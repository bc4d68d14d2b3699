"""python-cqrs-core's chain, recorded durably in the embedded SQLite store.

The ``ours`` chain (command handler publishes one event, one subscriber) with
``MessageRecorder(await open_store("sqlite:///<tmpdir>/bench.db")).install(bus)``:
both messages become records (ids, payload JSON, handler outcome, duration) and
the send returns only once the writer thread has committed them (``durability=
"sync"``, the default; SQLite in WAL mode with ``synchronous=NORMAL``, the store's
default: a commit survives a crash of the process, not a power loss).  Compare with
protean's chain, which persists into its in-memory store.

One difference from the other targets: each op builds a new command
(``RegisterUser(name=..., email=...)``, ~2 us, included) instead of re-sending one
pre-built command, because a store keeps one record per message id: re-sending one
message would be a duplicate-key error, and is not what an application does.

The store grows by two records per op and is never cleared: its per-op cost must
not grow with it (``benchmarks/run.py`` compares the first and last rounds).  The
database lives in a temporary directory removed at exit.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from python_cqrs_core import ICommandHandler, IEventHandler, Mediator
from python_cqrs_core.store import MessageRecorder, MessageStore, open_store
from python_cqrs_core.store.recorder import Durability

from ._common import EMAIL, NAME, RESULT, new_calls
from .ours import RegisterUser, UserRegistered

LIBRARY = "python-cqrs-core"
NOTES = (
    "ours chain + MessageRecorder on sqlite:/// (WAL, durability=sync: commit before "
    "return); new command per op (one record per message id); store never cleared"
)
CALLS = new_calls()


class RegisterUserHandler(ICommandHandler[RegisterUser, int]):
    # Counters passed in: ours_sqlite_async reuses these classes with its own CALLS.
    def __init__(self, bus: Mediator, calls: dict[str, int]) -> None:
        self.bus = bus
        self.calls = calls

    async def handle(self, command: RegisterUser) -> int:
        self.calls["chain_command"] += 1
        await self.bus.publish(UserRegistered(name=command.name, email=command.email))
        return RESULT


class UserRegisteredHandler(IEventHandler[UserRegistered]):
    def __init__(self, calls: dict[str, int]) -> None:
        self.calls = calls

    async def handle(self, event: UserRegistered) -> None:
        self.calls["chain_event"] += 1


async def temporary_store() -> MessageStore:
    """A new SQLite store in a temporary directory (removed at exit)."""
    directory = Path(tempfile.mkdtemp(prefix="cqrs-bench-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return await open_store(f"sqlite:///{directory / 'bench.db'}")


def recorded_chain(
    store: MessageStore, calls: dict[str, int], durability: Durability = "sync"
) -> tuple[Mediator, MessageRecorder]:
    """The ``ours`` chain on a new bus, recorded into ``store``."""
    bus = Mediator()
    bus.register(RegisterUser, RegisterUserHandler(bus, calls))
    bus.subscribe(UserRegistered, UserRegisteredHandler(calls))
    return bus, MessageRecorder(store, durability=durability).install(bus)


async def chain_setup():
    bus, _ = recorded_chain(await temporary_store(), CALLS)
    send = bus.send

    async def op():
        return await send(RegisterUser(name=NAME, email=EMAIL))

    return op
