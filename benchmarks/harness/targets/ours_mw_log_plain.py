"""``ours`` dispatch + one INFO log line per dispatch, *without* correlation fields.

The reference for ``ours_mw_logging``: a middleware logs
``logger.info("handling %s", name)`` to a handler that formats the record with
``CONSOLE``-style format (time, level, logger, message) and writes nothing.  The
difference between the two targets is what ``CorrelationFilter`` adds per line.
"""

from __future__ import annotations

import logging

from python_cqrs_core import ICommandHandler

from . import _mw
from ._common import RESULT, new_calls
from .ours import CreateUser

LIBRARY = "python-cqrs-core"
NOTES = "ours dispatch + middleware logging one INFO line (plain format, no filter)"
CALLS = new_calls()
LOGGER = "bench.log_plain"
LOGGERS_ON = (LOGGER,)


class CreateUserHandler(ICommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT


async def dispatch_setup():
    handler = _mw.FormattingNullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = _mw.quiet_logger(LOGGER, handler=handler)

    async def log_dispatch(message, call_next):
        logger.info("handling %s", type(message).__name__)
        return await call_next(message)

    return _mw.dispatch(CreateUserHandler(), log_dispatch)
