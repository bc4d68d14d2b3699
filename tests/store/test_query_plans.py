"""Every reading query is answered from an index, never by scanning the store: the
plans the databases choose (SQLite ``EXPLAIN QUERY PLAN``; PostgreSQL ``EXPLAIN``, with
sequential scans priced out, since on a test-sized table a scan is always cheapest)."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from store_testing import create_schema

from python_cqrs_core import uuid4
from python_cqrs_core.store import RecordFilter, open_store
from python_cqrs_core.store.columns import POSTGRES, SQLITE
from python_cqrs_core.store.migrations import LATEST_VERSION
from python_cqrs_core.store.postgres import _IDS_IN_RANGE as POSTGRES_IDS_IN_RANGE
from python_cqrs_core.store.postgres import _queries as postgres_queries
from python_cqrs_core.store.records import id_prefix_bounds
from python_cqrs_core.store.sql import feed_query, summaries_query
from python_cqrs_core.store.sqlite import _IDS_IN_RANGE as SQLITE_IDS_IN_RANGE
from python_cqrs_core.store.sqlite import _queries as sqlite_queries
from python_cqrs_core.testing.store_contract import sample_record

NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)

# filter -> the index that must serve read(**filter), or None for the position order
# itself (the primary key: filters without an index of their own, which most records
# meet, are tested record by record while walking it).
READ_INDEXES: list[tuple[dict[str, Any], str | None]] = [
    ({}, None),
    ({"requested_by": "ada"}, "cqrs_messages_requested_by"),
    ({"message_type": "shop.Order"}, "cqrs_messages_type"),
    ({"outcome": "failed"}, "cqrs_messages_failed"),
    ({"service": "shop"}, "cqrs_messages_service"),
    ({"since": NEW_YEAR}, "cqrs_messages_recorded_at"),
    ({"since": NEW_YEAR, "until": datetime(2026, 2, 1, tzinfo=UTC)}, "cqrs_messages_recorded_at"),
    ({"requested_by": "ada", "since": NEW_YEAR}, "cqrs_messages_requested_by"),
    ({"outcome": "succeeded"}, None),
    ({"kind": "event"}, None),
]
SUMMARY_FILTERS: list[dict[str, Any]] = [
    {},
    {"requested_by": "ada"},
    {"message_type": "shop.Order"},
    {"outcome": "failed"},
    {"outcome": "succeeded"},
    {"kind": "command"},
    {"service": "shop"},
    {"since": NEW_YEAR},
    {"until": NEW_YEAR},
]


@pytest.fixture
def sqlite_plan(tmp_path: Path) -> Any:
    """``plan(sql, params)``: the steps of SQLite's plan for a query on a new store."""
    path = tmp_path / "plans.db"

    async def create() -> None:
        async with await open_store(f"sqlite:///{path}"):
            pass

    asyncio.run(create())
    conn = sqlite3.connect(path)

    def plan(sql: str, params: Any) -> list[str]:
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]

    yield plan
    conn.close()


def test_sqlite_traversal_queries_search_indexes_and_never_scan_the_table(
    sqlite_plan: Any,
) -> None:
    queries = sqlite_queries(LATEST_VERSION)
    for name, sql, params in (
        ("get", queries.one, ("x",)),
        ("by_correlation", queries.correlation, ("x",)),
        ("trace_causation", queries.causes, ("x",)),
        ("trace_effects", queries.effects, ("x", "x")),
    ):
        plan = sqlite_plan(sql, params)
        assert not [s for s in plan if s.startswith("SCAN cqrs_messages")], (name, plan)


def test_sqlite_prefix_lookup_scans_a_range_of_the_message_id_index(sqlite_plan: Any) -> None:
    low, high = id_prefix_bounds("6c1f0d1e")
    plan = sqlite_plan(SQLITE_IDS_IN_RANGE, (str(low), str(high), 10))
    assert plan == [
        "SEARCH cqrs_messages USING COVERING INDEX sqlite_autoindex_cqrs_messages_1 "
        "(message_id>? AND message_id<?)",
        "USE TEMP B-TREE FOR ORDER BY",
    ]


