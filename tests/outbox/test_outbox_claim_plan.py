"""The relay's claim on PostgreSQL reads what it claims, not the whole backlog, from
the first claim on a new table: its plan must not depend on planner statistics."""

from __future__ import annotations

import secrets

import asyncpg
import pytest
from outbox_testing import create_schema

from python_cqrs_core.outbox.postgres import _INSERT_ENTRY, PostgresOutbox

BACKLOG = 5_000


async def _index_tuples_read(pool: asyncpg.Pool) -> int:
    """Index entries and table rows read from ``cqrs_outbox`` so far, this backend's
    counts included (the pool has one connection: the claim's)."""
    async with pool.acquire() as connection:
        await connection.execute("SELECT pg_stat_force_next_flush()")
        value = await connection.fetchval(
            "SELECT COALESCE(SUM(i.idx_tup_read), 0) + MAX(t.seq_tup_read) "
            "FROM pg_stat_user_tables AS t "
            "LEFT JOIN pg_stat_user_indexes AS i ON i.relid = t.relid "
            "WHERE t.relid = 'cqrs_outbox'::regclass"
        )
    return int(value)


@pytest.mark.parametrize("analyzed", [False, True], ids=["no statistics", "analyzed"])
async def test_a_claim_with_a_large_backlog_reads_only_the_entries_it_claims(
    postgres_url: str, analyzed: bool
):
    schema = await create_schema(postgres_url)
    pool = await asyncpg.create_pool(
        postgres_url, min_size=1, max_size=1, server_settings={"search_path": schema}
    )
    storage = await PostgresOutbox.connect(pool)
    try:
        # A relay catching up: thousands of pending entries, one correlation each, in a
        # table no ANALYZE has seen (a new outbox), or one that was analysed.
        rows = [
            (secrets.token_hex(16), "t.Event", "d", f"c-{n}", None, "{}", b"{}")
            for n in range(BACKLOG)
        ]
        async with pool.acquire() as connection:
            await connection.executemany(_INSERT_ENTRY, rows)
            if analyzed:
                await connection.execute("ANALYZE cqrs_outbox")
        before = await _index_tuples_read(pool)

        claimed = await storage.claim("relay-1", limit=10, run_limit=10, lease=30.0)

        read = await _index_tuples_read(pool) - before
        assert [entry.correlation_id for entry in claimed] == [f"c-{n}" for n in range(10)]
        # The oldest ten pending entries and one probe each for an older entry of their
        # correlation; a plan that sorts the backlog reads all of it (5,000 and more).
        assert read < 100, f"the claim read {read} index entries and rows for 10 entries"
    finally:
        await storage.close()
        await pool.close()
