"""The behaviour every message store backend shares.

Each test runs once per backend (``memory``, ``sqlite``, ``postgres``; see the
``store`` fixture), so a backend is correct when it passes this file.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from store_testing import DURABLE_BACKENDS, RecordFactory, StoreOpener

from python_cqrs_core import uuid4
from python_cqrs_core.store import HandlerOutcome, MessageRecord, MessageStore, StoreWriteError


def ids(records: list[MessageRecord]) -> list[UUID]:
    return [r.message_id for r in records]


def without_position(record: MessageRecord) -> MessageRecord:
    """The record as given to append (times compare as instants: PostgreSQL returns
    them in UTC)."""
    return dataclasses.replace(record, position=None)


async def append_each(store: MessageStore, *records: MessageRecord) -> None:
    await store.append(list(records))


# -- append and get ---------------------------------------------------------------------


async def test_a_stored_record_reads_back_equal_with_a_position(
    store: MessageStore, make_record: RecordFactory
) -> None:
    record = make_record()
    await store.append([record])
    stored = await store.get(record.message_id)
    assert stored is not None
    assert stored.position is not None and stored.position > 0
    assert without_position(stored) == without_position(record)


async def test_get_accepts_the_id_as_uuid_or_any_uuid_spelling(
    store: MessageStore, make_record: RecordFactory
) -> None:
    record = make_record()
    await store.append([record])
    for key in (record.message_id, str(record.message_id), record.message_id.hex.upper()):
        found = await store.get(key)
        assert found is not None and found.message_id == record.message_id


async def test_get_of_an_unknown_id_is_none(store: MessageStore) -> None:
    assert await store.get(uuid4()) is None
    assert await store.get("not-an-id-at-all") is None


async def test_positions_follow_the_order_of_appends_and_of_records_in_a_batch(
    store: MessageStore, make_record: RecordFactory
) -> None:
    first, second, third = (make_record(message_type=f"M{n}") for n in range(3))
    await store.append([first, second])
    await store.append([third])
    positions = [(await store.get(r.message_id)).position for r in (first, second, third)]  # type: ignore[union-attr]
    assert positions == sorted(positions) and len(set(positions)) == 3


async def test_a_batch_with_an_already_stored_message_id_is_rejected_whole(
    store: MessageStore, make_record: RecordFactory
) -> None:
    stored = make_record()
    await store.append([stored])
    fresh = make_record()
    with pytest.raises(StoreWriteError):
        await store.append([fresh, make_record(message_id=stored.message_id)])
    assert await store.get(fresh.message_id) is None
    assert len(await store.by_correlation("op-1")) == 1


async def test_a_batch_holding_one_message_id_twice_is_rejected(
    store: MessageStore, make_record: RecordFactory
) -> None:
    record = make_record()
    with pytest.raises(StoreWriteError):
        await store.append([record, record])
    assert await store.get(record.message_id) is None


async def test_a_rejected_batch_does_not_fail_batches_written_at_the_same_time(
    store: MessageStore, make_record: RecordFactory
) -> None:
    stored = make_record(correlation_id="first")
    await store.append([stored])
    good = [[make_record(correlation_id=f"good-{n}")] for n in range(20)]
    bad = [make_record(correlation_id="bad"), make_record(message_id=stored.message_id)]
    results = await asyncio.gather(
        *(store.append(batch) for batch in [*good[:10], bad, *good[10:]]), return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == ["NoneType"] * 10 + ["StoreWriteError"] + [
        "NoneType"
    ] * 10
    for batch in good:
        assert await store.get(batch[0].message_id) is not None
    assert await store.get(bad[0].message_id) is None


async def test_an_empty_batch_changes_nothing(store: MessageStore) -> None:
    await store.append([])
    assert await store.recent_correlations() == []


async def test_payload_headers_handlers_and_failure_round_trip(
    store: MessageStore, make_record: RecordFactory
) -> None:
    record = make_record(
        kind="event",
        correlation_id="req-Opaque_id:42/x",
        payload={"name": "Zoë ✓", "items": [1, 2.5, None, {"deep": [True, False]}], "n": 0},
        headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "baggage": "k=v"},
        handlers=(
            HandlerOutcome("ReserveStock", "succeeded", 1.5),
            HandlerOutcome("Notify", "failed", 0.75, "SmtpError", "mail server said 'no'\n"),
        ),
        outcome="failed",
        error_type="SmtpError",
        error_message="mail server said 'no'\n",
        requested_by=None,
        requested_at=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
        duration_ms=None,
    )
    await store.append([record])
    stored = await store.get(record.message_id)
    assert stored is not None
    assert without_position(stored) == without_position(record)
    assert stored.handler == "ReserveStock, Notify"
    assert stored.traceparent == record.headers["traceparent"]


# -- correlation --------------------------------------------------------------------------


async def test_by_correlation_lists_only_that_correlation_in_recorded_order(
    store: MessageStore, make_record: RecordFactory
) -> None:
    a1 = make_record(correlation_id="op-a")
    b1 = make_record(correlation_id="op-b")
    a2 = make_record(correlation_id="op-a", parent=a1)
    a3 = make_record(correlation_id="op-a", parent=a2)
    await store.append([a1, b1])
    await store.append([a2])
    await store.append([a3])
    assert ids(await store.by_correlation("op-a")) == ids([a1, a2, a3])
    assert ids(await store.by_correlation("op-b")) == ids([b1])
    assert await store.by_correlation("op-unknown") == []


async def test_uuid_correlation_ids_are_found_by_uuid_or_text(
    store: MessageStore, make_record: RecordFactory
) -> None:
    correlation = uuid4()
    record = make_record(correlation_id=correlation)
    await store.append([record])
    assert ids(await store.by_correlation(correlation)) == [record.message_id]
    assert ids(await store.by_correlation(str(correlation).upper())) == [record.message_id]


async def test_recent_correlations_are_newest_first_with_first_time_and_count(
    store: MessageStore, make_record: RecordFactory
) -> None:
    old = make_record(correlation_id="op-old")
    new = make_record(correlation_id="op-new")
    await store.append([old])
    await store.append([new, make_record(correlation_id="op-new", parent=new)])
    await store.append([make_record(correlation_id="op-old", parent=old)])
    recent = await store.recent_correlations()
    assert [(cid, count) for cid, _, count in recent] == [("op-new", 2), ("op-old", 2)]
    assert recent[0][1] == new.recorded_at
    assert [cid for cid, _, _ in await store.recent_correlations(limit=1)] == ["op-new"]


# -- traversal ----------------------------------------------------------------------------


@pytest.fixture
def order_flow(make_record: RecordFactory) -> dict[str, MessageRecord]:
    """The guide's example tree::

    PlaceOrder
      +-- OrderPlaced
            +-- ReserveInventory
            |     +-- InventoryReserved
            +-- NotifyCustomer
                  +-- NotificationSent
    """
    r: dict[str, MessageRecord] = {}
    r["PlaceOrder"] = make_record(correlation_id="ext-123", message_type="PlaceOrder")
    r["OrderPlaced"] = make_record(
        correlation_id="ext-123", message_type="OrderPlaced", kind="event", parent=r["PlaceOrder"]
    )
    for command, event in (
        ("ReserveInventory", "InventoryReserved"),
        ("NotifyCustomer", "NotificationSent"),
    ):
        r[command] = make_record(
            correlation_id="ext-123", message_type=command, parent=r["OrderPlaced"]
        )
        r[event] = make_record(
            correlation_id="ext-123", message_type=event, kind="event", parent=r[command]
        )
    return r


async def store_flow(store: MessageStore, flow: dict[str, MessageRecord]) -> None:
    order = [
        "PlaceOrder",
        "OrderPlaced",
        "ReserveInventory",
        "InventoryReserved",
        "NotifyCustomer",
        "NotificationSent",
    ]
    await store.append([flow[name] for name in order])


async def test_trace_causation_walks_up_from_a_message_to_its_root(
    store: MessageStore, order_flow: dict[str, MessageRecord]
) -> None:
    await store_flow(store, order_flow)
    chain = await store.trace_causation(order_flow["NotificationSent"].message_id)
    assert [r.message_type for r in chain] == [
        "PlaceOrder",
        "OrderPlaced",
        "NotifyCustomer",
        "NotificationSent",
    ]
    root_only = await store.trace_causation(str(order_flow["PlaceOrder"].message_id))
    assert ids(root_only) == [order_flow["PlaceOrder"].message_id]


async def test_trace_causation_of_an_unknown_message_is_empty(store: MessageStore) -> None:
    assert await store.trace_causation(uuid4()) == []


async def test_trace_causation_starts_at_the_orphan_when_a_parent_is_missing(
    store: MessageStore, make_record: RecordFactory
) -> None:
    orphan = make_record(cause=str(uuid4()), message_type="Orphan")
    child = make_record(parent=orphan, message_type="Child")
    await store.append([orphan, child])
    assert [r.message_type for r in await store.trace_causation(child.message_id)] == [
        "Orphan",
        "Child",
    ]


async def test_trace_effects_lists_all_descendants_in_recorded_order(
    store: MessageStore, order_flow: dict[str, MessageRecord]
) -> None:
    await store_flow(store, order_flow)
    effects = await store.trace_effects(order_flow["PlaceOrder"].message_id)
    assert [r.message_type for r in effects] == [
        "OrderPlaced",
        "ReserveInventory",
        "InventoryReserved",
        "NotifyCustomer",
        "NotificationSent",
    ]
    branch = await store.trace_effects(order_flow["NotifyCustomer"].message_id)
    assert [r.message_type for r in branch] == ["NotificationSent"]


async def test_trace_effects_of_a_leaf_or_unknown_message_is_empty(
    store: MessageStore, order_flow: dict[str, MessageRecord]
) -> None:
    await store_flow(store, order_flow)
    assert await store.trace_effects(order_flow["InventoryReserved"].message_id) == []
    assert await store.trace_effects(uuid4()) == []


async def test_build_causation_tree_mirrors_the_causation_links(
    store: MessageStore, order_flow: dict[str, MessageRecord]
) -> None:
    await store_flow(store, order_flow)
    trees = await store.build_causation_tree("ext-123")
    assert len(trees) == 1
    shape = [(depth, node.record.message_type) for depth, node in trees[0].walk()]
    assert shape == [
        (0, "PlaceOrder"),
        (1, "OrderPlaced"),
        (2, "ReserveInventory"),
        (3, "InventoryReserved"),
        (2, "NotifyCustomer"),
        (3, "NotificationSent"),
    ]
    assert not any(node.orphan for _, node in trees[0].walk())
    assert trees[0].record.handler == "Handler" and trees[0].record.outcome == "succeeded"
    assert len(trees[0]) == 6


async def test_several_roots_under_one_correlation_id_are_all_returned_in_order(
    store: MessageStore, make_record: RecordFactory
) -> None:
    first = make_record(correlation_id="shared", message_type="First")
    second = make_record(correlation_id="shared", message_type="Second")
    await store.append([first, make_record(correlation_id="shared", parent=first)])
    await store.append([second, make_record(correlation_id="shared", parent=second)])
    trees = await store.build_causation_tree("shared")
    assert [t.record.message_type for t in trees] == ["First", "Second"]
    assert [len(t.children) for t in trees] == [1, 1]


async def test_a_record_whose_parent_is_missing_heads_its_own_tree_flagged_orphan(
    store: MessageStore, make_record: RecordFactory
) -> None:
    root = make_record(correlation_id="op-x", message_type="Root")
    lost_parent = str(uuid4())
    orphan = make_record(correlation_id="op-x", cause=lost_parent, message_type="Orphan")
    under_orphan = make_record(correlation_id="op-x", parent=orphan, message_type="Child")
    await store.append([root, orphan, under_orphan])
    trees = await store.build_causation_tree("op-x")
    assert [(t.record.message_type, t.orphan) for t in trees] == [
        ("Root", False),
        ("Orphan", True),
    ]
    assert [c.record.message_type for c in trees[1].children] == ["Child"]


async def test_a_cycle_in_stored_links_neither_hangs_nor_drops_records(
    store: MessageStore, make_record: RecordFactory
) -> None:
    # a -> b -> c -> a, plus d hanging off c: no record of the correlation is a root.
    a_id, b_id, c_id = uuid4(), uuid4(), uuid4()
    a = make_record(correlation_id="loop", message_id=a_id, cause=str(c_id), message_type="A")
    b = make_record(correlation_id="loop", message_id=b_id, cause=str(a_id), message_type="B")
    c = make_record(correlation_id="loop", message_id=c_id, cause=str(b_id), message_type="C")
    d = make_record(correlation_id="loop", cause=str(c_id), message_type="D")
    await store.append([a, b, c, d])

    async def traverse() -> None:
        trees = await store.build_causation_tree("loop")
        seen = [node.record.message_type for t in trees for _, node in t.walk()]
        assert sorted(seen) == ["A", "B", "C", "D"]  # each record exactly once
        assert trees[0].record.message_type == "A" and trees[0].orphan
        chain = await store.trace_causation(b_id)
        assert [r.message_type for r in chain] == ["C", "A", "B"]
        effects = await store.trace_effects(a_id)
        assert [r.message_type for r in effects] == ["B", "C", "D"]

    await asyncio.wait_for(traverse(), timeout=10)


async def test_a_message_caused_by_itself_does_not_hang_traversal(
    store: MessageStore, make_record: RecordFactory
) -> None:
    own_id = uuid4()
    record = make_record(correlation_id="self", message_id=own_id, cause=str(own_id))
    await store.append([record])

    async def traverse() -> None:
        assert ids(await store.trace_causation(own_id)) == [own_id]
        assert await store.trace_effects(own_id) == []
        trees = await store.build_causation_tree("self")
        assert [(t.record.message_id, t.orphan, t.children) for t in trees] == [(own_id, True, [])]

    await asyncio.wait_for(traverse(), timeout=10)


async def test_an_unknown_correlation_id_has_no_tree(store: MessageStore) -> None:
    assert await store.build_causation_tree("never-seen") == []
    assert await store.build_causation_tree(uuid4()) == []


async def test_a_long_chain_traverses_in_order(
    store: MessageStore, make_record: RecordFactory
) -> None:
    chain = [make_record(correlation_id="long", message_type="M0")]
    for n in range(1, 200):
        chain.append(make_record(correlation_id="long", parent=chain[-1], message_type=f"M{n}"))
    await store.append(chain)
    assert ids(await store.trace_causation(chain[-1].message_id)) == ids(chain)
    assert ids(await store.trace_effects(chain[0].message_id)) == ids(chain[1:])
    (tree,) = await store.build_causation_tree("long")
    assert [depth for depth, _ in tree.walk()] == list(range(200))


async def test_a_closed_store_refuses_to_be_used(store: MessageStore) -> None:
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.get(uuid4())


# -- durability across opens -----------------------------------------------------------------


@pytest.mark.parametrize("backend", DURABLE_BACKENDS, indirect=True)
async def test_reopening_a_store_keeps_its_records_and_migrates_nothing_twice(
    open_test_store: StoreOpener, make_record: RecordFactory
) -> None:
    first = await open_test_store()
    record = make_record()
    await first.append([record])
    await first.close()
    second, third = await open_test_store(), await open_test_store()  # idempotent opens
    for store in (second, third):
        found = await store.get(record.message_id)
        assert found is not None and without_position(found) == without_position(record)
    later = make_record()
    await second.append([later])
    assert ids(await third.by_correlation("op-1")) == [record.message_id, later.message_id]


@pytest.mark.parametrize("backend", DURABLE_BACKENDS, indirect=True)
async def test_concurrent_first_opens_apply_the_schema_once(
    open_test_store: StoreOpener, make_record: RecordFactory
) -> None:
    stores = await asyncio.gather(*(open_test_store() for _ in range(4)))
    records = [make_record(recorded_at=datetime.now(UTC)) for _ in stores]
    await asyncio.gather(*(s.append([r]) for s, r in zip(stores, records, strict=True)))
    assert sorted(ids(await stores[0].by_correlation("op-1"))) == sorted(ids(records))
