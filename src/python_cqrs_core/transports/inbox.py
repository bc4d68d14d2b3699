"""Inboxes that are not transactional: in memory, and in Redis.

An inbox remembers which message ids a consumer group has handled, so that a message
delivered again (a consumer died before its ack, a relay published it twice) is
handled once per group.  The two here are *not* transactional: the consumer checks
them before the handlers run and marks them after the handlers succeeded, so the
window between a handler's last write and the mark is not covered (a crash there
lets the message be handled again).  When the handlers write to the application's
database, use the transactional SQL inbox of the outbox package instead: its mark
commits with the handlers' writes.

::

    consumer = Consumer(bus, transport, codec, "orders.events", "billing",
                        inbox=RedisInbox(transport, ttl=7 * 24 * 3600))
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from ._common import check_name
from .base import Inbox

if TYPE_CHECKING:
    from .redis import RedisTransport

__all__ = ["MemoryInbox", "RedisInbox"]


class MemoryInbox(Inbox):
    """The handled message ids of each group, in this process's memory.

    For tests, and for a single consumer process whose handlers are themselves safe
    to repeat after a restart (the ids are forgotten with the process).

    >>> import asyncio
    >>> from uuid import UUID
    >>> inbox = MemoryInbox()
    >>> message_id = UUID("7d0c1c36-5a0e-4d5e-9d8e-1b2f0f6b6a11")
    >>> asyncio.run(inbox.mark("billing", message_id))
    True
    >>> asyncio.run(inbox.mark("billing", message_id))     # a duplicate
    False
    >>> asyncio.run(inbox.seen("shipping", message_id))
    False
    """

    transactional = False

    def __init__(self) -> None:
        self._handled: dict[str, set[UUID]] = {}

    async def seen(self, group: str, message_id: UUID) -> bool:
        return message_id in self._handled.get(group, ())

    async def mark(self, group: str, message_id: UUID) -> bool:
        handled = self._handled.setdefault(group, set())
        if message_id in handled:
            return False
        handled.add(message_id)
        return True

    def __repr__(self) -> str:
        return f"<MemoryInbox of {sum(map(len, self._handled.values()))} ids>"


class RedisInbox(Inbox):
    """The handled message ids of each group, as Redis keys that expire.

    One key per handled message, ``<prefix>inbox:<group>:<message id>``, set with
    ``SET ... NX PX`` (so :meth:`mark` says whether it was new) and expiring after
    ``ttl`` seconds: a redelivery later than that is handled again, so make ``ttl``
    longer than anything can stay pending, retried or dead-lettered before it is
    replayed (a week by default).  It uses the connection of ``transport``, and its
    prefix unless ``prefix`` is given.
    """

    transactional = False

    def __init__(
        self, transport: RedisTransport, *, ttl: float = 7 * 24 * 3600, prefix: str | None = None
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl}")
        self.transport = transport
        self.ttl = ttl
        self.prefix = transport.prefix if prefix is None else prefix

    def key(self, group: str, message_id: UUID) -> str:
        """The Redis key that remembers ``message_id`` for ``group``."""
        return f"{self.prefix}inbox:{check_name(group, 'group')}:{message_id}"

    async def seen(self, group: str, message_id: UUID) -> bool:
        key = self.key(group, message_id)
        with self.transport._guard("check the inbox of", group):
            return bool(await self.transport._batched(lambda pipe: pipe.exists(key)))

    async def mark(self, group: str, message_id: UUID) -> bool:
        key = self.key(group, message_id)
        expiry = int(self.ttl * 1000)
        with self.transport._guard("mark the inbox of", group):
            created = await self.transport._batched(
                lambda pipe: pipe.set(key, b"1", nx=True, px=expiry)
            )
        return bool(created)

    def __repr__(self) -> str:
        return f"<RedisInbox on {self.transport!r}, ttl={self.ttl:g} s>"
