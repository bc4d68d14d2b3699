"""Fast, cryptographically strong RFC 4122 version-4 UUIDs.

Every message gets a fresh ``request_id`` when it is built, so id generation sits on
the hottest path of the library.  :func:`uuid.uuid4` costs one ``os.urandom(16)``
system call and a validating ``UUID.__init__`` per id (about 1.7 us on a small VM).
:func:`uuid4` here returns exactly the same kind of value, a :class:`uuid.UUID` with
version 4 and the RFC 4122 variant whose 122 random bits come from ``os.urandom``,
but it reads the randomness in blocks of 512 ids and builds the ``UUID`` objects in
one tight loop per block, without re-validating integers it just masked itself.
Handing out one id is then a C-level ``next()`` on an iterator: no Python frame.

Guarantees kept:

- the source is ``os.urandom`` (the kernel CSPRNG), never the ``random`` module;
- every value is handed out once: list iterators advance atomically under the GIL,
  so two threads never receive the same id;
- the rest of the current block is discarded in a child process after ``os.fork()``,
  so parent and child never hand out the same values.

Ids are identifiers, not secrets: buffering a few kilobytes of future ids in process
memory is fine for them; do not use this module to mint security tokens.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from itertools import repeat
from uuid import UUID, SafeUUID

__all__ = ["uuid4", "uuid7"]

_BLOCK = 512  # ids per os.urandom call: 8 KiB of randomness

# UUID uses __slots__ and forbids __setattr__; its slot descriptors write the two
# slots directly, which is what UUID.__init__ itself does.
_set_int = UUID.__dict__["int"].__set__
_set_is_safe = UUID.__dict__["is_safe"].__set__

# The blocks handed out lately (cleared after fork).  More than one: two threads that
# exhaust a block at the same moment may each build one, and either can be current.
_recent_blocks: deque[list[UUID]] = deque(maxlen=4)

# Byte tables that force the version nibble (byte 6) to 4 and the variant bits
# (byte 8) to 10xx, applied to a whole block at once with bytes.translate.
_VERSION_BYTE = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT_BYTE = bytes((b & 0x3F) | 0x80 for b in range(256))
_SLICES = [slice(i, i + 16) for i in range(0, 16 * _BLOCK, 16)]
_new = object.__new__


def _new_block() -> list[UUID]:
    """Build the next block of ids; every per-id step runs in C (map/deque)."""
    raw = bytearray(os.urandom(16 * _BLOCK))
    raw[6::16] = raw[6::16].translate(_VERSION_BYTE)
    raw[8::16] = raw[8::16].translate(_VARIANT_BYTE)
    block: list[UUID] = list(map(_new, repeat(UUID, _BLOCK)))
    deque(map(_set_int, block, map(int.from_bytes, map(raw.__getitem__, _SLICES))), maxlen=0)
    deque(map(_set_is_safe, block, repeat(SafeUUID.unknown, _BLOCK)), maxlen=0)
    _recent_blocks.append(block)
    return block


def _discard_block_after_fork() -> None:
    # The child inherited the parent's unread ids: empty the list so the iterator
    # over it stops and the next id comes from a fresh os.urandom block.
    for block in _recent_blocks:
        block.clear()


os.register_at_fork(after_in_child=_discard_block_after_fork)

_gil_enabled = getattr(sys, "_is_gil_enabled", lambda: True)()

if _gil_enabled:
    # itertools.chain pulls a new block from iter(callable, sentinel) only when the
    # current one is exhausted; everything else happens in C.
    _ids: Iterator[UUID] = itertools.chain.from_iterable(iter(_new_block, None))
    uuid4: Callable[[], UUID] = functools.partial(next, _ids)
else:  # pragma: no cover - free-threaded CPython: a lock instead of GIL atomicity
    _lock = threading.Lock()
    _ids = itertools.chain.from_iterable(iter(_new_block, None))

    def uuid4() -> UUID:
        with _lock:
            return next(_ids)


# pydantic asks a default factory whether it takes the validated data by inspecting
# its signature; inspect cannot see through partial(next, ...) cheaply, which made
# model_construct() cost ~100 us.  An explicit empty signature answers at once.
uuid4.__signature__ = inspect.Signature()  # type: ignore[attr-defined]
uuid4.__doc__ = """Return a random (version 4) :class:`uuid.UUID`, like :func:`uuid.uuid4`.

>>> u = uuid4()
>>> (u.version, u.variant) == (4, "specified in RFC 4122")
True
"""


# -- time-ordered ids (UUIDv7, RFC 9562), an option ----------------------------------------

_v7_lock = threading.Lock()
_v7_last = [0, 0]  # the last (unix milliseconds, 12-bit sequence) handed out
_v7_random: Iterator[int] = iter(())


def _v7_tail() -> int:
    """62 random bits for the low part of a UUIDv7, from buffered ``os.urandom``."""
    global _v7_random
    try:
        return next(_v7_random)
    except StopIteration:
        raw = os.urandom(8 * _BLOCK)
        _v7_random = iter([int.from_bytes(raw[i : i + 8]) >> 2 for i in range(0, len(raw), 8)])
        return next(_v7_random)


def uuid7() -> UUID:
    """Return a time-ordered (version 7) :class:`uuid.UUID` (RFC 9562).

    The first 48 bits are the Unix time in milliseconds, then a 12-bit sequence that
    keeps ids of one millisecond in creation order (monotonic within the process, also
    across threads), then 62 random bits from ``os.urandom``.  Ids made later compare
    greater, so a store's index on them grows at its end instead of at random places:
    see :class:`~python_cqrs_core.TimeOrderedIds` for using them as ``request_id``.

    >>> first, second = uuid7(), uuid7()
    >>> (first.version, first < second)
    (7, True)
    """
    now = time.time_ns() // 1_000_000
    with _v7_lock:
        last_ms, sequence = _v7_last
        if now > last_ms:
            last_ms, sequence = now, 0
        else:  # the same millisecond (or a clock step back): count on
            sequence += 1
            if sequence > 0xFFF:  # 4,096 ids in one millisecond: borrow the next one
                last_ms, sequence = last_ms + 1, 0
        _v7_last[0], _v7_last[1] = last_ms, sequence
        tail = _v7_tail()
    uid = _new(UUID)  # built as _new_block builds its ids: the value is valid by construction
    _set_int(uid, (last_ms << 80) | _V7_BITS | (sequence << 64) | tail)
    _set_is_safe(uid, _UNKNOWN_SAFETY)
    return uid


_V7_BITS = (0x7 << 76) | (0b10 << 62)  # the version nibble and the RFC variant bits
_UNKNOWN_SAFETY = SafeUUID.unknown  # (an enum member: looked up once, not per id)


uuid7.__signature__ = inspect.Signature()  # type: ignore[attr-defined]


def _discard_v7_after_fork() -> None:
    global _v7_random
    _v7_random = iter(())


os.register_at_fork(after_in_child=_discard_v7_after_fork)
