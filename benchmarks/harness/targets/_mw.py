"""Shared setup of the ``ours_mw_*`` targets (a ``_`` module: not a target itself).

Every middleware target measures ``ours``' dispatch (``Mediator().send`` of a
pre-built ``CreateUser`` to a handler returning 42) with one middleware added, so
``benchmarks/run.py`` reports each one's cost as the per-round difference from
``ours``.  Each target module keeps its own handler and ``CALLS`` (the harness
checks counters per module).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from python_cqrs_core import Mediator

from ._common import EMAIL, NAME
from .ours import CreateUser


class FormattingNullHandler(logging.Handler):
    """A handler that formats every record, as a real one does, and writes nothing.

    What a production handler costs minus the I/O: filters run, the formatter builds
    the line (asctime, message, correlation fields), the line is dropped.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


def quiet_logger(name: str, *, handler: logging.Handler) -> logging.Logger:
    """Logger ``name`` at INFO with ``handler`` only (not propagating to the root)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.handlers[:] = [handler]
    return logger


def dispatch(handler: object, *middleware: Any, configure: Callable[[Mediator], Any] | None = None):
    """``partial(bus.send, command)`` on a bus with ``handler`` and ``middleware``."""
    bus = Mediator()
    bus.register(CreateUser, handler)
    for mw in middleware:
        bus.add_middleware(mw)
    if configure is not None:
        configure(bus)
    return functools.partial(bus.send, CreateUser(name=NAME, email=EMAIL))
