"""The ``cqrs`` command line, run in-process against SQLite stores filled by the real
mediator and recorder (the demo, plus a few hand-made flows)."""

from __future__ import annotations

import asyncio
import doctest
import json
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import pytest
from typer.testing import CliRunner, Result

from python_cqrs_core import BaseCommand, Mediator, correlation_scope, message_type_name, uuid4
from python_cqrs_core.apps.cli import _demo, commands
from python_cqrs_core.apps.cli._demo import DemoResult, PlaceOrder, build_shop, run_demo
from python_cqrs_core.apps.cli.commands import app
from python_cqrs_core.store import CausationNode, MessageRecord, MessageRecorder, open_store

T = TypeVar("T")
SHARED_CHECKOUT = "checkout-42"
ORPHAN_CORRELATION = "imported-7"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def cqrs(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """Invoke the CLI in-process; CQRS_STORE_URL is unset unless ``env`` sets it."""
    return CliRunner().invoke(app, list(args), env={"CQRS_STORE_URL": None, **(env or {})})


async def _populate(url: str) -> DemoResult:
    demo = await run_demo(url)
    async with await open_store(url) as store:
        # Two root commands under one correlation id, as two clicks of one checkout.
        shop = build_shop()
        recorder = MessageRecorder(store).install(shop.bus)
        async with correlation_scope(SHARED_CHECKOUT, requested_by="user:carol"):
            for sku in ("SKU-KEYBOARD", "SKU-MONITOR"):
                await shop.bus.send(
                    PlaceOrder(
                        order_id=f"ord-{uuid4().hex[:8]}", customer_id="cus-carol", sku=sku,
                        quantity=1, unit_price_cents=100, notify_by="email",
                    )
                )  # fmt: skip
        await recorder.close()
        # A record imported from elsewhere: its cause is not in the store, and it was
        # traced (it carries a traceparent header).
        now = datetime.now(UTC)
        await store.append(
            [
                MessageRecord(
                    message_id=uuid4(), kind="event", message_type="PaymentCaptured",
                    correlation_id=ORPHAN_CORRELATION, causation_id=str(uuid4()),
                    requested_by=None, requested_at=now, recorded_at=now,
                    payload={"amount_cents": 8900}, outcome="succeeded", handlers=(),
                    error_type=None, error_message=None, duration_ms=None,
                    headers={"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"},
                )
            ]
        )  # fmt: skip
    return demo


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli") / "store.db"


@pytest.fixture(scope="module")
def url(store_path: Path) -> str:
    return f"sqlite:///{store_path}"


@pytest.fixture(scope="module")
def demo(url: str) -> DemoResult:
    return run(_populate(url))


@pytest.fixture(scope="module")
def alice(demo: DemoResult) -> CausationNode:
    return next(r for r in demo.requests if r.error is None).trees[0]


@pytest.fixture(scope="module")
def bob(demo: DemoResult) -> CausationNode:
    return next(r for r in demo.requests if r.error is not None).trees[0]


def node(tree: CausationNode, class_name: str) -> CausationNode:
    """The one node of a tree whose recorded type name ends with ``class_name``."""
    (found,) = [n for _, n in tree.walk() if n.record.message_type.rsplit(".", 1)[-1] == class_name]
    return found


def full(class_name: str) -> str:
    """The stable type name the demo's message class ``class_name`` is recorded under."""
    return message_type_name(getattr(_demo, class_name))


def line_of(output: str, record: MessageRecord) -> str:
    (line,) = [line for line in output.splitlines() if record.message_id.hex[:8] in line]
    return line


async def stored(url: str, method: str, *args: Any) -> Any:
    async with await open_store(url) as store:
        return await getattr(store, method)(*args)


# -- trace -------------------------------------------------------------------------------


def test_trace_prints_one_line_per_message_indented_by_causation_depth(
    url: str, alice: CausationNode
) -> None:
    result = cqrs("trace", alice.record.correlation_id, "--store", url)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"correlation {alice.record.correlation_id}  6 messages, 0 failed")
    body = lines[1:]
    assert len(body) == 6
    for line, (depth, n) in zip(body, alice.walk(), strict=True):
        record = n.record
        mark_column = 4 * depth  # rich tree guides are four columns wide
        assert line[mark_column:].startswith(
            f"✓ {record.kind} {record.message_type} {record.message_id.hex[:8]}  "
        )
        assert f"by {record.requested_by}" in line
        assert " ms  " in line
    assert "\x1b[" not in result.stdout  # not a terminal: no colour codes