@pytest.mark.parametrize(("filters", "index"), READ_INDEXES, ids=str)
def test_sqlite_reads_walk_the_index_of_their_filter(
    sqlite_plan: Any, filters: dict[str, Any], index: str | None
) -> None:
    queries = sqlite_queries(LATEST_VERSION)
    sql, params = feed_query(
        queries.reader.select,
        SQLITE,
        LATEST_VERSION,
        after=10,
        limit=50,
        where=RecordFilter(**filters),
    )
    (step, *sort) = sqlite_plan(sql, params)
    expected = "USING INTEGER PRIMARY KEY (rowid>?)" if index is None else f"USING INDEX {index} "
    assert step.startswith("SEARCH cqrs_messages ") and expected in step, step
    if index != "cqrs_messages_recorded_at":  # a time range is sorted by position after
        assert sort == []


@pytest.mark.parametrize("filters", SUMMARY_FILTERS, ids=str)
@pytest.mark.parametrize("before", [None, 1000])
def test_sqlite_summaries_start_from_an_index_and_count_through_the_correlation_index(
    sqlite_plan: Any, filters: dict[str, Any], before: int | None
) -> None:
    sql, params = summaries_query(
        SQLITE, LATEST_VERSION, limit=20, before=before, where=RecordFilter(**filters)
    )
    plan = sqlite_plan(sql, params)
    openings = [s for s in plan if s.startswith(("SCAN o ", "SEARCH o "))]
    assert openings and all("USING INDEX" in s for s in openings), plan
    counted = [s for s in plan if s.startswith(("SCAN m", "SEARCH m"))]
    assert counted == ["SEARCH m USING INDEX cqrs_messages_correlation (correlation_id=?)"]
    assert not [s for s in plan if s.startswith("SCAN cqrs_messages")], plan


@pytest.fixture
async def postgres_plan(postgres_url: str) -> Any:
    """``plan(sql, params)``: PostgreSQL's plan for a query on a new store, sequential
    scans priced out (a test-sized table is cheapest to scan whatever its indexes)."""
    schema = await create_schema(postgres_url)
    store = await open_store(postgres_url, server_settings={"search_path": schema})
    await store.close()
    conn = await asyncpg.connect(postgres_url, server_settings={"search_path": schema})
    await conn.execute("SET enable_seqscan = off")

    async def plan(sql: str, params: Any) -> list[str]:
        return [row[0] for row in await conn.fetch(f"EXPLAIN {sql}", *params)]

    yield plan
    await conn.close()


def postgres_scans(plan: list[str]) -> list[str]:
    return [line.strip() for line in plan if "Scan" in line]


async def test_postgres_traversal_queries_use_indexes(postgres_plan: Any) -> None:
    queries = postgres_queries(LATEST_VERSION)
    for name, sql in (
        ("get", queries.one),
        ("by_correlation", queries.correlation),
        ("trace_causation", queries.causes),
        ("trace_effects", queries.effects),
    ):
        plan = await postgres_plan(sql, ("x",))
        assert not [s for s in plan if "Seq Scan on cqrs_messages" in s], (name, plan)


async def test_postgres_prefix_lookup_scans_a_range_of_the_message_id_index(
    postgres_plan: Any,
) -> None:
    low, high = id_prefix_bounds("6c1f0d1e")
    scans = postgres_scans(await postgres_plan(POSTGRES_IDS_IN_RANGE, (str(low), str(high), 10)))
    on_table = [s for s in scans if "on cqrs_messages" in s]
    assert len(on_table) == 1 and "Scan using cqrs_messages_message_id_key" in on_table[0], scans


