"""A real Sentry client whose events stay in memory: for tests, never any network."""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

DSN = "http://public@127.0.0.1:1/1"  # never contacted: the transport below captures


class CapturingTransport(Transport):
    """Keeps every event sent to Sentry in memory."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.events: list[dict[str, Any]] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        event = envelope.get_event()
        if event is not None:
            self.events.append(event)


def init_sentry(**options: Any) -> CapturingTransport:
    """``sentry_sdk.init`` with a :class:`CapturingTransport` and no default integrations."""
    transport = CapturingTransport()
    sentry_sdk.init(dsn=DSN, transport=transport, default_integrations=False, **options)
    return transport


def close_sentry() -> None:
    """Back to Sentry's inactive client, as if ``sentry_sdk.init`` was never called."""
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
