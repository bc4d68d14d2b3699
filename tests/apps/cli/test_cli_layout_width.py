"""How wide the ``cqrs`` views are: ``--flat`` fits 100 columns, and a tree node that
wraps on a narrow terminal keeps its lines under itself, right of the tree's guides."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_testing import GUIDES, SHARED_CHECKOUT, cqrs, run, sqlite_url, stored

from python_cqrs_core import BaseCommand, BaseEvent, Mediator
from python_cqrs_core.apps.cli._demo import DemoResult
from python_cqrs_core.store import MessageRecorder, open_store

LONG_ERROR = "the ledger refused the entry: " + "account frozen by compliance review " * 8


class CloseQuarter(BaseCommand):
    __message_type__ = "cli_width_tests.accounting.CloseQuarter"
    quarter: str


class QuarterClosedForEveryLedgerOfTheGroup(BaseEvent):
    __message_type__ = "cli_width_tests.accounting.QuarterClosedForEveryLedgerOfTheGroup"
    quarter: str


async def _record_a_wide_operation(url: str) -> None:
    """A command whose event has six subscribers with long names, one failing with a
    long message."""
    bus = Mediator()

    async def close_quarter(command: CloseQuarter) -> None:
        await bus.publish(QuarterClosedForEveryLedgerOfTheGroup(quarter=command.quarter))

    bus.register(CloseQuarter, close_quarter)
    for name in (
        "archive_the_quarter_in_cold_storage",
        "send_the_quarterly_report_to_the_board",
        "recompute_the_consolidated_balance_sheet",
        "notify_every_subsidiary_controller",
        "refresh_the_tax_provision_dashboards",
    ):

        async def subscriber(event: QuarterClosedForEveryLedgerOfTheGroup) -> None:
            pass

        subscriber.__qualname__ = f"accounting.<locals>.{name}"
        bus.subscribe(QuarterClosedForEveryLedgerOfTheGroup, subscriber)

    async def post_the_closing_entries_to_the_general_ledger(
        event: QuarterClosedForEveryLedgerOfTheGroup,
    ) -> None:
        raise PermissionError(LONG_ERROR)

    bus.subscribe(
        QuarterClosedForEveryLedgerOfTheGroup, post_the_closing_entries_to_the_general_ledger
    )
    async with await open_store(url) as store:
        recorder = MessageRecorder(store).install(bus)
        with pytest.raises(PermissionError):
            await bus.send(
                CloseQuarter(
                    quarter="2026-Q1", correlation_id="close-2026-q1", requested_by="user:cfo"
                )
            )
        await recorder.close()


@pytest.fixture(scope="module")
def wide_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = sqlite_url(tmp_path_factory.mktemp("wide") / "wide.db")
    run(_record_a_wide_operation(url))
    return url


def assert_nodes_keep_their_lines(output: str, width: int) -> int:
    """Every line fits ``width``; a line that continues a node starts right of that
    node's mark, and of its guides.  Returns how many lines were continuations."""
    text_column = 0
    continuations = 0
    for line in output.splitlines()[1:]:  # after the heading
        assert len(line) <= width, line
        start = len(line) - len(line.lstrip(GUIDES))
        if line[start] in "✓✗":
            text_column = start + 2  # the mark and its space
            continue
        continuations += 1
        assert start >= text_column, f"a wrapped line left of its node's text:\n{output}"
        assert line.rstrip() == line, "no padding at the end of a line"
    return continuations


@pytest.mark.parametrize("width", [60, 100])
def test_a_wrapped_tree_node_stays_under_its_own_text(
    width: int, url: str, demo: DemoResult, wide_url: str
) -> None:
    operations = [(url, r.correlation_id) for r in demo.requests]
    operations += [(url, SHARED_CHECKOUT), (wide_url, "close-2026-q1")]
    wrapped = 0
    for store, cid in operations:
        result = cqrs("trace", cid, "--store", store, env={"COLUMNS": str(width)})
        assert result.exit_code == 0, result.output
        wrapped += assert_nodes_keep_their_lines(result.stdout, width)
    assert wrapped > 0  # the long lines did wrap


