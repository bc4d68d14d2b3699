"""``ours`` dispatch + ``python_cqrs_core.integrations.sentry.SentryMiddleware``, Sentry active.

``sentry_sdk.init`` with a DSN and a ``Transport`` subclass that sends nothing (no
network), and with Sentry's default and auto-enabling integrations off, so that only
the middleware is measured (the logging integration would otherwise hook every log
record of the process, including the logging target's).  Per dispatch: a forked
scope with five tags and the ``command`` context.  The handler never fails, so
nothing is captured.
"""

from __future__ import annotations

import contextvars
import logging

import sentry_sdk
from sentry_sdk.transport import Transport

from python_cqrs_core import ICommandHandler
from python_cqrs_core.integrations.sentry import SentryMiddleware

from . import _mw
from ._common import RESULT, new_calls
from .ours import CreateUser

LIBRARY = "python-cqrs-core"
NOTES = "ours dispatch + SentryMiddleware, sentry_sdk.init with a no-network transport"
CALLS = new_calls()


class NoNetworkTransport(Transport):
    def capture_envelope(self, envelope) -> None:
        pass


class CreateUserHandler(ICommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT


async def dispatch_setup():
    # In a copy of the context: init sets four of Sentry's ContextVars, and a bigger
    # context makes every ContextVar.set of every other target in this process
    # slower.  The client lives on Sentry's global scope, so dispatch still sees it.
    contextvars.copy_context().run(
        sentry_sdk.init,
        dsn="https://public@sentry.invalid/1",
        transport=NoNetworkTransport,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    assert sentry_sdk.get_client().is_active()
    # sentry_sdk.init sets its "sentry_sdk.errors" logger to DEBUG; harness policy is
    # WARNING for every library (python_cqrs' target does the same for its logger).
    logging.getLogger("sentry_sdk.errors").setLevel(logging.WARNING)
    return _mw.dispatch(CreateUserHandler(), SentryMiddleware())
