"""The Redis Streams transport, on redis-py's asyncio client (the ``[redis]`` extra).

::

    transport = RedisTransport.from_url("redis://localhost:6379/0", prefix="shop:")
    await transport.publish("orders.events", headers, body)          # XADD

    await transport.ensure_group("orders.events", "billing")         # XGROUP CREATE
    for delivery in await transport.receive("orders.events", "billing", "billing-1"):
        ...                                                          # XREADGROUP
        await transport.ack(delivery)                                # XACK

**Keys.**  A destination ``D`` is the stream ``<prefix>D``; each message is one entry
whose field ``body`` holds the body bytes and whose fields ``h:<name>`` hold the
headers, so both come back exactly as published.  Next to it live, per group ``G``,
``<prefix>D:delayed:G`` (a sorted set of retries by due time) and
``<prefix>D:retry:G`` (a stream of retries that are due, read by ``G`` only), and,
for the whole destination, ``<prefix>D:dlq`` (the dead letters).  Destinations may
not contain ``:retry:`` or ``:delayed:`` nor end in ``:dlq``.

**Guarantees.**

- *Consumer groups*: every group receives every message published after it was
  created; the consumers of one group share them.
- *Ack after success*: a delivery stays in the group's pending entries list until
  :meth:`~RedisTransport.ack`; one a consumer left pending longer than
  ``claim_idle`` seconds (it died) is claimed by the next consumer of the group that
  receives (``XAUTOCLAIM``), with its attempt count increased by the number of times
  it was delivered.
- *Retries with backoff*: :meth:`~RedisTransport.retry` acknowledges the delivery and
  adds the message to the group's sorted set, in one script; once due, a script
  moves it to the group's retry stream, from which only that group reads.
- *Dead letters*: :meth:`~RedisTransport.dead_letter` acknowledges the delivery and
  appends the message with the reason to ``<prefix>D:dlq`` in one script;
  :meth:`~RedisTransport.replay` hands it back to its group and deletes it, in one
  script, so a dead letter is replayed once even by two operators at a time.
- *Trimming*: ``max_length`` (``XADD ... MAXLEN ~ n``) or ``max_age`` seconds
  (``MINID ~``) bound each stream.  An entry trimmed before every group handled it
  is lost for the groups that had not: size them to hold well over the longest lag.
- *Lag*: :meth:`~RedisTransport.lag` adds the group's pending entries, the entries
  it has not read yet (``XINFO GROUPS``), and its retries.

**Connection.**  :meth:`RedisTransport.from_url` takes ``redis://``, ``rediss://`` or
``unix://`` URLs; the transport's ``repr`` and its errors never show the password.
Every failure of Redis (unreachable, restarted, refusing a command) is raised as a
:class:`~python_cqrs_core.transports.TransportError`; the consumer waits and tries
again, so a Redis restart costs time, never a message: a group that vanished with its
stream (a restart without persistence) is created again from the start of the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from ..names import TRANSPORT_LOGGER
from ._common import check_headers, check_name, safe_reason
from .base import DeadLetter, Delivery, Transport, TransportError

__all__ = ["RedisTransport", "StreamKeys", "mask_url"]

logger = logging.getLogger(TRANSPORT_LOGGER)

BODY_FIELD: Final = b"body"
"""The stream field holding a message's body."""
HEADER_FIELD_PREFIX: Final = b"h:"
"""Prefix of the stream fields holding a message's headers (``h:cqrs-message-id``)."""
RETRY_FIELD: Final = b"retry"
"""The field of a retry stream entry: the message, its attempt and its reason."""
_DLQ_REASON: Final = b"dlq:reason"
_DLQ_GROUP: Final = b"dlq:group"
_DLQ_ATTEMPTS: Final = b"dlq:attempts"
_DLQ_DELIVERY: Final = b"dlq:delivery-id"
_DLQ_AT: Final = b"dlq:at"
_RETRY_DELIVERY: Final = "retry:"  # delivery ids of entries of a group's retry stream
_STREAM_ID: Final = re.compile(r"\d{1,20}-\d{1,20}")
_MAX_BLOCK: Final = 5.0  # seconds one XREADGROUP may block (below the socket timeout)
_ENCODING: Final = "utf-8"
_ERRORS: Final = "surrogateescape"  # any bytes on the wire come back as they were

