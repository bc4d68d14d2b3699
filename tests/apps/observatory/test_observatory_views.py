"""What the views compute from records: the waterfall's slow step, newest-first reading
of a filtered feed, APM links, dead letters read from hostile headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from python_cqrs_core.apps.observatory.feed import newest_records
from python_cqrs_core.apps.observatory.views import ApmLinks, dead_letter_view, waterfall
from python_cqrs_core.store import HandlerOutcome, MemoryStore, RecordFilter, assemble_trees
from python_cqrs_core.testing.store_contract import sample_record
from python_cqrs_core.transports import DeadLetter

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def timed(n: int, parent=None, *, start_ms: float, handlers: list[tuple[str, float]]):
    took = sum(ms for _, ms in handlers)
    return sample_record(
        message_id=UUID(int=n),
        parent=parent,
        message_type=f"t.M{n}",
        recorded_at=T0 + timedelta(milliseconds=start_ms + took),
        duration_ms=took,
        handlers=tuple(HandlerOutcome(name, "succeeded", ms) for name, ms in handlers),
    )


def test_the_slowest_step_is_the_handler_with_the_most_time_of_its_own():
    # place (50 ms) publishes placed, whose two subscribers take 5 and 40 ms in turn.
    place = timed(1, start_ms=0, handlers=[("place", 50)])
    placed = timed(2, place, start_ms=2, handlers=[("audit", 5), ("slow_mail", 40)])
    chart = waterfall(assemble_trees([place, placed]))
    rows = {row["handler"]: row for row in chart["rows"]}
    assert rows["place"]["self_ms"] == pytest.approx(5)
    assert rows["slow_mail"]["slowest"] and not rows["place"]["slowest"]
    assert rows["slow_mail"]["start_ms"] == pytest.approx(7)
    assert chart["span_ms"] == pytest.approx(50)
    assert rows["place"]["width"] == 100 and rows["slow_mail"]["left"] == 14


def test_a_dispatch_made_by_the_second_subscriber_counts_against_that_subscriber():
    placed = timed(1, start_ms=0, handlers=[("first", 10), ("second", 30)])
    command = timed(2, placed, start_ms=15, handlers=[("handle", 25)])
    rows = {row["handler"]: row for row in waterfall(assemble_trees([placed, command]))["rows"]}
    assert rows["first"]["self_ms"] == 10 and rows["second"]["self_ms"] == pytest.approx(5)
    assert rows["handle"]["slowest"]


def test_an_empty_operation_has_an_empty_waterfall():
    assert waterfall([]) == {"span_ms": 0.0, "span": "0.00 ms", "rows": []}


async def test_newest_records_finds_a_sparse_filter_far_back_in_the_store():
    store = MemoryStore()
    rare = [sample_record(requested_by="user:rare") for _ in range(3)]
    await store.append(rare[:1])
    await store.append([sample_record() for _ in range(3000)])
    await store.append(rare[1:])
    await store.append([sample_record() for _ in range(500)])
    where = RecordFilter(requested_by="user:rare")
    found = await newest_records(store, 2, None, where)
    assert [r.message_id for r in found] == [rare[2].message_id, rare[1].message_id]
    older = await newest_records(store, 2, found[-1].position, where)
    assert [r.message_id for r in older] == [rare[0].message_id]


@pytest.mark.parametrize("limit", [1, 7, 100])
async def test_newest_records_pages_back_through_everything_once(limit):
    store = MemoryStore()
    outcomes = ["failed" if n % 3 else "succeeded" for n in range(250)]
    await store.append([sample_record(outcome=outcome) for outcome in outcomes])
    where = RecordFilter(outcome="failed")
    seen: list[int] = []
    before = None
    while page := await newest_records(store, limit, before, where):
        seen += [r.position or 0 for r in page]
        before = page[-1].position
    expected = [r.position for r in await store.read(0, limit=1000, outcome="failed")][::-1]
    assert seen == expected


async def test_newest_records_of_an_empty_store_is_empty():
    assert await newest_records(MemoryStore(), 10, None, RecordFilter()) == []


def test_apm_links_need_a_valid_traceparent():
    links = ApmLinks("https://apm.example/trace/{trace_id}")
    assert links.link(None) is None
    assert links.link("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None  # invalid all-zero id
    assert links.link('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"><x') is None
    with pytest.raises(ValueError, match="only use the fields"):
        ApmLinks("https://apm.example/{trace_id}/{user}")


def test_a_dead_letter_with_hostile_headers_links_nowhere():
    letter = DeadLetter(
        dead_letter_id="1-0",
        destination="orders",
        group="billing",
        headers={
            "cqrs-message-id": "javascript:alert(1)",
            "cqrs-correlation-id": "a b",
            "cqrs-message-type": "x<y",
        },
        body=b"{}",
        reason="poisoned\nsecond line",
        attempts=5,
        dead_lettered_at=T0,
    )
    view = dead_letter_view(letter)
    assert view["message_id"] is None and view["correlation_id"] is None
    assert view["links"] == {"message": None, "operation": None}
    assert view["display"]["reason"] == "poisoned …" and view["display"]["type"] == "x<y"