def test_trace_shows_the_failed_outcome_with_error_type_and_message(
    url: str, bob: CausationNode
) -> None:
    result = cqrs("trace", bob.record.correlation_id, "--store", url)

    assert result.exit_code == 0, result.output
    assert "5 messages, 3 failed" in result.stdout
    notify = node(bob, "NotifyCustomer").record
    line = line_of(result.stdout, notify)
    assert line.lstrip(" │├└─").startswith(f"✗ command {full('NotifyCustomer')}")
    assert line.endswith(f"  {notify.error_type}: {notify.error_message}")
    event_line = line_of(result.stdout, node(bob, "OrderPlaced").record)
    assert "ReserveInventoryWhenOrderPlaced, NotifyCustomerWhenOrderPlaced ✗" in event_line
    inventory = node(bob, "ReserveInventory").record
    assert line_of(result.stdout, inventory).lstrip(" │├└─").startswith("✓ command")


def test_trace_prints_every_root_of_a_correlation_id(url: str, demo: DemoResult) -> None:
    result = cqrs("trace", SHARED_CHECKOUT, "--store", url)

    assert result.exit_code == 0, result.output
    assert "12 messages, 0 failed, 2 roots" in result.stdout
    trees = run(stored(url, "build_causation_tree", SHARED_CHECKOUT))
    assert len(trees) == 2
    root_line = f"✓ command {full('PlaceOrder')}"
    roots = [line for line in result.stdout.splitlines() if line.startswith(root_line)]
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


def test_trace_flat_is_a_chronological_table_with_correlation_and_causation(
    url: str, bob: CausationNode
) -> None:
    result = cqrs("trace", bob.record.correlation_id, "--store", url, "--flat")

    assert result.exit_code == 0, result.output
    header, *rows = [line for line in result.stdout.splitlines() if line.strip()]
    for column in ("time (UTC)", "kind", "type", "id", "caused by", "correlation", "outcome"):
        assert column in header
    rows = [row for row in rows if not set(row) <= set("─ ")]  # drop the rule under the header
    records = sorted((n.record for _, n in bob.walk()), key=lambda r: r.requested_at)
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        assert record.message_id.hex[:8] in row
        assert record.correlation_id in row
        cause = "-" if record.causation_id is None else UUID(record.causation_id).hex[:8]
        assert f" {cause} " in row
        assert ("✗ SmsGatewayError" in row) == record.failed


def test_trace_json_is_the_list_of_trees_the_store_builds(url: str, bob: CausationNode) -> None:
    cid = bob.record.correlation_id
    result = cqrs("trace", cid, "--store", url, "--json")

    assert result.exit_code == 0, result.output
    trees = run(stored(url, "build_causation_tree", cid))
    assert json.loads(result.stdout) == [tree.to_dict() for tree in trees]


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


class ImportPrices(BaseCommand):
    feed: str


async def _record_a_failure(url: str, correlation_id: str, error: Exception) -> UUID:
    bus = Mediator()

    async def import_prices(command: ImportPrices) -> None:
        raise error

    bus.register(ImportPrices, import_prices)
    async with await open_store(url) as store:
        recorder = MessageRecorder(store).install(bus)
        command = ImportPrices(feed="[bold]supplier[/bold]", correlation_id=correlation_id)
        with pytest.raises(type(error)):
            await bus.send(command)
        await recorder.close()
    return command.request_id