# Moves the retries of a group that are due into its retry stream, atomically.
# KEYS: delayed set, retry stream.  ARGV: now (ms), the most to move.
# Returns {moved, next due (ms) or -1, entries in the retry stream}.
_MOVE_DUE: Final = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'retry', member)
  redis.call('ZREM', KEYS[1], member)
end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2] or '-1'
return {#due, next_due, redis.call('XLEN', KEYS[2])}
"""

# Settles a delivery as a retry: ack it (and drop it from a retry stream) and schedule
# the message, only if this call is the one that settles it.
# KEYS: source stream, delayed set.  ARGV: group, entry id, delete?, due (ms), member.
_RETRY: Final = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[3] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
return 1
"""

# Settles a delivery as a dead letter: ack it (and drop it from a retry stream) and
# append it to the dead-letter stream, only if this call is the one that settles it.
# KEYS: source stream, dead-letter stream.  ARGV: group, entry id, delete?, max length
# ('' for none), then field, value, field, value...
_DEAD_LETTER: Final = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return false end
if ARGV[3] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
local args = {KEYS[2]}
if ARGV[4] ~= '' then
  table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, ARGV[4])
end
table.insert(args, '*')
for i = 5, #ARGV do table.insert(args, ARGV[i]) end
return redis.call('XADD', unpack(args))
"""

# Hands a dead letter back to its group (its retry stream) and deletes it, once.
# KEYS: dead-letter stream, retry stream.  ARGV: dead letter id, retry member, group.
_REPLAY: Final = """
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return false end
pcall(redis.call, 'XGROUP', 'CREATE', KEYS[2], ARGV[3], '0', 'MKSTREAM')
local id = redis.call('XADD', KEYS[2], '*', 'retry', ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[1])
return id
"""


@dataclass(slots=True)
class _GroupState:
    """What one transport remembers about one (destination, group) between receives."""

    next_maintenance: float = 0.0
    next_claim: float = 0.0
    retry_work: bool = True  # retries scheduled or waiting in the retry stream
    next_due: float = float("inf")  # monotonic time the next scheduled retry is due
    claim_cursor: bytes = b"0-0"
    retry_claim_cursor: bytes = b"0-0"


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """The Redis keys of one destination (and of one group's retries)."""

    stream: str
    """The destination's stream: every message published to it."""
    retry: str
    """The group's retry stream: its retries once due, and its replayed dead letters."""
    delayed: str
    """The group's sorted set of retries, scored by the time they are due (ms)."""
    dlq: str
    """The destination's dead-letter stream (every group's)."""


class RedisTransport(Transport):
    """Redis Streams as a :class:`~python_cqrs_core.transports.Transport` (see the
    module documentation).

    ``client`` is a ``redis.asyncio.Redis`` (built with bytes responses, the default;
    its ``socket_timeout``, if any, must exceed 5 s, the longest a receive blocks).
    ``prefix`` is put before every key.  ``claim_idle`` is how long a delivery may
    stay pending before another consumer of its group claims it; ``max_length`` or
    ``max_age`` trim each destination on publish; ``dead_letter_max_length`` bounds
    the dead-letter streams.  ``poll_interval`` is how often a receiving consumer
    moves due retries into its group's retry stream and reads them.
    """

    name = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "",
        claim_idle: float = 30.0,
        max_length: int | None = None,
        max_age: float | None = None,
        dead_letter_max_length: int | None = None,
        poll_interval: float = 0.1,
        owns_client: bool = False,
        display_url: str | None = None,
    ) -> None:
        if not isinstance(prefix, str) or any(c.isspace() or not c.isprintable() for c in prefix):
            raise ValueError("prefix must be printable text without whitespace")
        if claim_idle <= 0:
            raise ValueError(f"claim_idle must be a positive number of seconds, got {claim_idle}")
        if max_length is not None and max_age is not None:
            raise ValueError("trim by max_length or by max_age, not both")
        for option, value in (
            ("max_length", max_length),
            ("dead_letter_max_length", dead_letter_max_length),
        ):
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(f"{option} must be at least 1, got {value!r}")
        if max_age is not None and max_age <= 0:
            raise ValueError(f"max_age must be a positive number of seconds, got {max_age}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self.client = client
        self.prefix = prefix
        self.claim_idle = claim_idle
        self.max_length = max_length
        self.max_age = max_age
        self.dead_letter_max_length = dead_letter_max_length
        self.poll_interval = poll_interval
        self._owns_client = owns_client
        self._display_url = display_url or _describe_client(client)
        self._claim_interval = min(max(claim_idle / 4, poll_interval), 5.0)
        self._groups: dict[tuple[str, str], _GroupState] = {}
        self._ensured: set[tuple[str, str]] = set()
        self._keys: dict[tuple[str, str | None], StreamKeys] = {}
        self._move_due = client.register_script(_MOVE_DUE)
        self._retry_script = client.register_script(_RETRY)
        self._dead_letter_script = client.register_script(_DEAD_LETTER)
        self._replay_script = client.register_script(_REPLAY)
        self._nonce = itertools.count()
        self._pending_commands: list[tuple[Callable[[Pipeline], object], asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self._pending_acks: dict[tuple[str, str], list[tuple[str, asyncio.Future[Any]]]] = {}
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = 10.0,
        socket_connect_timeout: float = 5.0,
        max_connections: int = 64,
        **options: Any,
    ) -> RedisTransport:
        """A transport with its own connection pool to the Redis at ``url``
        (``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS,
        ``unix:///path``); ``options`` are those of the constructor.

        The pool holds up to ``max_connections``; a command that finds them all busy
        (a burst of concurrent deliveries) waits for one, up to ``socket_timeout``.
        It is closed by :meth:`close`.  The URL is only parsed here: nothing
        connects until the first command.
        """
        shown = mask_url(url)
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"not a Redis URL (redis://, rediss:// or unix://): {shown}")
        if socket_timeout <= _MAX_BLOCK:
            raise ValueError(f"socket_timeout must exceed {_MAX_BLOCK} s, the longest block")
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=socket_timeout,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_connect_timeout,
                health_check_interval=30,
            )
        except ValueError as exc:  # redis-py's message may quote the URL: never repeat it
            raise ValueError(f"invalid Redis URL {shown}: {type(exc).__name__}") from None
        return cls(
            aioredis.Redis(connection_pool=pool), owns_client=True, display_url=shown, **options
        )

    def __repr__(self) -> str:
        return f"<RedisTransport {self._display_url} prefix={self.prefix!r}>"

    # -- keys ---------------------------------------------------------------------------

    def keys(self, destination: str, group: str | None = None) -> StreamKeys:
        """The Redis keys of ``destination`` (and of ``group``'s retries), e.g. to
        inspect them with ``redis-cli``; checks both names."""
        cached = self._keys.get((destination, group))
        if cached is not None:
            return cached
        check_name(destination, "destination")
        if ":retry:" in destination or ":delayed:" in destination or destination.endswith(":dlq"):
            raise ValueError(
                f"destination: {destination!r} looks like one of the transport's own keys "
                "(':retry:', ':delayed:' and a ':dlq' ending are reserved)"
            )
        if group is not None:
            check_name(group, "group")
        stream = self.prefix + destination
        keys = StreamKeys(
            stream,
            f"{stream}:retry:{group or ''}",
            f"{stream}:delayed:{group or ''}",
            f"{stream}:dlq",
        )
        self._keys[(destination, group)] = keys
        return keys

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, destination: str, headers: Mapping[str, str], body: bytes) -> str:
        key = self.keys(destination).stream
        check_headers(headers)
        fields = _entry_fields(headers, body)
        trim: dict[str, Any] = {}
        if self.max_length is not None:
            trim = {"maxlen": self.max_length, "approximate": True}
        elif self.max_age is not None:
            trim = {"minid": f"{int((time.time() - self.max_age) * 1000)}-0", "approximate": True}
        with self._guard("publish", destination):
            entry_id = await self._batched(lambda pipe: pipe.xadd(key, fields, **trim))  # type: ignore[arg-type]
        return _text(entry_id)

    # -- consuming ----------------------------------------------------------------------

    async def ensure_group(self, destination: str, group: str) -> None:
        keys = self.keys(destination, group)
        # A group this transport created before and that is gone now was lost with its
        # stream (deleted, or a Redis restart without persistence): what the stream
        # holds now was published after that, so the group takes all of it.
        start = "0" if (destination, group) in self._ensured else "$"
        with self._guard("create the group of", destination):
            await self._create_group(keys.stream, group, start)
            await self._create_group(keys.retry, group, "0")
        self._ensured.add((destination, group))

    async def receive(
        self, destination: str, group: str, consumer: str, *, count: int = 10, wait: float = 1.0
    ) -> list[Delivery]:
        """Up to ``count`` deliveries (see :meth:`Transport.receive
        <python_cqrs_core.transports.Transport.receive>`): first those claimed from
        dead consumers and due retries (checked every ``poll_interval``), then new
        entries, blocking up to ``wait`` seconds for the first."""
        keys = self.keys(destination, group)
        check_name(consumer, "consumer")
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        state = self._groups.setdefault((destination, group), _GroupState())
        deadline = time.monotonic() + max(wait, 0.0)
        with self._guard("receive from", destination):
            while True:
                now = time.monotonic()
                deliveries: list[Delivery] = []
                if now >= state.next_maintenance:
                    deliveries = await self._maintain(destination, group, consumer, count, state)
                    # next time: after poll_interval, or when the next retry is due
                    state.next_maintenance = min(now + self.poll_interval, state.next_due)
                room = count - len(deliveries)
                if room <= 0:
                    return deliveries
                block = 0.0 if deliveries else max(deadline - now, 0.0)
                if state.retry_work:  # wake up for the next maintenance
                    block = min(block, max(state.next_maintenance - now, 0.0))
                block = min(block, _MAX_BLOCK)
                block_ms = max(int(block * 1000), 1) if block > 0 else None
                read = await self._read_group(
                    destination, group, consumer, keys.stream, room, block_ms
                )
                deliveries += [
                    self._delivery(destination, group, entry_id, fields)
                    for entry_id, fields in read
                ]
                if deliveries or time.monotonic() >= deadline:
                    return deliveries

    async def ack(self, delivery: Delivery) -> None:
        keys = self.keys(delivery.destination, delivery.group)
        stream, entry_id, from_retry = _source(keys, delivery.delivery_id)
        with self._guard("acknowledge on", delivery.destination):
            if from_retry:
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.xack(stream, delivery.group, entry_id)
                    pipe.xdel(stream, entry_id)
                    await pipe.execute()
            else:
                await self._ack_soon(stream, delivery.group, entry_id)

    async def retry(self, delivery: Delivery, *, delay: float, reason: str) -> None:
        keys = self.keys(delivery.destination, delivery.group)
        stream, entry_id, from_retry = _source(keys, delivery.delivery_id)
        member = self._retry_member(delivery.headers, delivery.body, delivery.attempt + 1, reason)
        due_ms = int((time.time() + max(delay, 0.0)) * 1000)
        with self._guard("schedule a retry on", delivery.destination):
            await self._retry_script(
                keys=[stream, keys.delayed],
                args=[delivery.group, entry_id, "1" if from_retry else "0", due_ms, member],
            )
        state = self._groups.get((delivery.destination, delivery.group))
        if state is not None:
            state.retry_work = True
            state.next_due = min(state.next_due, time.monotonic() + max(delay, 0.0))

    async def dead_letter(self, delivery: Delivery, *, reason: str) -> None:
        keys = self.keys(delivery.destination, delivery.group)
        stream, entry_id, from_retry = _source(keys, delivery.delivery_id)
        fields: list[bytes | str | int] = []
        for name, value in _entry_fields(delivery.headers, delivery.body).items():
            fields += [name, value]
        fields += [
            _DLQ_REASON,
            safe_reason(reason).encode(_ENCODING),
            _DLQ_GROUP,
            delivery.group,
            _DLQ_ATTEMPTS,
            delivery.attempt,
            _DLQ_DELIVERY,
            delivery.delivery_id,
            _DLQ_AT,
            datetime.now(UTC).isoformat(),
        ]
        maximum = "" if self.dead_letter_max_length is None else self.dead_letter_max_length
        with self._guard("dead-letter on", delivery.destination):
            await self._dead_letter_script(
                keys=[stream, keys.dlq],
                args=[delivery.group, entry_id, "1" if from_retry else "0", maximum, *fields],
            )

    async def dead_letters(
        self, destination: str, *, limit: int = 50, after: str | None = None
    ) -> list[DeadLetter]:
        keys = self.keys(destination)
        start = "-" if after is None else "(" + _stream_id(after, "after")
        if limit < 1:
            return []
        with self._guard("read the dead letters of", destination):
            entries: Any = await self.client.xrange(keys.dlq, start, "+", count=limit)
        return [_dead_letter(destination, entry_id, fields) for entry_id, fields in entries or []]

    async def replay(self, dead_letter: DeadLetter) -> str:
        """Hand a dead letter back to the group that gave up on it (its retry stream:
        other groups of the destination handled it already), unchanged, as a first
        attempt, and delete it from the dead letters; returns the new entry id.
        Raises :class:`LookupError` if it is not (or no longer) a dead letter."""
        keys = self.keys(dead_letter.destination, dead_letter.group)
        entry_id = _stream_id(dead_letter.dead_letter_id, "dead_letter_id")
        member = self._retry_member(dead_letter.headers, dead_letter.body, 1, "replayed")
        with self._guard("replay on", dead_letter.destination):
            replayed = await self._replay_script(
                keys=[keys.dlq, keys.retry], args=[entry_id, member, dead_letter.group]
            )
        if replayed is None:
            raise LookupError(
                f"{dead_letter.destination!r} has no dead letter {entry_id!r} (replayed already?)"
            )
        state = self._groups.get((dead_letter.destination, dead_letter.group))
        if state is not None:
            state.retry_work = True
            state.next_maintenance = 0.0
        return _RETRY_DELIVERY + _text(replayed)

    async def lag(self, destination: str, group: str) -> int:
        keys = self.keys(destination, group)
        with self._guard("measure the lag of", destination):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.xinfo_groups(keys.stream)
                pipe.xlen(keys.retry)
                pipe.zcard(keys.delayed)
                infos, retries, scheduled = await pipe.execute(raise_on_error=False)
            if isinstance(infos, Exception):
                raise infos
            info = next((i for i in infos if _text(i["name"]) == group), None)
            if info is None:
                raise TransportError(f"destination {destination!r} has no group {group!r}")
            unread = info.get("lag")
            if unread is None:  # entries were deleted in the unread range: count them
                unread = await self._count_after(keys.stream, info["last-delivered-id"])
        retries = 0 if isinstance(retries, Exception) else int(retries)
        scheduled = 0 if isinstance(scheduled, Exception) else int(scheduled)
        return int(info["pending"]) + int(unread) + retries + scheduled

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self.client.aclose(close_connection_pool=True)

    # -- internals ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self, operation: str, destination: str) -> Iterator[None]:
        """Turn a failure of Redis into a :class:`TransportError` naming what failed."""
        if self._closed:
            raise TransportError(f"{self!r} is closed")
        try:
            yield
        except RedisError as exc:
            raise TransportError(
                f"could not {operation} {destination!r} on {self._display_url}: "
                f"{type(exc).__name__}: {safe_reason(str(exc))}"
            ) from exc
        except OSError as exc:
            raise TransportError(
                f"could not {operation} {destination!r} on {self._display_url}: "
                f"{type(exc).__name__}: {safe_reason(str(exc))}"
            ) from exc

    def _batched(self, command: Callable[[Pipeline], object]) -> asyncio.Future[Any]:
        """Send ``command(pipeline)`` (one command) with every other command issued in
        this turn of the event loop, as one pipeline: a hundred deliveries acknowledged
        at once cost one round trip, not a hundred.  The future gets the reply, or the
        error (a ``RedisError``; raised by the awaiting caller inside its guard)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending_commands.append((command, future))
        if len(self._pending_commands) == 1:
            loop.call_soon(self._flush_commands)
        return future

    def _flush_commands(self) -> None:
        batch, self._pending_commands = self._pending_commands, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send_batch(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    def _ack_soon(self, stream: str, group: str, entry_id: str) -> asyncio.Future[Any]:
        """Acknowledge ``entry_id`` with the other entries of the same stream and group
        acknowledged in this turn of the event loop: one ``XACK`` for all of them."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        waiting = self._pending_acks.setdefault((stream, group), [])
        waiting.append((entry_id, future))
        if len(waiting) == 1:
            loop.call_soon(self._flush_acks, stream, group)
        return future

    def _flush_acks(self, stream: str, group: str) -> None:
        waiting = self._pending_acks.pop((stream, group), [])
        ids = [entry_id for entry_id, _ in waiting]
        sent = self._batched(lambda pipe: pipe.xack(stream, group, *ids))

        def settle(done: asyncio.Future[Any]) -> None:
            error = done.exception() if not done.cancelled() else RedisError("cancelled")
            for _, future in waiting:
                if future.done():
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

        sent.add_done_callback(settle)

    async def _send_batch(
        self, batch: list[tuple[Callable[[Pipeline], object], asyncio.Future[Any]]]
    ) -> None:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for command, _ in batch:
                    command(pipe)
                replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError, asyncio.CancelledError) as exc:
            error = exc if not isinstance(exc, asyncio.CancelledError) else RedisError("cancelled")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _create_group(self, key: str, group: str, start: str) -> None:
        try:
            await self.client.xgroup_create(key, group, start, mkstream=True)
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def _read_group(
        self,
        destination: str,
        group: str,
        consumer: str,
        key: str,
        count: int,
        block_ms: int | None,
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """``XREADGROUP`` of new entries of one stream; a group that vanished (the
        stream was deleted, or Redis restarted without persistence) is created again
        from the start of the stream, so that nothing published since is missed."""
        for _ in range(2):
            try:
                response = await self.client.xreadgroup(
                    group, consumer, {key: ">"}, count=count, block=block_ms
                )
            except ResponseError as exc:
                # NOGROUP: the group is gone; UNBLOCKED: its stream was deleted while we
                # were blocked on it.
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise
                if (destination, group) not in self._ensured:
                    raise TransportError(
                        f"destination {destination!r} has no group {group!r}: call "
                        "ensure_group first"
                    ) from None
                logger.warning(
                    "group %r of %r is gone (Redis lost the stream?): creating it again",
                    group,
                    destination,
                )
                keys = self.keys(destination, group)
                await self._create_group(keys.stream, group, "0")
                await self._create_group(keys.retry, group, "0")
                continue
            return _entries_of(response)
        return []

    async def _maintain(
        self, destination: str, group: str, consumer: str, count: int, state: _GroupState
    ) -> list[Delivery]:
        """Move due retries into the group's retry stream; claim what dead consumers
        left pending; read the retry stream.  At most ``count`` deliveries."""
        keys = self.keys(destination, group)
        now = time.monotonic()
        _, next_due_ms, retry_length = await self._move_due(
            keys=[keys.delayed, keys.retry], args=[int(time.time() * 1000), max(count, 100)]
        )
        next_due = float(next_due_ms)
        state.next_due = (
            float("inf") if next_due < 0 else now + max(next_due / 1000 - time.time(), 0.0)
        )
        state.retry_work = int(retry_length) > 0 or next_due >= 0
        deliveries: list[Delivery] = []
        if now >= state.next_claim:
            state.next_claim = now + self._claim_interval
            deliveries += await self._claim(destination, group, consumer, keys.stream, count, state)
            if len(deliveries) < count:
                deliveries += await self._claim(
                    destination, group, consumer, keys.retry, count - len(deliveries), state
                )
        room = count - len(deliveries)
        if room > 0 and int(retry_length) > 0:
            read = await self._read_group(destination, group, consumer, keys.retry, room, None)
            deliveries += [
                self._delivery(destination, group, entry_id, fields, retry=True)
                for entry_id, fields in read
            ]
        return deliveries

    async def _claim(
        self,
        destination: str,
        group: str,
        consumer: str,
        key: str,
        count: int,
        state: _GroupState,
    ) -> list[Delivery]:
        from_retry = key != self.keys(destination, group).stream
        cursor = state.retry_claim_cursor if from_retry else state.claim_cursor
        try:
            response = await self.client.xautoclaim(
                key, group, consumer, int(self.claim_idle * 1000), cursor, count=count
            )
        except ResponseError as exc:
            if str(exc).startswith("NOGROUP"):
                return []  # the next read creates it again
            raise
        next_cursor, claimed = response[0], response[1]
        if from_retry:
            state.retry_claim_cursor = next_cursor
        else:
            state.claim_cursor = next_cursor
        if len(response) > 2 and response[2]:
            logger.error(
                "%d pending messages of %r were trimmed before group %r handled them: they "
                "are lost (raise max_length / max_age)",
                len(response[2]),
                destination,
                group,
            )
        if not claimed:
            return []
        counts = await self._delivery_counts(key, group, consumer, claimed)
        return [
            self._delivery(
                destination,
                group,
                entry_id,
                fields,
                retry=from_retry,
                deliveries=counts.get(entry_id, 2),
            )
            for entry_id, fields in claimed
            if fields is not None
        ]

    async def _delivery_counts(
        self, key: str, group: str, consumer: str, claimed: Sequence[tuple[bytes, Any]]
    ) -> dict[bytes, int]:
        """How many times each claimed entry was delivered (this claim included)."""
        ids = [entry_id for entry_id, _ in claimed]
        lowest = min(ids, key=_id_order)
        highest = max(ids, key=_id_order)
        pending: Any = await self.client.xpending_range(
            key, group, lowest, highest, len(ids) + 1000, consumername=consumer
        )
        return {row["message_id"]: int(row["times_delivered"]) for row in pending}

    async def _count_after(self, key: str, last_id: bytes | str) -> int:
        counted, start = 0, "(" + _text(last_id)
        while True:
            page: Any = await self.client.xrange(key, start, "+", count=1000)
            if not page:
                return counted
            counted += len(page)
            start = "(" + _text(page[-1][0])

    def _delivery(
        self,
        destination: str,
        group: str,
        entry_id: bytes,
        fields: Mapping[bytes, bytes],
        *,
        retry: bool = False,
        deliveries: int = 1,
    ) -> Delivery:
        if retry:
            headers, body, attempt = _parse_retry_member(fields.get(RETRY_FIELD, b""))
            delivery_id = _RETRY_DELIVERY + _text(entry_id)
        else:
            headers, body = _parse_entry(fields)
            attempt, delivery_id = 1, _text(entry_id)
        return Delivery(
            transport=self.name,
            destination=destination,
            group=group,
            delivery_id=delivery_id,
            headers=headers,
            body=body,
            attempt=attempt + deliveries - 1,
            received_at=datetime.now(UTC),
        )

    def _retry_member(
        self, headers: Mapping[str, str], body: bytes, attempt: int, reason: str
    ) -> bytes:
        """A retry as one string: JSON (headers, attempt, reason, a nonce that keeps two
        equal retries apart in the sorted set), a newline, the body bytes."""
        meta = {
            "headers": dict(headers),
            "attempt": attempt,
            "reason": safe_reason(reason),
            "nonce": f"{next(self._nonce)}-{secrets.token_hex(4)}",
        }
        return json.dumps(meta, ensure_ascii=True).encode("ascii") + b"\n" + bytes(body)


# -- encoding -------------------------------------------------------------------------------


def _encode(text: str) -> bytes:
    return text.encode(_ENCODING, _ERRORS)


def _decode(data: bytes) -> str:
    return data.decode(_ENCODING, _ERRORS)


def _text(value: bytes | str) -> str:
    return value.decode(_ENCODING, _ERRORS) if isinstance(value, bytes) else value


def _entry_fields(headers: Mapping[str, str], body: bytes) -> dict[bytes, bytes]:
    fields = {BODY_FIELD: bytes(body)}
    for name, value in headers.items():
        fields[HEADER_FIELD_PREFIX + _encode(name)] = _encode(value)
    return fields


def _parse_entry(fields: Mapping[bytes, bytes]) -> tuple[dict[str, str], bytes]:
    headers = {
        _decode(name[len(HEADER_FIELD_PREFIX) :]): _decode(value)
        for name, value in fields.items()
        if name.startswith(HEADER_FIELD_PREFIX)
    }
    return headers, fields.get(BODY_FIELD, b"")


def _parse_retry_member(member: bytes) -> tuple[dict[str, str], bytes, int]:
    meta_text, _, body = member.partition(b"\n")
    try:
        meta = json.loads(meta_text)
        headers = {str(k): str(v) for k, v in meta["headers"].items()}
        attempt = int(meta["attempt"])
    except (ValueError, KeyError, TypeError, AttributeError):
        # Not written by this transport: hand it on as it is; the consumer dead-letters it.
        return {}, member, 1
    return headers, body, max(attempt, 1)


def _dead_letter(destination: str, entry_id: bytes, fields: Mapping[bytes, bytes]) -> DeadLetter:
    headers, body = _parse_entry(fields)
    at = _decode(fields.get(_DLQ_AT, b""))
    try:
        dead_lettered_at = datetime.fromisoformat(at)
    except ValueError:
        dead_lettered_at = datetime.fromtimestamp(_id_order(entry_id)[0] / 1000, UTC)
    attempts = _decode(fields.get(_DLQ_ATTEMPTS, b"0"))
    return DeadLetter(
        dead_letter_id=_text(entry_id),
        destination=destination,
        group=_decode(fields.get(_DLQ_GROUP, b"")),
        headers=headers,
        body=body,
        reason=_decode(fields.get(_DLQ_REASON, b"")),
        attempts=int(attempts) if attempts.isdigit() else 0,
        dead_lettered_at=dead_lettered_at,
        original_delivery_id=_decode(fields[_DLQ_DELIVERY]) if _DLQ_DELIVERY in fields else None,
    )


def _entries_of(response: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of an ``XREADGROUP`` reply on one stream (RESP2 list or RESP3 map)."""
    if not response:
        return []
    streams = response.values() if isinstance(response, dict) else (s[1] for s in response)
    return [(entry_id, fields) for entries in streams for entry_id, fields in entries if fields]


def _source(keys: StreamKeys, delivery_id: str) -> tuple[str, str, bool]:
    """The stream a delivery came from, its entry id, and whether it is a retry stream."""
    if delivery_id.startswith(_RETRY_DELIVERY):
        return keys.retry, _stream_id(delivery_id[len(_RETRY_DELIVERY) :], "delivery_id"), True
    return keys.stream, _stream_id(delivery_id, "delivery_id"), False


def _stream_id(value: str, what: str) -> str:
    if not isinstance(value, str) or _STREAM_ID.fullmatch(value) is None:
        raise ValueError(f"{what}: not a Redis stream entry id: {value!r:.40}")
    return value


def _id_order(entry_id: bytes | str) -> tuple[int, int]:
    milliseconds, _, sequence = _text(entry_id).partition("-")
    return int(milliseconds), int(sequence or 0)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for logs and errors.

    >>> mask_url("redis://app:s3cret@cache:6379/0")
    'redis://app:***@cache:6379/0'
    """
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url if "@" not in parts.netloc else urlunsplit(parts._replace(netloc="***"))
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<an unparseable URL>"


def _describe_client(client: aioredis.Redis) -> str:
    """``redis://host:port/db`` of a client, without its credentials."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"redis://{host}:{port}/{kwargs.get('db', 0)}"
