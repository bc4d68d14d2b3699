"""protean, set up as its README Quick Start shows, processed synchronously.

A ``Domain`` with ``command_processing = "sync"`` and
``event_processing = "sync"`` and the default in-memory adapters (memory
repository provider, memory event store, inline broker).  Commands are
``@domain.command(part_of=User)`` classes (protean fields, pydantic
underneath); a ``@domain.command_handler`` with ``@handle(CreateUser)``;
``domain.process(cmd)`` enriches the command with metadata, appends it to
the event store, opens a unit of work and runs the handler.

``chain``: the command handler builds a ``User`` aggregate, which raises a
``UserRegistered`` event (``self.raise_``), and adds it to the repository;
on unit-of-work commit the event is stored and the
``@domain.event_handler`` runs inline.  So protean's chain also persists an
aggregate and two messages to its memory store - extra work the other
peers do not do.

protean is synchronous: the zero-arg callables are ``async def`` wrappers
around ``domain.process``.  The domain context is pushed once at setup (a
long-running process would do the same; protean's FastAPI middleware pushes
one per HTTP request instead).

In-memory store growth: protean's memory provider deep-copies its whole
store when each unit of work opens a session, so per-op cost grows linearly
with the number of messages already stored (about 7 ms/op after 100 commands
vs 1.2 ms/op on an empty store on the reference machine).  To keep figures
independent of how many ops the harness runs, each timed op clears the
memory providers right after ``domain.process`` returns (about 1.5 us,
included in the figure).

This module must NOT use ``from __future__ import annotations``: protean
reads field declarations such as ``name: String(...)`` from the live
annotations.
"""

import functools
import os

# Protean configures structured logging on the root logger at Domain.init()
# unless told not to (run.py also installs a root handler first, which has
# the same effect).  Keep logging uniform across targets: WARNING, no output.
os.environ.setdefault("PROTEAN_NO_AUTO_LOGGING", "1")

from protean import Domain, current_domain, handle
from protean.fields import Identifier, String
from protean.utils.globals import _domain_context_stack

from ._common import EMAIL, NAME, RESULT, new_calls

LIBRARY = "protean"
NOTES = (
    "sync processing, in-memory adapters; process() enriches + appends command to memory "
    "event store + UoW; chain persists aggregate + event; store cleared after each op"
)
CALLS = new_calls()

domain = Domain(
    name="bench",
    config={"command_processing": "sync", "event_processing": "sync"},
)


@domain.aggregate
class User:
    name: String(max_length=100, required=True)
    email: String(max_length=200, required=True)

    def register(self) -> None:
        self.raise_(UserRegistered(user_id=self.id, name=self.name, email=self.email))


@domain.command(part_of=User)
class CreateUser:
    name: String(max_length=100, required=True)
    email: String(max_length=200, required=True)


@domain.command(part_of=User)
class RegisterUser:
    name: String(max_length=100, required=True)
    email: String(max_length=200, required=True)


@domain.event(part_of=User)
class UserRegistered:
    user_id: Identifier(required=True)
    name: String(max_length=100, required=True)
    email: String(max_length=200, required=True)


@domain.command_handler(part_of=User)
class UserCommandHandler:
    @handle(CreateUser)
    def create_user(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT

    @handle(RegisterUser)
    def register_user(self, command: RegisterUser) -> int:
        CALLS["chain_command"] += 1
        user = User(name=command.name, email=command.email)
        user.register()
        current_domain.repository_for(User).add(user)
        return RESULT


@domain.event_handler(part_of=User)
class UserEventHandler:
    @handle(UserRegistered)
    def on_user_registered(self, event: UserRegistered) -> None:
        CALLS["chain_event"] += 1


_initialized = False


def _ensure_domain() -> None:
    """Init the domain once and make sure a domain context is active.

    The context stack is a ContextVar, so run.py keeps every call inside one
    asyncio task.
    """
    global _initialized
    if not _initialized:
        domain.init(traverse=False)
        _initialized = True
    top = _domain_context_stack.top
    if top is None or top.domain is not domain:
        domain.domain_context().push()


def _clear_stores() -> None:
    for provider in domain.providers.values():
        provider._data_reset()


def construct():
    _ensure_domain()
    return functools.partial(CreateUser, name=NAME, email=EMAIL)


def _processor(command):
    process = domain.process
    clear = _clear_stores

    async def op():
        result = process(command)
        clear()
        return result

    return op


async def dispatch_setup():
    _ensure_domain()
    return _processor(CreateUser(name=NAME, email=EMAIL))


async def chain_setup():
    _ensure_domain()
    return _processor(RegisterUser(name=NAME, email=EMAIL))