@pytest.mark.parametrize("width", [60, 100])
def test_effects_and_causes_trees_wrap_the_same_way(width: int, wide_url: str) -> None:
    root, event = run(stored(wide_url, "by_correlation", "close-2026-q1"))
    for command in (["effects", str(root.message_id)], ["causes", str(event.message_id)]):
        result = cqrs(*command, "--store", wide_url, env={"COLUMNS": str(width)})
        assert result.exit_code == 0, result.output
        assert assert_nodes_keep_their_lines(result.stdout, width) > 0


def test_in_a_pipe_a_node_wraps_only_beyond_400_columns_and_under_itself(
    wide_url: str,
) -> None:
    result = cqrs("trace", "close-2026-q1", "--store", wide_url)

    assert assert_nodes_keep_their_lines(result.stdout, 400) == 1  # the 6 handlers' line
    (line,) = [line for line in result.stdout.splitlines() if "QuarterClosed" in line]
    assert len(line) > 300
    assert "post_the_closing_entries_to_the_general_ledger ✗" in line
    assert result.stdout.rstrip().endswith("…")  # 240 characters of the error at most


def test_flat_fits_100_columns(url: str, demo: DemoResult, wide_url: str) -> None:
    operations = [(url, r.correlation_id) for r in demo.requests]
    operations += [(url, SHARED_CHECKOUT), (wide_url, "close-2026-q1")]
    for store, cid in operations:
        for env in ({"COLUMNS": "100"}, {}):
            result = cqrs("trace", cid, "--store", store, "--flat", env=env)
            assert result.exit_code == 0, result.output
            lines = result.stdout.splitlines()
            assert max(len(line) for line in lines) <= 100, result.stdout
            assert sum(cid in line for line in lines) == 1  # the heading only


def test_flat_shortens_names_and_counts_several_handlers(wide_url: str) -> None:
    result = cqrs("trace", "close-2026-q1", "--store", wide_url, "--flat")

    rows = result.stdout.splitlines()[3:]
    (command_row,) = [row for row in rows if "CloseQuarter" in row]
    assert "  close_quarter  " in command_row
    assert "cli_width_tests" not in result.stdout and "<locals>" not in result.stdout
    (event_row,) = [row for row in rows if "QuarterClosed" in row]
    assert "6 handlers (1 ✗)" in event_row


def test_show_gives_the_whole_names_flat_shortens(wide_url: str) -> None:
    _, event = run(stored(wide_url, "by_correlation", "close-2026-q1"))

    shown = cqrs("show", str(event.message_id), "--store", wide_url).stdout

    assert shown.startswith(
        "event cli_width_tests.accounting.QuarterClosedForEveryLedgerOfTheGroup "
    )
    assert (
        "✗ _record_a_wide_operation.<locals>.post_the_closing_entries_to_the_general_ledger"
        in shown
    )
    assert "✓ accounting.<locals>.archive_the_quarter_in_cold_storage" in shown
    assert LONG_ERROR.strip() in shown


def test_flat_on_a_narrow_terminal_prints_whole_rows_rather_than_slivers(
    url: str, demo: DemoResult
) -> None:
    cid = demo.requests[1].correlation_id
    result = cqrs("trace", cid, "--store", url, "--flat", env={"COLUMNS": "60"})

    rows = [line for line in result.stdout.splitlines() if line[:2] in ("✓ ", "✗ ")]
    assert len(rows) == 5  # one line a message (the terminal wraps it), no folded cells
    assert any("NotifyCustomerHandler" in row for row in rows)


def test_flat_ends_a_name_too_long_for_its_column_with_an_ellipsis(wide_url: str) -> None:
    result = cqrs("trace", "close-2026-q1", "--store", wide_url, "--flat")

    (event_row,) = [row for row in result.stdout.splitlines() if "QuarterClosed" in row]
    assert "  QuarterClosedForEv…  " in event_row


def test_list_fits_100_columns(url: str, demo: DemoResult) -> None:
    result = cqrs("list", "--store", url, env={"COLUMNS": "100"})

    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 100


def test_tree_lines_never_end_in_padding(url: str, demo: DemoResult, tmp_path: Path) -> None:
    result = cqrs("trace", demo.requests[1].correlation_id, "--store", url, env={"COLUMNS": "60"})

    assert all(line == line.rstrip() for line in result.stdout.splitlines()[1:])
