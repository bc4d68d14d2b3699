"""lato, used as its README shows, with async handlers.

``lato.Command`` / ``lato.Event`` are pydantic models (``Message`` adds a
``uuid4`` ``id``).  Handlers are plain async functions registered with
``@app.handler(MessageType)``; ``await app.execute_async(cmd)`` opens a
``TransactionContext`` (copies the dependency provider, resolves handler
parameters by name/type) and returns the handler's result.

``chain``: the command handler takes ``ctx: TransactionContext`` (injected)
and ``await ctx.publish_async(event)``; lato runs the event's handler in the
same transaction context.
"""

from __future__ import annotations

import functools

from lato import Application, Command, Event, TransactionContext

from ._common import EMAIL, NAME, RESULT, new_calls

LIBRARY = "lato"
NOTES = (
    "pydantic Command (adds uuid4 id); Application.execute_async, "
    "new TransactionContext per call"
)
CALLS = new_calls()


class CreateUser(Command):
    name: str
    email: str


class RegisterUser(Command):
    name: str
    email: str


class UserRegistered(Event):
    name: str
    email: str


def _app() -> Application:
    app = Application("bench")

    @app.handler(CreateUser)
    async def create_user(command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT

    @app.handler(RegisterUser)
    async def register_user(command: RegisterUser, ctx: TransactionContext) -> int:
        CALLS["chain_command"] += 1
        await ctx.publish_async(UserRegistered(name=command.name, email=command.email))
        return RESULT

    @app.handler(UserRegistered)
    async def on_user_registered(event: UserRegistered) -> None:
        CALLS["chain_event"] += 1

    return app


def construct():
    return functools.partial(CreateUser, name=NAME, email=EMAIL)


async def dispatch_setup():
    app = _app()
    command = CreateUser(name=NAME, email=EMAIL)
    return functools.partial(app.execute_async, command)


async def chain_setup():
    app = _app()
    command = RegisterUser(name=NAME, email=EMAIL)
    return functools.partial(app.execute_async, command)
