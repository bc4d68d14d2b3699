"""Request ids: fresh RFC 4122 version-4 UUIDs, unique across threads and forked processes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import uuid
from uuid import UUID

import pytest

from python_cqrs_core import BaseCommand, uuid4


class Ping(BaseCommand):
    host: str
    port: str


def test_uuid4_returns_a_plain_version_4_rfc_4122_uuid():
    value = uuid4()
    assert type(value) is uuid.UUID
    assert value.version == 4
    assert value.variant == uuid.RFC_4122
    assert value.is_safe is uuid.SafeUUID.unknown


def test_generated_ids_behave_like_stdlib_uuids():
    value = uuid4()
    assert uuid.UUID(str(value)) == value
    assert uuid.UUID(bytes=value.bytes) == value
    assert hash(uuid.UUID(int=value.int)) == hash(value)
    assert pickle.loads(pickle.dumps(value)) == value


def test_ten_thousand_commands_have_ten_thousand_distinct_version_4_request_ids():
    ids = [Ping(host="h", port="1").request_id for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)


def test_ids_look_random_in_every_non_fixed_bit():
    # Across 2,000 ids every one of the 122 random bits takes both values; a constant
    # bit would mean a masking bug.  The 6 fixed bits are the version and variant.
    values = [uuid4().int for _ in range(2_000)]
    ones = 0
    zeros = 0
    for v in values:
        ones |= v
        zeros |= ~v
    fixed = (0xF << 76) | (0x3 << 62)
    full = (1 << 128) - 1
    assert ones & ~fixed & full == ~fixed & full
    assert zeros & ~fixed & full == ~fixed & full


def test_eight_threads_drawing_five_thousand_ids_each_never_collide():
    results: list[list[uuid.UUID]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def draw(slot: list[uuid.UUID]) -> None:
        start.wait()
        for _ in range(5_000):
            slot.append(uuid4())

    threads = [threading.Thread(target=draw, args=(slot,)) for slot in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every_id = [i for slot in results for i in slot]
    assert len(every_id) == 40_000
    assert len(set(every_id)) == 40_000


def test_a_forked_child_never_hands_out_the_parents_next_ids():
    uuid4()  # make sure a block is being handed out, with unread ids left in it
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            payload = b"".join(uuid4().bytes for _ in range(1_000))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(0)
    os.close(write_end)
    parent_next = {uuid4() for _ in range(1_000)}
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_ids = {uuid.UUID(bytes=payload[i : i + 16]) for i in range(0, len(payload), 16)}
    assert len(child_ids) == 1_000
    assert all(i.version == 4 for i in child_ids)
    assert child_ids.isdisjoint(parent_next)


def _draw_ids(count: int) -> list[str]:
    return [str(uuid4()) for _ in range(count)]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_multiprocessing_fork_workers_and_the_parent_never_collide():
    uuid4()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pending = pool.map_async(_draw_ids, [1_000, 1_000, 1_000])
        parent_next = {str(uuid4()) for _ in range(1_000)}
        from_workers = [i for chunk in pending.get(timeout=60) for i in chunk]
    assert len(set(from_workers)) == 3_000
    assert parent_next.isdisjoint(from_workers)


def test_messages_built_in_a_forked_child_do_not_reuse_the_parents_next_request_ids():
    Ping(host="h", port="1")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            payload = b"".join(Ping(host="h", port="1").request_id.bytes for _ in range(600))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
        finally:
            os._exit(0)
    os.close(write_end)
    parent_next = {Ping(host="h", port="1").request_id for _ in range(600)}
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    child_ids = {uuid.UUID(bytes=payload[i : i + 16]) for i in range(0, len(payload), 16)}
    assert len(child_ids) == 600
    assert child_ids.isdisjoint(parent_next)


# -- time-ordered ids (UUIDv7), an option ---------------------------------------------


def test_uuid7_is_a_version_7_rfc_9562_uuid_with_the_time_in_its_first_48_bits():
    import time

    from python_cqrs_core import uuid7

    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert (value.version, value.variant) == (7, "specified in RFC 4122")
    assert before <= value.int >> 80 <= after + 1
    assert UUID(str(value)) == value


def test_uuid7_ids_grow_in_creation_order_even_within_one_millisecond_and_across_threads():
    import threading

    from python_cqrs_core import uuid7

    made: list[list[UUID]] = [[] for _ in range(4)]

    def make(into: list[UUID]) -> None:
        into.extend(uuid7() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(chunk,)) for chunk in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [u for chunk in made for u in chunk]
    assert len(set(every)) == 20_000
    for chunk in made:  # each thread sees its ids grow
        assert chunk == sorted(chunk)
    serial = [uuid7() for _ in range(10_000)]  # more than 4,096 in a millisecond too
    assert serial == sorted(serial) and len(set(serial)) == 10_000


def test_time_ordered_ids_are_an_opt_in_mixin_and_uuid4_stays_the_default():
    from python_cqrs_core import BaseCommand, BaseEvent, TimeOrderedIds, message_kind

    class OrderPlaced(TimeOrderedIds, BaseEvent):
        order_id: int

    class PlaceOrder(BaseCommand):
        order_id: int

    events = [OrderPlaced(order_id=n) for n in range(50)]
    assert all(e.request_id.version == 7 for e in events)
    assert [e.request_id for e in events] == sorted(e.request_id for e in events)
    assert message_kind(OrderPlaced) == "event"
    assert PlaceOrder(order_id=1).request_id.version == 4
    given = uuid4()
    assert OrderPlaced(order_id=1, request_id=given).request_id == given
