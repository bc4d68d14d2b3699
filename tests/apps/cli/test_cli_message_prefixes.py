"""Ids the CLI prints can be typed back: ``show``, ``effects`` and ``causes`` take the 8
hex digits a tree prints, or any longer prefix of a message id, as long as it is
unique."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from cli_testing import cqrs, node, run, sqlite_url

from python_cqrs_core.apps.cli._demo import DemoResult
from python_cqrs_core.store import CausationNode, MessageRecord, open_store

T0 = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)


def typed_forms(message_id: UUID) -> list[str]:
    """What a user may type for ``message_id``: the 8 digits of the tree, longer
    prefixes with or without dashes, in either case."""
    text = str(message_id)
    return [
        text[:8],
        text[:13],
        message_id.hex[:12],
        text[:8].upper(),
        text[:23],
        message_id.hex[:31],
    ]


@pytest.mark.parametrize("command", ["show", "effects", "causes"])
def test_the_digits_a_tree_prints_name_the_message(
    url: str, bob: CausationNode, command: str
) -> None:
    event = node(bob, "OrderPlaced").record
    expected = cqrs(command, str(event.message_id), "--store", url, "--json")
    assert expected.exit_code == 0, expected.output

    for typed in typed_forms(event.message_id):
        result = cqrs(command, typed, "--store", url, "--json")
        assert result.exit_code == 0, (typed, result.output)
        assert result.stdout == expected.stdout


def test_show_by_prefix_prints_the_same_as_by_whole_id(url: str, bob: CausationNode) -> None:
    notify = node(bob, "NotifyCustomer").record

    by_prefix = cqrs("show", notify.message_id.hex[:8], "--store", url)

    assert by_prefix.exit_code == 0, by_prefix.output
    assert by_prefix.stdout == cqrs("show", str(notify.message_id), "--store", url).stdout


async def _twins(url: str) -> None:
    """Messages whose ids share their first 8, or 4, hex digits."""

    def record(message_id: str, n: int) -> MessageRecord:
        moment = T0 + timedelta(seconds=n)
        return MessageRecord(
            message_id=UUID(message_id), kind="event", message_type=f"twins.Twin{n}",
            correlation_id="req-twins", causation_id=None, requested_by=None,
            requested_at=moment, recorded_at=moment, payload={}, outcome="succeeded",
            handlers=(), error_type=None, error_message=None, duration_ms=None, headers={},
        )  # fmt: skip

    async with await open_store(url) as store:
        await store.append(
            [
                record("aaaa0000-0000-4000-8000-000000000001", 1),
                record("aaaa0000-0000-4000-8000-000000000002", 2),
                record("aaab0000-0000-4000-8000-000000000003", 3),
                record("cccc1111-0000-4000-8000-000000000004", 4),
                record("cccc2222-0000-4000-8000-000000000005", 5),
                *(record(f"bbbb{n:04x}-0000-4000-8000-000000000000", 10 + n) for n in range(12)),
            ]
        )


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = sqlite_url(tmp_path_factory.mktemp("twins") / "twins.db")
    run(_twins(url))
    return url


@pytest.mark.parametrize("command", ["show", "effects", "causes"])
def test_an_ambiguous_prefix_lists_the_candidates(twins: str, command: str) -> None:
    result = cqrs(command, "aaaa", "--store", twins)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: aaaa is ambiguous: 2 messages in {twins} have an id starting with it; "
        "type more of the id:",
        # the 8 digits are the same: the whole ids tell them apart
        "  aaaa0000-0000-4000-8000-000000000001  event Twin1  2026-02-03 04:05:07 UTC",
        "  aaaa0000-0000-4000-8000-000000000002  event Twin2  2026-02-03 04:05:08 UTC",
    ]


def test_candidates_that_differ_in_their_8_digits_are_listed_by_them(twins: str) -> None:
    result = cqrs("effects", "cccc", "--store", twins)

    assert result.exit_code == 2
    assert result.stderr.splitlines()[1:] == [
        "  cccc1111  event Twin4  2026-02-03 04:05:10 UTC",
        "  cccc2222  event Twin5  2026-02-03 04:05:11 UTC",
    ]


def test_typing_more_digits_narrows_a_prefix_down(twins: str) -> None:
    assert "2 messages" in cqrs("show", "aaaa0", "--store", twins).stderr

    result = cqrs("show", "aaab", "--store", twins)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("event twins.Twin3 aaab0000-0000-4000-8000-000000000003")


@pytest.mark.parametrize("typed", ["aaa", "aaa-", "a-a-a"])
def test_fewer_than_4_digits_are_not_a_message_id(twins: str, typed: str) -> None:
    result = cqrs("show", typed, "--store", twins)

    assert result.exit_code == 2
    assert "is not a message id: expected a UUID, or at least 4 of its first hex" in result.stderr


def test_a_prefix_matching_many_messages_lists_the_first_ten(twins: str) -> None:
    result = cqrs("show", "bbbb", "--store", twins)

    assert result.exit_code == 2
    heading, *candidates = result.stderr.splitlines()
    assert heading.startswith("error: bbbb is ambiguous: 10 or more messages in ")
    assert [line.split()[0] for line in candidates] == [f"bbbb{n:04x}" for n in range(10)]


def test_a_prefix_that_matches_nothing_is_an_error(twins: str) -> None:
    result = cqrs("show", "cafe", "--store", twins)

    assert result.exit_code == 1
    assert result.stderr == f"error: no message id starts with cafe in {twins}\n"


def test_a_prefix_is_normalised_to_the_text_form_of_ids(twins: str) -> None:
    for typed in ("AAAB", "aaab0000", "aaab00000000", "aaab0000-0000-4", "aaab-0000"):
        result = cqrs("show", typed, "--store", twins, "--json")
        assert result.exit_code == 0, (typed, result.output)
        assert json.loads(result.stdout)["message_type"] == "twins.Twin3"


def test_the_demo_hint_ids_work_by_prefix(tmp_path: Path, demo: DemoResult, url: str) -> None:
    (bob,) = demo.requests[1].trees
    notify = node(bob, "NotifyCustomer").record

    result = cqrs("causes", notify.message_id.hex[:8], "--store", url)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("3 messages from the root PlaceOrder to NotifyCustomer")
