"""Calibration, not a library: the physical floor of a propagating mediator.

What issue 4 calls "a bare dict-lookup mediator with one contextvar set/reset":
``send`` looks the handler up by ``type(cmd)`` in a dict, sets one ``ContextVar``
to the command, awaits ``handler.handle(cmd)`` and resets the variable.  It stamps
nothing, has no middleware, no error handling beyond the ``finally``.  Any mediator
that makes the handled message visible to code running inside the handler (which
propagation needs) pays at least this; compare ``ours`` against it.

Commands are the same frozen pydantic models as ``direct``, so ``construct`` is
not measured here; ``chain`` publishes through the same bare dispatch.
"""

from __future__ import annotations

import functools
from contextvars import ContextVar

from pydantic import BaseModel, ConfigDict

from ._common import EMAIL, NAME, RESULT, new_calls

LIBRARY = "pydantic"
NOTES = "calibration: dict lookup + one ContextVar set/reset around await handler.handle(cmd)"
CALLS = new_calls()

_current: ContextVar[object | None] = ContextVar("bare_current", default=None)


class CreateUser(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    email: str


class RegisterUser(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    email: str


class UserRegistered(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    email: str


class BareMediator:
    def __init__(self) -> None:
        self.handlers: dict[type, object] = {}
        routes = self.handlers
        get, set_, reset = routes.get, _current.set, _current.reset

        async def send(message):
            handler = get(type(message))
            token = set_(message)
            try:
                return await handler.handle(message)
            finally:
                reset(token)

        self.send = send


class CreateUserHandler:
    async def handle(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT


class RegisterUserHandler:
    def __init__(self, bus: BareMediator) -> None:
        self.bus = bus

    async def handle(self, command: RegisterUser) -> int:
        CALLS["chain_command"] += 1
        await self.bus.send(UserRegistered(name=command.name, email=command.email))
        return RESULT


class UserRegisteredHandler:
    async def handle(self, event: UserRegistered) -> None:
        CALLS["chain_event"] += 1


async def dispatch_setup():
    bus = BareMediator()
    bus.handlers[CreateUser] = CreateUserHandler()
    command = CreateUser(name=NAME, email=EMAIL)
    return functools.partial(bus.send, command)


async def chain_setup():
    bus = BareMediator()
    bus.handlers[RegisterUser] = RegisterUserHandler(bus)
    bus.handlers[UserRegistered] = UserRegisteredHandler()
    command = RegisterUser(name=NAME, email=EMAIL)
    return functools.partial(bus.send, command)
