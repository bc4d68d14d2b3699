"""``ours`` dispatch + ``python_cqrs_core.integrations.otel`` tracing with no SDK configured.

``instrument(bus)`` with OpenTelemetry's default (proxy, no-op) global tracer
provider: the situation of an application that installs the ``[otel]`` extra but
configures no SDK.  ``instrument`` adds two layers, the message middleware and the
handler middleware; each sees that the global proxy has no SDK behind it (two
attribute reads) and hands back the next step's awaitable, so neither starts a
span nor adds a coroutine of its own.  No target of this run sets a global tracer
provider.
"""

from __future__ import annotations

from python_cqrs_core import ICommandHandler
from python_cqrs_core.integrations.otel import instrument

from . import _mw
from ._common import RESULT, new_calls
from .ours import CreateUser

LIBRARY = "python-cqrs-core"
NOTES = "ours dispatch + otel.instrument(bus), default global (no-op) tracer provider"
CALLS = new_calls()


class CreateUserHandler(ICommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT


async def dispatch_setup():
    return _mw.dispatch(CreateUserHandler(), configure=instrument)
