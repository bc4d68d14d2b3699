"""``ours`` dispatch + one INFO log line per dispatch, with correlation fields.

``python_cqrs_core.integrations.logging``: a ``CorrelationFilter`` on the handler and its
``CONSOLE_FORMAT`` (time, level, logger, message, request/correlation/causation ids,
requested_by; trace ids when OpenTelemetry has a recording span), written nowhere.
A middleware logs ``logger.info("handling %s", name)`` inside the dispatch context,
as a handler's own log line would be.  Compare with ``ours_mw_log_plain`` (same
line without the filter) to see what the correlation fields cost.
"""

from __future__ import annotations

import logging

from python_cqrs_core import ICommandHandler
from python_cqrs_core.integrations.logging import CONSOLE_FORMAT, CorrelationFilter

from . import _mw
from ._common import RESULT, new_calls
from .ours import CreateUser

LIBRARY = "python-cqrs-core"
NOTES = "ours dispatch + middleware logging one INFO line, CorrelationFilter + CONSOLE_FORMAT"
CALLS = new_calls()
LOGGER = "bench.log_correlated"
LOGGERS_ON = (LOGGER,)


class CreateUserHandler(ICommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT


async def dispatch_setup():
    handler = _mw.FormattingNullHandler()
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    logger = _mw.quiet_logger(LOGGER, handler=handler)

    async def log_dispatch(message, call_next):
        logger.info("handling %s", type(message).__name__)
        return await call_next(message)

    return _mw.dispatch(CreateUserHandler(), log_dispatch)
