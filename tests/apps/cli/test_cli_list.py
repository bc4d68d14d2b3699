"""``cqrs list``: the recent business operations, one line each, and its filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_testing import ORPHAN_CORRELATION, SHARED_CHECKOUT, cqrs, run, sqlite_url, stored

from python_cqrs_core.apps.cli import commands
from python_cqrs_core.apps.cli._demo import DemoResult, run_demo
from python_cqrs_core.apps.cli.commands import parse_since


def rows(output: str) -> dict[str, list[str]]:
    """The table's rows by correlation id (the header and its rule left out)."""
    lines = [line for line in output.splitlines()[2:] if line.strip()]
    return {line.split()[0]: line.split()[1:] for line in lines}


def test_list_shows_each_operation_with_its_type_outcome_counts_who_and_when(
    url: str, demo: DemoResult
) -> None:
    result = cqrs("list", "--store", url)

    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split()
    assert header == [
        "correlation", "id", "type", "outcome", "messages", "failed", "requested", "by",
        "started", "(UTC)",
    ]  # fmt: skip
    alice, bob = demo.requests
    started = alice.trees[0].record.recorded_at.astimezone(UTC).strftime("%Y-%m-%d")
    table = rows(result.stdout)
    assert table[alice.correlation_id][:6] == [
        "PlaceOrder", "✓", "succeeded", "6", "0", "user:alice"
    ]  # fmt: skip
    assert table[bob.correlation_id][:6] == ["PlaceOrder", "✗", "failed", "5", "3", "user:bob"]
    assert table[SHARED_CHECKOUT][:6] == ["PlaceOrder", "✓", "succeeded", "12", "0", "user:carol"]
    assert table[ORPHAN_CORRELATION][:6] == ["PaymentCaptured", "✓", "succeeded", "1", "0", "-"]
    assert table[bob.correlation_id][6] == started


def test_list_is_newest_first(url: str, demo: DemoResult) -> None:
    order = list(rows(cqrs("list", "--store", url).stdout))

    assert order[:2] == [ORPHAN_CORRELATION, SHARED_CHECKOUT]


def test_list_json_is_the_summaries_of_the_store(url: str, demo: DemoResult) -> None:
    result = cqrs("list", "--store", url, "--json", "--limit", "2")

    assert result.exit_code == 0, result.output
    expected = run(stored(url, "correlations", 2))
    assert json.loads(result.stdout) == [summary.to_dict() for summary in expected]


def test_list_failed_shows_only_operations_in_which_something_failed(
    url: str, demo: DemoResult
) -> None:
    result = cqrs("list", "--store", url, "--failed")

    assert result.exit_code == 0, result.output
    assert list(rows(result.stdout)) == [demo.requests[1].correlation_id]


def test_list_requested_by_shows_only_that_users_operations(url: str, demo: DemoResult) -> None:
    result = cqrs("list", "--store", url, "--requested-by", "user:carol")

    assert list(rows(result.stdout)) == [SHARED_CHECKOUT]


@pytest.mark.parametrize("typed", ["PlaceOrder", "demo_shop.PlaceOrder"])
def test_list_type_takes_the_short_or_the_whole_type_name(
    url: str, demo: DemoResult, typed: str
) -> None:
    result = cqrs("list", "--store", url, "--type", typed, "--json")

    ids = [summary["correlation_id"] for summary in json.loads(result.stdout)]
    assert ids == [SHARED_CHECKOUT, *(r.correlation_id for r in reversed(demo.requests))]


def test_list_type_with_a_short_name_pages_back_until_it_has_enough(
    url: str, demo: DemoResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "_TYPE_SCAN_PAGE", 1)  # one summary per query

    result = cqrs("list", "--store", url, "--type", "PlaceOrder", "--limit", "2", "--json")

    ids = [summary["correlation_id"] for summary in json.loads(result.stdout)]
    assert ids == [SHARED_CHECKOUT, demo.requests[1].correlation_id]


def test_list_type_does_not_take_a_name_that_only_ends_like_it(url: str, demo: DemoResult) -> None:
    assert json.loads(cqrs("list", "--store", url, "--type", "Order", "--json").stdout) == []
    assert (
        json.loads(cqrs("list", "--store", url, "--type", "shop.PlaceOrder", "--json").stdout) == []
    )


def test_list_filters_combine(url: str, demo: DemoResult) -> None:
    both = cqrs("list", "--store", url, "--failed", "--requested-by", "user:alice", "--json")
    assert json.loads(both.stdout) == []

    result = cqrs(
        "list", "--store", url, "--failed", "--type", "PlaceOrder", "--since", "1h", "--json"
    )
    assert [s["correlation_id"] for s in json.loads(result.stdout)] == [
        demo.requests[1].correlation_id
    ]


def test_list_since_keeps_operations_started_from_that_moment(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "since.db")
    demo = run(run_demo(url))
    started = min(r.trees[0].record.recorded_at for r in demo.requests)

    def listed(since: str) -> list[str]:
        result = cqrs("list", "--store", url, "--since", since, "--json")
        assert result.exit_code == 0, result.output
        return [s["correlation_id"] for s in json.loads(result.stdout)]

    assert len(listed("5m")) == 2
    assert len(listed((started - timedelta(seconds=1)).isoformat())) == 2
    assert listed((started + timedelta(hours=1)).isoformat()) == []
    assert listed("2999-01-01") == []


def test_list_says_when_no_operation_matches(url: str, demo: DemoResult) -> None:
    result = cqrs("list", "--store", url, "--requested-by", "user:nobody")

    assert result.exit_code == 0
    assert result.stdout == f"no operation in {url} matches the filters\n"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--since", "yesterday", "--since: expected a time ago such as 30m, 1h or 2d"),
        ("--since", "99999999999w", "--since: expected a time ago"),
        ("--since", "999999999w", "--since: "),
        ("--requested-by", "user:\x1b[31mmallory", "--requested-by: requested_by must not "),
        ("--requested-by", "x" * 300, "--requested-by: requested_by must be at most"),
        ("--type", "no spaces please", "--type: message_type "),
    ],
)
def test_a_bad_filter_is_one_error_line_before_the_store_is_opened(
    tmp_path: Path, option: str, value: str, message: str
) -> None:
    missing = tmp_path / "absent.db"
    result = cqrs("list", "--store", sqlite_url(missing), option, value)

    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {message}"), line
    assert not missing.exists()


def test_parse_since_reads_times_ago_and_iso_8601() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    assert parse_since("45s", now) == now - timedelta(seconds=45)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since(" 1h ", now) == now - timedelta(hours=1)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("1w", now) == now - timedelta(weeks=1)
    assert parse_since("2026-04-30") == datetime(2026, 4, 30, tzinfo=UTC)
    assert parse_since("2026-04-30T08:00:00Z") == datetime(2026, 4, 30, 8, tzinfo=UTC)
    assert parse_since("2026-04-30T10:00+02:00") == datetime(2026, 4, 30, 8, tzinfo=UTC)
