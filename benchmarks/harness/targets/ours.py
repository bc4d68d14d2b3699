"""python-cqrs-core (this repository): messages and the propagating Mediator.

``construct``: a ``BaseCommand`` subclass with ``name``/``email``; the base adds a
uuid4 ``request_id`` (from ``python_cqrs_core.uuid4``'s block generator), a UTC
``requested_at`` and the context lookup that inherits ids inside a handler.

``dispatch``: ``await Mediator().send(cmd)`` of a pre-built command to an
``ICommandHandler`` instance registered with ``bus.register``; propagation on (the
dispatch context is set and reset around the handler), no middleware, no listeners.
The pre-built command is stamped with its correlation id on the first send, so
timed sends find its ids already set, as any re-sent message would.

``chain``: the command handler awaits ``bus.publish(UserRegistered(...))`` built
from the command's fields (so the event inherits correlation id, causation id and
``requested_by`` from the context); one ``IEventHandler`` is subscribed.

Nothing is stored per op.
"""

from __future__ import annotations

import functools

from python_cqrs_core import BaseCommand, BaseEvent, ICommandHandler, IEventHandler, Mediator

from ._common import EMAIL, NAME, RESULT, new_calls

LIBRARY = "python-cqrs-core"
NOTES = (
    "BaseCommand (block uuid4 request_id + utc now); Mediator().send to a registered "
    "ICommandHandler instance, propagation on, no middleware; chain via bus.publish"
)
CALLS = new_calls()


class CreateUser(BaseCommand):
    name: str
    email: str


class RegisterUser(BaseCommand):
    name: str
    email: str


class UserRegistered(BaseEvent):
    name: str
    email: str


class CreateUserHandler(ICommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT


class RegisterUserHandler(ICommandHandler[RegisterUser, int]):
    def __init__(self, bus: Mediator) -> None:
        self.bus = bus

    async def handle(self, command: RegisterUser) -> int:
        CALLS["chain_command"] += 1
        await self.bus.publish(UserRegistered(name=command.name, email=command.email))
        return RESULT


class UserRegisteredHandler(IEventHandler[UserRegistered]):
    async def handle(self, event: UserRegistered) -> None:
        CALLS["chain_event"] += 1


def construct():
    return functools.partial(CreateUser, name=NAME, email=EMAIL)


def dispatch_bus() -> Mediator:
    """The dispatch mediator, also used by the middleware targets (``ours_mw_*``)."""
    bus = Mediator()
    bus.register(CreateUser, CreateUserHandler())
    return bus


def chain_bus() -> Mediator:
    """The chain mediator, also used by ``ours_sqlite`` (which adds the store)."""
    bus = Mediator()
    bus.register(RegisterUser, RegisterUserHandler(bus))
    bus.subscribe(UserRegistered, UserRegisteredHandler())
    return bus


async def dispatch_setup():
    bus = dispatch_bus()
    command = CreateUser(name=NAME, email=EMAIL)
    return functools.partial(bus.send, command)


async def chain_setup():
    bus = chain_bus()
    command = RegisterUser(name=NAME, email=EMAIL)
    return functools.partial(bus.send, command)
