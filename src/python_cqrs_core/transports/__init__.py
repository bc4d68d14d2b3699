"""Chains across processes: broker transports, consumers and inboxes.

:mod:`.base` defines the interface every transport implements (publish, receive in a
consumer group, ack, retry, dead-letter) and the :class:`~.base.Inbox` that makes a
consumer idempotent.  Each transport lives in its own module and imports its broker's
client only there.
"""

from .base import DeadLetter, Delivery, Inbox, Transport, TransportError
from .routing import Routes

__all__ = ["DeadLetter", "Delivery", "Inbox", "Routes", "Transport", "TransportError"]
