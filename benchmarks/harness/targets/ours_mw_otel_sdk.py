"""``ours`` dispatch + ``python_cqrs_core.integrations.otel`` tracing on a real SDK provider.

``instrument(bus, TracerProvider())`` with ``opentelemetry-sdk``'s provider (default
sampler: parent-based always-on), passed explicitly, never set globally: every
dispatch starts, records and ends two spans, the message's (``process CreateUser``:
ids, type, messaging conventions) and its handler's (``handle CreateUserHandler``),
each made current in turn (with the ``correlation.id`` baggage).  No span processor
or exporter, so export costs are not included: add your exporter's, per span.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from python_cqrs_core import ICommandHandler
from python_cqrs_core.integrations.otel import instrument

from . import _mw
from ._common import RESULT, new_calls
from .ours import CreateUser

LIBRARY = "python-cqrs-core"
NOTES = "ours dispatch + otel.instrument(bus, sdk TracerProvider()), always-on, no exporter"
CALLS = new_calls()


class CreateUserHandler(ICommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT


async def dispatch_setup():
    provider = TracerProvider()
    return _mw.dispatch(CreateUserHandler(), configure=lambda bus: instrument(bus, provider))
