"""``ours`` dispatch + ``python_cqrs_core.integrations.prometheus.PrometheusMiddleware``.

On a fresh ``CollectorRegistry``: per dispatch one queue-delay observation, one
duration observation and one counter increment (label children cached).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from python_cqrs_core import ICommandHandler
from python_cqrs_core.integrations.prometheus import PrometheusMiddleware

from . import _mw
from ._common import RESULT, new_calls
from .ours import CreateUser

LIBRARY = "python-cqrs-core"
NOTES = "ours dispatch + PrometheusMiddleware(CollectorRegistry())"
CALLS = new_calls()


class CreateUserHandler(ICommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT


async def dispatch_setup():
    return _mw.dispatch(CreateUserHandler(), PrometheusMiddleware(CollectorRegistry()))