def test_stored_text_is_printed_as_is_and_a_multiline_error_stays_on_one_line(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    cid = "req[red]:smile:"
    message_id = run(
        _record_a_failure(url, cid, RuntimeError("feed rejected:\n[red]row 7[/red] :x:"))
    )

    tree = cqrs("trace", cid, "--store", url)
    assert tree.exit_code == 0, tree.output
    assert tree.stdout.startswith(f"correlation {cid}  1 message, 1 failed, 1 root")
    (line,) = [line for line in tree.stdout.splitlines() if "ImportPrices" in line]
    assert line.endswith("  RuntimeError: feed rejected: …")

    shown = cqrs("show", str(message_id), "--store", url)
    assert shown.exit_code == 0, shown.output
    assert "[red]row 7[/red] :x:" in shown.stdout
    assert '"feed": "[bold]supplier[/bold]"' in shown.stdout


# -- show, effects, causes ---------------------------------------------------------------


def test_show_prints_the_payload_handlers_and_ids_of_one_message(
    url: str, bob: CausationNode
) -> None:
    notify = node(bob, "NotifyCustomer").record
    result = cqrs("show", str(notify.message_id), "--store", url)

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"command {full('NotifyCustomer')} {notify.message_id}\n")
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


def test_show_rejects_a_malformed_message_id_without_a_traceback(url: str) -> None:
    result = cqrs("show", "6c1f0d1e", "--store", url)

    assert result.exit_code == 2
    assert result.stderr.startswith("error: '6c1f0d1e' is not a message id: expected a UUID")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["show", "effects", "causes"])
def test_a_malformed_message_id_is_rejected_before_the_store_is_opened(
    tmp_path: Path, command: str
) -> None:
    missing = tmp_path / "absent.db"
    result = cqrs(command, "ord-1234", "--store", f"sqlite:///{missing}")

    assert result.exit_code == 2
    assert "is not a message id" in result.stderr
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
    assert lines[0] == (
        f"5 messages caused by command {full('PlaceOrder')} {alice.record.message_id.hex[:8]}"
    )
    for line, (depth, n) in zip(lines[1:], alice.walk(), strict=True):
        assert line[4 * depth :].startswith(f"✓ {n.record.kind} {n.record.message_type} ")


def test_effects_json_is_what_the_store_traces(url: str, bob: CausationNode) -> None:
    event = node(bob, "OrderPlaced").record
    result = cqrs("effects", str(event.message_id), "--store", url, "--json")

    assert result.exit_code == 0, result.output
    expected = run(stored(url, "trace_effects", event.message_id))
    assert [MessageRecord.from_dict(d) for d in json.loads(result.stdout)] == expected
    assert [r.message_type for r in expected] == [
        full("ReserveInventory"), full("InventoryReserved"), full("NotifyCustomer")
    ]  # fmt: skip


def test_causes_prints_the_chain_from_the_root_down_to_the_message(
    url: str, bob: CausationNode
) -> None:
    notify = node(bob, "NotifyCustomer").record
    result = cqrs("causes", str(notify.message_id), "--store", url)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"3 messages from the root {full('PlaceOrder')} to {full('NotifyCustomer')}"
    )
    chain = [
        f"✗ command {full('PlaceOrder')}",
        f"✗ event {full('OrderPlaced')}",
        f"✗ command {full('NotifyCustomer')}",
    ]
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


# -- list -------------------------------------------------------------------------------


def test_list_shows_the_recent_correlation_ids_with_their_message_counts(
    url: str, demo: DemoResult
) -> None:
    result = cqrs("list", "--store", url)

    assert result.exit_code == 0, result.output
    counts = {line.split()[0]: line.split()[-1] for line in result.stdout.splitlines()[2:]}
    alice_cid, bob_cid = (r.correlation_id for r in demo.requests)
    assert counts == {alice_cid: "6", bob_cid: "5", SHARED_CHECKOUT: "12", ORPHAN_CORRELATION: "1"}


def test_list_json_is_what_the_store_reports(url: str, demo: DemoResult) -> None:
    result = cqrs("list", "--store", url, "--json", "--limit", "2")

    assert result.exit_code == 0, result.output
    expected = run(stored(url, "correlations", 2))
    assert json.loads(result.stdout) == [summary.to_dict() for summary in expected]
    assert [summary["correlation_id"] for summary in json.loads(result.stdout)] == [
        ORPHAN_CORRELATION,
        SHARED_CHECKOUT,
    ]


