"""python-cqrs-core 0.1.0 (the PyPI release): interfaces and base classes only.

Named ``python_cqrs_core`` in the shared harness.  Here the target is ``pcc_peer``,
the import name ``scripts/bench`` moves the peer to (``rename_peer.py``), because
``python_cqrs_core`` is this repository.

The package ships ``BaseCommand`` (frozen pydantic model that also fills
``request_id``/``correlation_id``/``requested_by``/``requested_at``) and the
``ICommandHandler`` ABC, but no mediator, bus or event mechanism.  Its README
shows the handler being awaited directly, so ``dispatch`` is
``await handler.handle(cmd)`` through an ``ICommandHandler`` subclass and
``chain`` is not available.
"""

from __future__ import annotations

import functools

# python-cqrs-core 0.1.0, moved to this import name by rename_peer.py
from pcc_peer import BaseCommand, ICommandHandler
from pcc_peer._peer_version import VERSION as PEER_VERSION

from ._common import EMAIL, NAME, RESULT, new_calls

LIBRARY = "python-cqrs-core"
VERSION = PEER_VERSION  # the distribution name now belongs to this repository
NOTES = "BaseCommand (adds uuid4 request_id + utc now); no bus: handler awaited directly"
CALLS = new_calls()


class CreateUser(BaseCommand):
    name: str
    email: str


class CreateUserHandler(ICommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT


def construct():
    return functools.partial(CreateUser, name=NAME, email=EMAIL)


async def dispatch_setup():
    handler = CreateUserHandler()
    command = CreateUser(name=NAME, email=EMAIL)
    return functools.partial(handler.handle, command)


async def chain_setup():
    return None  # no event publishing in the package
