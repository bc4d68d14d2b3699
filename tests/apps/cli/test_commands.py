"""The ``cqrs`` reading commands, run in-process against a SQLite store filled by the
real mediator and recorder: what ``trace``, ``show``, ``effects`` and ``causes`` print."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from uuid import UUID

import pytest
from cli_testing import (
    ORPHAN_CORRELATION,
    SHARED_CHECKOUT,
    cqrs,
    line_of,
    node,
    run,
    stored,
    without_guides,
)

from python_cqrs_core import BaseCommand, Mediator
from python_cqrs_core.apps.cli._demo import DemoResult
from python_cqrs_core.store import CausationNode, MessageRecord, MessageRecorder, open_store

# -- trace -------------------------------------------------------------------------------


def test_trace_prints_one_line_per_message_indented_by_causation_depth(
    url: str, alice: CausationNode
) -> None:
    result = cqrs("trace", alice.record.correlation_id, "--store", url)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"correlation {alice.record.correlation_id}  6 messages, 0 failed")
    assert ", by user:alice, from " in lines[0]
    body = lines[1:]
    assert len(body) == 6
    for line, (depth, n) in zip(body, alice.walk(), strict=True):
        record = n.record
        mark_column = 4 * depth  # rich tree guides are four columns wide
        short_type = record.message_type.rsplit(".", 1)[-1]
        assert line[mark_column:].startswith(
            f"✓ {record.kind} {short_type} {record.message_id.hex[:8]}  "
        )
        assert f"by {record.requested_by}" in line
        assert " ms  " in line
    assert "\x1b[" not in result.stdout  # not a terminal: no colour codes


def test_trace_shows_types_short_and_the_failed_outcome_with_error_type_and_message(
    url: str, bob: CausationNode
) -> None:
    result = cqrs("trace", bob.record.correlation_id, "--store", url)

    assert result.exit_code == 0, result.output
    assert "5 messages, 3 failed" in result.stdout
    notify = node(bob, "NotifyCustomer").record
    line = line_of(result.stdout, notify)
    assert notify.message_type == "demo_shop.NotifyCustomer"
    assert without_guides(line).startswith("✗ command NotifyCustomer ")
    assert "demo_shop." not in result.stdout
    assert line.endswith(f"  {notify.error_type}: {notify.error_message}")
    event_line = line_of(result.stdout, node(bob, "OrderPlaced").record)
    assert "ReserveInventoryWhenOrderPlaced, NotifyCustomerWhenOrderPlaced ✗" in event_line
    inventory = node(bob, "ReserveInventory").record
    assert without_guides(line_of(result.stdout, inventory)).startswith("✓ command")


def test_trace_prints_every_root_of_a_correlation_id(url: str, demo: DemoResult) -> None:
    result = cqrs("trace", SHARED_CHECKOUT, "--store", url)

    assert result.exit_code == 0, result.output
    assert "12 messages, 0 failed, 2 roots, by user:carol" in result.stdout
    trees = run(stored(url, "build_causation_tree", SHARED_CHECKOUT))
    assert len(trees) == 2
    roots = [line for line in result.stdout.splitlines() if line.startswith("✓ command PlaceOrder")]
    assert [line.split()[3] for line in roots] == [t.record.message_id.hex[:8] for t in trees]


def test_trace_marks_a_root_whose_cause_is_not_in_the_store(url: str, demo: DemoResult) -> None:
    result = cqrs("trace", ORPHAN_CORRELATION, "--store", url)

    assert result.exit_code == 0, result.output
    assert "✓ event PaymentCaptured" in result.stdout
    assert "which is not in this tree" in result.stdout


def test_trace_full_ids_prints_whole_message_ids(url: str, alice: CausationNode) -> None:
    result = cqrs("trace", alice.record.correlation_id, "--store", url, "--full-ids")

    assert result.exit_code == 0, result.output
    for _, n in alice.walk():
        assert f" {n.record.message_id}  " in result.stdout


def test_trace_flat_is_a_chronological_table_under_one_correlation_heading(
    url: str, bob: CausationNode
) -> None:
    cid = bob.record.correlation_id
    result = cqrs("trace", cid, "--store", url, "--flat")

    assert result.exit_code == 0, result.output
    heading, header, *rows = [line for line in result.stdout.splitlines() if line.strip()]
    assert heading.startswith(f"correlation {cid}  5 messages, 3 failed, by user:bob, from ")
    for column in ("time (UTC)", "kind", "type", "id", "cause", "handler", "duration"):
        assert column in header
    assert "correlation" not in header and "requested by" not in header
    rows = [row for row in rows if not set(row) <= set("─ ")]  # the rule under the header
    records = sorted((n.record for _, n in bob.walk()), key=lambda r: r.requested_at)
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        assert row.startswith("✗ " if record.failed else "✓ ")
        assert f"  {record.message_type.rsplit('.', 1)[-1]}  " in row
        assert record.message_id.hex[:8] in row
        assert cid not in row  # printed once, in the heading
        cause = "-" if record.causation_id is None else UUID(record.causation_id).hex[:8]
        assert f"  {cause}  " in row
    (event_row,) = [row for row in rows if "OrderPlaced" in row]
    assert "2 handlers (1 ✗)" in event_row


def test_trace_flat_shows_requested_by_as_a_column_when_it_differs_between_rows(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    run(_record_two_users(url))

    result = cqrs("trace", "req-mixed", "--store", url, "--flat")

    assert result.exit_code == 0, result.output
    heading, header, *_ = result.stdout.splitlines()
    assert " by " not in heading
    assert "requested by" in header
    assert "user:ada" in result.stdout and "service:billing" in result.stdout


class Charge(BaseCommand):
    __message_type__ = "cli_tests.Charge"
    amount_cents: int


async def _record_two_users(url: str) -> None:
    bus = Mediator()

    async def charge(command: Charge) -> None:
        if command.requested_by == "user:ada":
            await bus.send(Charge(amount_cents=1, requested_by="service:billing"))

    bus.register(Charge, charge)
    async with await open_store(url) as store:
        recorder = MessageRecorder(store).install(bus)
        await bus.send(Charge(amount_cents=5, correlation_id="req-mixed", requested_by="user:ada"))
        await recorder.close()


def test_trace_json_is_the_list_of_trees_the_store_builds(url: str, bob: CausationNode) -> None:
    cid = bob.record.correlation_id
    result = cqrs("trace", cid, "--store", url, "--json")

    assert result.exit_code == 0, result.output
    trees = run(stored(url, "build_causation_tree", cid))
    assert json.loads(result.stdout) == [tree.to_dict() for tree in trees]
    assert '"message_type": "demo_shop.PlaceOrder"' in result.stdout  # full names in JSON


def test_trace_flat_json_is_the_records_in_chronological_order(
    url: str, alice: CausationNode
) -> None:
    cid = alice.record.correlation_id
    result = cqrs("trace", cid, "--store", url, "--flat", "--json")

    assert result.exit_code == 0, result.output
    records = [MessageRecord.from_dict(data) for data in json.loads(result.stdout)]
    assert sorted(records, key=lambda r: r.requested_at) == records
    in_store = run(stored(url, "by_correlation", cid))
    assert sorted(records, key=lambda r: r.position or 0) == in_store


def test_trace_of_an_unknown_correlation_id_exits_1_with_a_message_on_stderr(
    url: str, demo: DemoResult
) -> None:
    result = cqrs("trace", "req-000000000000", "--store", url)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: no messages with correlation id 'req-000000000000' in {url}\n"
    )


def test_trace_rejects_a_malformed_correlation_id_without_a_traceback(url: str) -> None:
    result = cqrs("trace", "two words", "--store", url)

    assert result.exit_code == 2
    assert result.stderr.startswith("error: 'two words' is not a correlation id")
    assert "Traceback" not in result.output


# -- show, effects, causes ---------------------------------------------------------------


def test_show_prints_the_whole_names_payload_handlers_and_ids_of_one_message(
    url: str, bob: CausationNode
) -> None:
    notify = node(bob, "NotifyCustomer").record
    result = cqrs("show", str(notify.message_id), "--store", url)

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"command demo_shop.NotifyCustomer {notify.message_id}\n")
    assert f"✗ failed: SmsGatewayError: {notify.error_message}" in out
    assert "✗ NotifyCustomerHandler" in out
    assert notify.correlation_id in out
    assert f"caused by       {notify.causation_id}" in out
    assert "requested by    user:bob" in out
    assert '"channel": "sms"' in out
    assert f'"order_id": "{notify.payload["order_id"]}"' in out


def test_show_prints_the_trace_headers_of_a_traced_message(url: str, demo: DemoResult) -> None:
    (tree,) = run(stored(url, "build_causation_tree", ORPHAN_CORRELATION))
    result = cqrs("show", str(tree.record.message_id), "--store", url)

    assert result.exit_code == 0, result.output
    assert f"traceparent: {tree.record.traceparent}" in result.stdout


def test_show_json_is_the_stored_record(url: str, alice: CausationNode) -> None:
    result = cqrs("show", str(alice.record.message_id), "--store", url, "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == alice.record.to_dict()


@pytest.mark.parametrize("command", ["show", "effects", "causes"])
@pytest.mark.parametrize("typed", ["ord-1234", "6c1", "6c1f0d1e-8f5a-zz", "", "  "])
def test_a_malformed_message_id_is_rejected_before_the_store_is_opened(
    tmp_path: Path, command: str, typed: str
) -> None:
    missing = tmp_path / "absent.db"
    result = cqrs(command, typed, "--store", f"sqlite:///{missing}")

    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {typed!r} is not a message id: expected a UUID")
    assert len(result.stderr.splitlines()) == 1
    assert not missing.exists()


@pytest.mark.parametrize("command", ["show", "effects", "causes"])
def test_an_unknown_message_id_exits_1_with_a_message(
    url: str, demo: DemoResult, command: str
) -> None:
    missing = UUID(int=7)
    result = cqrs(command, str(missing), "--store", url)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"error: no message with id {missing} in {url}\n"


def test_effects_prints_everything_a_message_caused_as_a_tree_under_it(
    url: str, alice: CausationNode
) -> None:
    result = cqrs("effects", str(alice.record.message_id), "--store", url)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"5 messages caused by command PlaceOrder {alice.record.message_id.hex[:8]}"
    for line, (depth, n) in zip(lines[1:], alice.walk(), strict=True):
        short_type = n.record.message_type.rsplit(".", 1)[-1]
        assert line[4 * depth :].startswith(f"✓ {n.record.kind} {short_type} ")


def test_effects_json_is_what_the_store_traces(url: str, bob: CausationNode) -> None:
    event = node(bob, "OrderPlaced").record
    result = cqrs("effects", str(event.message_id), "--store", url, "--json")

    assert result.exit_code == 0, result.output
    expected = run(stored(url, "trace_effects", event.message_id))
    assert [MessageRecord.from_dict(d) for d in json.loads(result.stdout)] == expected
    assert [r.message_type for r in expected] == [
        "demo_shop.ReserveInventory", "demo_shop.InventoryReserved", "demo_shop.NotifyCustomer"
    ]  # fmt: skip


def test_causes_prints_the_chain_from_the_root_down_to_the_message(
    url: str, bob: CausationNode
) -> None:
    notify = node(bob, "NotifyCustomer").record
    result = cqrs("causes", str(notify.message_id), "--store", url)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "3 messages from the root PlaceOrder to NotifyCustomer"
    chain = ["✗ command PlaceOrder", "✗ event OrderPlaced", "✗ command NotifyCustomer"]
    for depth, (line, start) in enumerate(zip(lines[1:], chain, strict=True)):
        assert line[4 * depth :].startswith(start)


def test_causes_json_is_what_the_store_traces(url: str, alice: CausationNode) -> None:
    leaf = node(alice, "CustomerNotified").record
    result = cqrs("causes", str(leaf.message_id), "--store", url, "--json")

    assert result.exit_code == 0, result.output
    ids = [d["message_id"] for d in json.loads(result.stdout)]
    expected = run(stored(url, "trace_causation", leaf.message_id))
    assert ids == [str(r.message_id) for r in expected]
    assert ids[0] == str(alice.record.message_id) and ids[-1] == str(leaf.message_id)


def test_the_docstring_examples_of_the_cli_module_hold() -> None:
    import python_cqrs_core.apps.cli.commands

    results = doctest.testmod(python_cqrs_core.apps.cli.commands)
    assert results.attempted >= 10
    assert results.failed == 0
