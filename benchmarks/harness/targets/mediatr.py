"""mediatr (mediatr_py), used as its README shows.

Requests are plain classes (here subclassing ``GenericQuery[int]`` for the
typed result, as in the README's "generic typing support" section); an async
function handler is registered with ``@Mediator.handler`` (the handler's
request type is read from its first parameter's annotation, so this module
must NOT use ``from __future__ import annotations``), and
``await Mediator().send_async(request)`` looks the handler up, collects the
matching behaviors (none here) and runs the pipeline.

mediatr has no notifications/events, so ``chain`` is not available.
"""

import functools

from mediatr import GenericQuery, Mediator

from ._common import EMAIL, NAME, RESULT, new_calls

LIBRARY = "mediatr"
NOTES = (
    "plain class (GenericQuery[int]) request; "
    "Mediator().send_async to an async function handler"
)
CALLS = new_calls()


class CreateUser(GenericQuery[int]):
    def __init__(self, name: str, email: str) -> None:
        self.name = name
        self.email = email


@Mediator.handler
async def create_user_handler(request: CreateUser) -> int:
    CALLS["dispatch"] += 1
    return RESULT


def construct():
    return functools.partial(CreateUser, name=NAME, email=EMAIL)


async def dispatch_setup():
    mediator = Mediator()
    command = CreateUser(name=NAME, email=EMAIL)
    return functools.partial(mediator.send_async, command)


async def chain_setup():
    return None  # no notification / event publishing in mediatr 1.3.2
