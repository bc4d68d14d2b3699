"""``ours`` dispatch + ``python_cqrs_core.integrations.audit.AuditMiddleware``, audit log on.

``AuditMiddleware({CreateUser: "CREATE_USER"}, resource_type="user")`` and the
``python_cqrs_core.integrations.audit`` logger at INFO with a handler that formats every record
and writes nothing (an audit log routed to its own handler, minus the I/O).  Per
dispatch: one audit event built from the message (the guide's schema), serialised
to JSON and logged.  No tracing middleware, so no span event.
"""

from __future__ import annotations

from python_cqrs_core import ICommandHandler
from python_cqrs_core.integrations.audit import AuditMiddleware

from . import _mw
from ._common import RESULT, new_calls
from .ours import CreateUser

LIBRARY = "python-cqrs-core"
NOTES = "ours dispatch + AuditMiddleware, audit logger at INFO to a formatting null handler"
CALLS = new_calls()
LOGGERS_ON = ("python_cqrs_core.audit",)


class CreateUserHandler(ICommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        CALLS["dispatch"] += 1
        return RESULT


async def dispatch_setup():
    _mw.quiet_logger("python_cqrs_core.audit", handler=_mw.FormattingNullHandler())
    audit = AuditMiddleware({CreateUser: "CREATE_USER"}, resource_type="user")
    return _mw.dispatch(CreateUserHandler(), audit)
