"""MessageRecord and CausationNode as values: JSON round trips, tree assembly, and
records turned back into their messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import pytest
from store_testing import RecordFactory

from python_cqrs_core import PII, BaseEvent, correlation_scope, uuid4
from python_cqrs_core.propagation import is_settled
from python_cqrs_core.registry import MessageRegistry, UnknownMessageTypeError
from python_cqrs_core.store import (
    CorrelationSummary,
    HandlerOutcome,
    MessageRecord,
    RecordNotReconstructibleError,
    assemble_trees,
)
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


# -- records back into messages ------------------------------------------------------------


class OrderPlaced(BaseEvent):
    __message_type__ = "store_tests.OrderPlaced"
    order_id: int
    email: Annotated[str, PII] = "ada@example.com"


def placed_record(make_record: RecordFactory, **fields: Any) -> MessageRecord:
    """The record of an ``OrderPlaced`` event; ``fields`` override its fields."""
    values: dict[str, Any] = {
        "kind": "event",
        "message_type": "store_tests.OrderPlaced",
        "correlation_id": "req-42",
        "cause": str(UUID(int=1)),
        "requested_by": "user:ada",
        "payload": {"order_id": 7, "email": "ada@example.com"},
        "pii_fields": ("email",),
    }
    return make_record(**{**values, **fields})


def test_a_record_turns_back_into_its_message_with_the_tracing_fields_of_the_record(
    make_record: RecordFactory,
) -> None:
    record = placed_record(make_record)
    message = record.to_message(MessageRegistry([OrderPlaced]))
    assert isinstance(message, OrderPlaced)
    assert (message.order_id, message.email) == (7, "ada@example.com")
    assert message.request_id == record.message_id
    assert (message.correlation_id, message.causation_id, message.requested_by) == (
        "req-42",
        UUID(int=1),
        "user:ada",
    )
    assert message.requested_at == record.requested_at
    assert is_settled(message)  # it was dispatched: nothing is decided for it again


async def test_a_message_rebuilt_inside_a_scope_inherits_nothing_from_it(
    make_record: RecordFactory,
) -> None:
    root = make_record(
        kind="event",
        message_type="store_tests.OrderPlaced",
        payload={"order_id": 1},
        requested_by=None,
    )
    async with correlation_scope("req-elsewhere", requested_by="user:mallory"):
        message = root.to_message(MessageRegistry([OrderPlaced]))
    assert (message.correlation_id, message.causation_id, message.requested_by) == (
        "op-1",
        None,
        None,
    )
    assert is_settled(message)


def test_a_payload_of_schema_1_holding_tracing_fields_is_overruled_by_the_record(
    make_record: RecordFactory,
) -> None:
    old_payload = {
        "order_id": 7,
        "email": "ada@example.com",
        "request_id": str(UUID(int=99)),
        "correlation_id": "stale",
        "causation_id": None,
        "requested_by": "stale",
        "requested_at": "2020-01-01T00:00:00+00:00",
    }
    record = placed_record(make_record, payload=old_payload)
    message = record.to_message(MessageRegistry([OrderPlaced]))
    assert (message.request_id, message.correlation_id, message.requested_by) == (
        record.message_id,
        "req-42",
        "user:ada",
    )


def test_turning_back_a_record_of_an_unknown_type_names_it(make_record: RecordFactory) -> None:
    record = placed_record(make_record, message_type="billing.InvoiceSent")
    with pytest.raises(UnknownMessageTypeError, match=r"'billing\.InvoiceSent'"):
        record.to_message(MessageRegistry([OrderPlaced]))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"payload_redacted": True}, r"personal data \(email\) was redacted"),
        ({"payload": {"unrecordable_payload": "TypeError: no JSON"}}, "could not be recorded"),
        ({"kind": "command"}, "records a command, but .* is a event"),
        ({"payload": {"order_id": "seven"}}, "does not validate as"),
    ],
)
def test_a_record_that_cannot_be_turned_back_faithfully_says_why(
    make_record: RecordFactory, fields: dict[str, Any], reason: str
) -> None:
    record = placed_record(make_record, **fields)
    with pytest.raises(RecordNotReconstructibleError, match=reason) as raised:
        record.to_message(MessageRegistry([OrderPlaced]))
    assert str(record.message_id) in str(raised.value)


def test_the_redacted_payload_hides_the_personal_fields_that_hold_a_value(
    make_record: RecordFactory,
) -> None:
    record = make_record(
        payload={"email": "ada@example.com", "phone": None, "n": 2}, pii_fields=("email", "phone")
    )
    assert record.redacted_payload() == {"email": "***", "phone": None, "n": 2}
    assert record.payload["email"] == "ada@example.com"  # the record is unchanged


def test_a_dict_without_the_fields_of_schema_2_reads_as_their_defaults(
    make_record: RecordFactory,
) -> None:
    data = make_record(service="orders", pii_fields=("email",), payload_redacted=True).to_dict()
    assert (data["service"], data["pii_fields"], data["payload_redacted"]) == (
        "orders",
        ["email"],
        True,
    )
    for name in ("service", "pii_fields", "payload_redacted"):
        del data[name]
    old = MessageRecord.from_dict(data)
    assert (old.service, old.pii_fields, old.payload_redacted) == (None, (), False)


def test_a_correlation_summary_survives_a_json_round_trip() -> None:
    summary = CorrelationSummary(
        correlation_id="req-1",
        root_message_id=UUID(int=5),
        root_message_type="orders.PlaceOrder",
        outcome="failed",
        message_count=4,
        failed_count=1,
        first_recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
        last_recorded_at=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        requested_by="ada",
        service=None,
        position=17,
    )
    assert CorrelationSummary.from_dict(json.loads(json.dumps(summary.to_dict()))) == summary
    assert summary.failed