# -- which store -------------------------------------------------------------------------


def test_the_store_url_comes_from_CQRS_STORE_URL_without_store_option(
    url: str, alice: CausationNode
) -> None:
    result = cqrs("trace", alice.record.correlation_id, env={"CQRS_STORE_URL": url})

    assert result.exit_code == 0, result.output
    assert alice.record.message_id.hex[:8] in result.stdout


def test_the_store_option_beats_the_environment(
    url: str, alice: CausationNode, tmp_path: Path
) -> None:
    elsewhere = f"sqlite:///{tmp_path / 'other.db'}"
    result = cqrs(
        "show", str(alice.record.message_id), "--store", url, env={"CQRS_STORE_URL": elsewhere}
    )

    assert result.exit_code == 0, result.output


def test_without_option_or_environment_the_store_is_cqrs_db_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    demo = run(run_demo("sqlite:///cqrs.db"))

    result = cqrs("trace", demo.requests[0].correlation_id)

    assert (tmp_path / "cqrs.db").exists()
    assert result.exit_code == 0, result.output
    assert demo.requests[0].trees[0].record.message_id.hex[:8] in result.stdout


def test_a_missing_sqlite_store_is_reported_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.db"
    result = cqrs("list", "--store", f"sqlite:///{missing}")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no message store at {missing}")
    assert not missing.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["trace", SHARED_CHECKOUT],
        ["trace", SHARED_CHECKOUT, "--flat"],
        ["show", str(UUID(int=7))],
        ["effects", str(UUID(int=7))],
        ["causes", str(UUID(int=7))],
    ],
    ids=" ".join,
)
def test_reading_commands_open_the_store_read_only(
    url: str, demo: DemoResult, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    opened: list[dict[str, Any]] = []
    real_open_store = commands.open_store

    async def spy(store_url: str, **options: Any) -> Any:
        opened.append(options)
        return await real_open_store(store_url, **options)

    monkeypatch.setattr(commands, "open_store", spy)
    cqrs(*command, "--store", url)
    assert opened == [{"read_only": True}]


def test_demo_opens_the_store_for_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[dict[str, Any]] = []
    real_open_store = commands.open_store

    async def spy(store_url: str, **options: Any) -> Any:
        opened.append(options)
        return await real_open_store(store_url, **options)

    monkeypatch.setattr(commands, "open_store", spy)
    assert cqrs("demo", "--store", "memory://").exit_code == 0
    assert opened == [{"read_only": False}]


def test_an_unknown_store_scheme_exits_2_with_the_schemes_it_knows() -> None:
    result = cqrs("list", "--store", "mysql://localhost/cqrs")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid store URL 'mysql://localhost/cqrs'")
    assert "sqlite:///path.db" in result.stderr
    assert "Traceback" not in result.output


def test_a_file_that_is_not_a_store_is_reported_without_a_traceback(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("shopping list: milk, eggs\n" * 200)
    result = cqrs("list", "--store", f"sqlite:///{bogus}")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot open the message store sqlite:///{bogus}: ")
    assert "Traceback" not in result.output


def test_demo_runs_in_process_and_prints_both_trees(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    result = cqrs("demo", "--store", url)

    assert result.exit_code == 0, result.output
    assert result.stdout.count("\ncorrelation req-") == 2
    assert "the request failed with SmsGatewayError" in result.stdout
    assert f"--store {url}" in result.stdout


def test_demo_on_memory_says_the_trees_are_gone_after_the_process() -> None:
    result = cqrs("demo", "--store", "memory://")

    assert result.exit_code == 0, result.output
    assert result.stdout.count("\ncorrelation req-") == 2
    assert "memory:// lives only as long as this process" in result.stdout
    assert "cqrs trace" not in result.stdout.replace("`cqrs trace`", "")


def test_the_docstring_examples_of_the_cli_module_hold() -> None:
    import python_cqrs_core.apps.cli.commands

    results = doctest.testmod(python_cqrs_core.apps.cli.commands)
    assert results.attempted >= 3
    assert results.failed == 0
