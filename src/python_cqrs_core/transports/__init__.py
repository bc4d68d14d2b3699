"""Chains across processes: broker transports, consumers and inboxes.

:mod:`.base` defines the interface every transport implements (publish, receive in a
consumer group, ack, retry, dead-letter) and the :class:`~.base.Inbox` that makes a
consumer idempotent.  Each transport lives in its own module and imports its broker's
client only there: :class:`MemoryTransport` here, ``RedisTransport`` in
:mod:`python_cqrs_core.transports.redis` (the ``[redis]`` extra).

- :class:`Consumer` receives, decodes, dispatches through the bus (the message
  becomes the parent of what its handlers dispatch), acknowledges, retries with
  :class:`Backoff` and dead-letters; it tells listeners what it did
  (:class:`DeliveryEvent`);
- :class:`MemoryInbox` and :class:`RedisInbox` make it handle a redelivered message
  once per group;
- :class:`DirectPublisher` publishes routed messages right after their local dispatch
  (:class:`Routes` says which, and where).
"""

from .base import DeadLetter, Delivery, Inbox, Transport, TransportError
from .consumer import (
    Backoff,
    Consumer,
    DeliveryEvent,
    DeliveryListener,
    UnitOfWork,
    current_delivery,
)
from .inbox import MemoryInbox, RedisInbox
from .memory import MemoryTransport
from .publisher import DirectPublisher
from .routing import Routes

__all__ = [
    "Backoff",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "DeliveryEvent",
    "DeliveryListener",
    "DirectPublisher",
    "Inbox",
    "MemoryInbox",
    "MemoryTransport",
    "RedisInbox",
    "Routes",
    "Transport",
    "TransportError",
    "UnitOfWork",
    "current_delivery",
]