@pytest.mark.parametrize(("filters", "index"), READ_INDEXES, ids=str)
async def test_postgres_reads_can_use_the_index_of_their_filter(
    postgres_plan: Any, filters: dict[str, Any], index: str | None
) -> None:
    queries = postgres_queries(LATEST_VERSION)
    sql, params = feed_query(
        queries.reader.select,
        POSTGRES,
        LATEST_VERSION,
        after=10,
        limit=50,
        where=RecordFilter(**filters),
    )
    scans = postgres_scans(await postgres_plan(sql, params))
    assert not [s for s in scans if "Seq Scan" in s], scans
    if index is not None and "since" not in filters:  # time alone: the planner's choice
        assert any(index in s for s in scans), scans


@pytest.mark.parametrize("filters", SUMMARY_FILTERS, ids=str)
async def test_postgres_summaries_use_indexes(postgres_plan: Any, filters: dict[str, Any]) -> None:
    sql, params = summaries_query(
        POSTGRES, LATEST_VERSION, limit=20, before=None, where=RecordFilter(**filters)
    )
    scans = postgres_scans(await postgres_plan(sql, params))
    assert not [s for s in scans if "Seq Scan" in s], scans
    assert any("cqrs_messages_correlation on cqrs_messages m" in s for s in scans), scans


# -- PostgreSQL before its first ANALYZE ----------------------------------------------------


async def test_postgres_traversal_uses_the_indexes_of_a_store_never_analysed(
    postgres_url: str,
) -> None:
    """A new store has no planner statistics until autovacuum first analyses it (a
    minute or more, and only past a threshold).  Traversal must not depend on them:
    30,000 records, no ANALYZE, and every query still walks the indexes, fast."""
    schema = await create_schema(postgres_url)
    settings = {"search_path": schema}
    store = await open_store(postgres_url, server_settings=settings)
    conn = await asyncpg.connect(postgres_url, server_settings=settings)
    try:
        await conn.execute("ALTER TABLE cqrs_messages SET (autovacuum_enabled = false)")
        chains = []
        for batch in range(10):
            records = []
            for n in range(1000):
                root = sample_record(correlation_id=uuid4())
                child = sample_record(correlation_id=root.correlation_id, parent=root)
                grandchild = sample_record(correlation_id=root.correlation_id, parent=child)
                records += (root, child, grandchild)
                if n == 500:
                    chains.append((root, child, grandchild))
            await store.append(records)
        analysed = await conn.fetchval(
            "SELECT count(*) FROM pg_stats WHERE schemaname = $1 AND tablename = 'cqrs_messages'",
            schema,
        )
        assert analysed == 0  # no statistics: the planner guesses
        root, child, grandchild = chains[5]
        queries = postgres_queries(LATEST_VERSION)
        low, high = id_prefix_bounds(str(child.message_id)[:8])
        for name, sql, params in (
            ("get", queries.one, (str(child.message_id),)),
            ("by_correlation", queries.correlation, (root.correlation_id,)),
            ("trace_causation", queries.causes, (str(grandchild.message_id),)),
            ("trace_effects", queries.effects, (str(root.message_id),)),
            ("message_ids_with_prefix", POSTGRES_IDS_IN_RANGE, (str(low), str(high), 10)),
        ):
            plan = [row[0] for row in await conn.fetch(f"EXPLAIN {sql}", *params)]
            assert not [line for line in plan if "Seq Scan" in line], (name, plan)
        for trace, key, expected in (
            (store.trace_causation, grandchild.message_id, [root, child, grandchild]),
            (store.trace_effects, root.message_id, [child, grandchild]),
        ):
            timings = []
            for _ in range(5):
                started = time.perf_counter()
                found = await trace(key)
                timings.append(time.perf_counter() - started)
            assert [r.message_id for r in found] == [r.message_id for r in expected]
            assert statistics.median(timings) < 0.02, (trace.__name__, timings)
    finally:
        await conn.close()
        await store.close()
