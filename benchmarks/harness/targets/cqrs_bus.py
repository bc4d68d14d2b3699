"""cqrs-bus, used as its README Quick start / Events sections show.

``Command[int]`` / ``Event`` marker bases with ``@dataclass`` fields, a
``CommandHandler`` instance registered on a ``CommandBus`` and
``await bus.dispatch(cmd)`` (uuid4 message id, middleware chain - empty
here - timing, logging calls).

``chain``: the command handler gets the ``EventBus`` injected and
``await event_bus.publish(event)``; ``EventBus.publish`` runs the subscribers
concurrently via ``asyncio.gather`` (one subscriber here).

Note: cqrs-bus 0.3.1 declares ``Requires-Python >=3.14``; it is installed
here with ``--ignore-requires-python`` (it is pure stdlib code and imports and
runs on 3.11) - see requirements-peers.txt.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cqrs_bus import Command, CommandBus, CommandHandler, Event, EventBus, EventHandler

from ._common import EMAIL, NAME, RESULT, new_calls

LIBRARY = "cqrs-bus"
NOTES = (
    "@dataclass Command[int]; CommandBus.dispatch to a registered handler instance; "
    "EventBus.publish (gather)"
)
CALLS = new_calls()


@dataclass
class CreateUser(Command[int]):
    name: str
    email: str


@dataclass
class RegisterUser(Command[int]):
    name: str
    email: str


@dataclass
class UserRegistered(Event):
    name: str
    email: str


class CreateUserHandler(CommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT


class RegisterUserHandler(CommandHandler[RegisterUser, int]):
    def __init__(self, event_bus: EventBus) -> None:
        self.event_bus = event_bus

    async def handle(self, command: RegisterUser) -> int:
        CALLS["chain_command"] += 1
        await self.event_bus.publish(UserRegistered(name=command.name, email=command.email))
        return RESULT


class UserRegisteredHandler(EventHandler[UserRegistered]):
    async def handle(self, event: UserRegistered) -> None:
        CALLS["chain_event"] += 1


def construct():
    return functools.partial(CreateUser, name=NAME, email=EMAIL)


async def dispatch_setup():
    bus = CommandBus()
    bus.register(CreateUser, CreateUserHandler())
    command = CreateUser(name=NAME, email=EMAIL)
    return functools.partial(bus.dispatch, command)


async def chain_setup():
    event_bus = EventBus()
    event_bus.subscribe(UserRegistered, UserRegisteredHandler())
    bus = CommandBus()
    bus.register(RegisterUser, RegisterUserHandler(event_bus=event_bus))
    command = RegisterUser(name=NAME, email=EMAIL)
    return functools.partial(bus.dispatch, command)
