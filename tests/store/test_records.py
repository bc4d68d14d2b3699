"""MessageRecord and CausationNode as values: JSON round trips and tree assembly."""

from __future__ import annotations

import json
from uuid import UUID

import pytest
from store_testing import RecordFactory

from python_cqrs_core import uuid4
from python_cqrs_core.store import HandlerOutcome, MessageRecord, assemble_trees
from python_cqrs_core.store.records import id_text


def test_a_record_survives_a_json_round_trip(make_record: RecordFactory) -> None:
    record = make_record(
        handlers=(
            HandlerOutcome("A", "succeeded", 1.0),
            HandlerOutcome("B", "failed", 2.0, "KeyError", "'sku'"),
        ),
        outcome="failed",
        error_type="KeyError",
        error_message="'sku'",
        headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
        position=12,
    )
    data = json.loads(json.dumps(record.to_dict()))
    assert MessageRecord.from_dict(data) == record
    assert data["handler"] == "A, B" and data["traceparent"] == record.traceparent


def test_from_dict_rejects_an_unknown_kind_or_outcome(make_record: RecordFactory) -> None:
    data = make_record().to_dict()
    with pytest.raises(ValueError, match="kind"):
        MessageRecord.from_dict({**data, "kind": "notification"})
    with pytest.raises(ValueError, match="outcome"):
        MessageRecord.from_dict({**data, "outcome": "maybe"})


def test_ids_are_looked_up_in_their_canonical_text_form() -> None:
    value = uuid4()
    assert id_text(value) == str(value)
    assert id_text(value.hex.upper()) == str(value)
    assert id_text(f"urn:uuid:{value}") == str(value)
    assert id_text("req-abc-123") == "req-abc-123"
    assert id_text("not valid \n at all") == "not valid \n at all"


def test_walk_is_depth_first_with_children_in_recorded_order(
    make_record: RecordFactory,
) -> None:
    root = make_record(message_type="root", position=1)
    first = make_record(parent=root, message_type="first", position=2)
    second = make_record(parent=root, message_type="second", position=3)
    under_first = make_record(parent=first, message_type="under-first", position=4)
    (tree,) = assemble_trees([root, first, second, under_first])
    assert [(d, n.record.message_type) for d, n in tree.walk()] == [
        (0, "root"),
        (1, "first"),
        (2, "under-first"),
        (1, "second"),
    ]
    assert len(tree) == 4


def test_a_very_deep_chain_walks_and_serialises_without_recursion(
    make_record: RecordFactory,
) -> None:
    chain = [make_record(position=0)]
    for n in range(1, 5000):
        chain.append(make_record(parent=chain[-1], position=n))
    (tree,) = assemble_trees(chain)
    assert max(depth for depth, _ in tree.walk()) == 4999
    data = tree.to_dict()
    depth = 0
    while data["children"]:
        (data,) = data["children"]
        depth += 1
    assert depth == 4999 and data["message_id"] == str(chain[-1].message_id)


def test_two_separate_cycles_each_become_one_orphan_root(make_record: RecordFactory) -> None:
    ids = [UUID(int=n) for n in range(1, 5)]
    # 1 <-> 2 and 3 <-> 4, in recorded order 1, 3, 2, 4
    records = [
        make_record(message_id=ids[0], cause=str(ids[1]), position=1),
        make_record(message_id=ids[2], cause=str(ids[3]), position=2),
        make_record(message_id=ids[1], cause=str(ids[0]), position=3),
        make_record(message_id=ids[3], cause=str(ids[2]), position=4),
    ]
    trees = assemble_trees(records)
    assert [(t.record.message_id, t.orphan) for t in trees] == [(ids[0], True), (ids[2], True)]
    assert [[n.record.message_id for _, n in t.walk()] for t in trees] == [
        [ids[0], ids[1]],
        [ids[2], ids[3]],
    ]
