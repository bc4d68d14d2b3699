"""The relay's claim reads what it claims, not the whole backlog, on PostgreSQL (from
the first claim on a new table: its plan must not depend on planner statistics) and on
SQLite."""

from __future__ import annotations

import secrets
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from outbox_testing import create_schema

from python_cqrs_core.outbox import SQLiteOutbox
from python_cqrs_core.outbox.postgres import _INSERT_ENTRY, PostgresOutbox
from python_cqrs_core.store import open_store

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


async def test_an_sqlite_claim_with_a_large_backlog_reads_only_the_entries_it_claims(
    tmp_path: Path,
):
    url = f"sqlite:///{tmp_path / 'cqrs.db'}"
    async with await open_store(url):
        pass
    storage = await SQLiteOutbox.open(url)
    try:
        created = datetime.now(UTC).isoformat(timespec="microseconds")
        rows = [
            (secrets.token_hex(16), "t.Event", "d", f"c-{n}", "{}", b"{}", created, created)
            for n in range(BACKLOG)
        ]

        def fill(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO cqrs_outbox (message_id, message_type, destination, "
                "correlation_id, headers, body, status, attempts, created_at, available_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                rows,
            )
            conn.execute("COMMIT")

        await storage._run(fill)
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0  # go on

        # SQLite calls count() every 100 virtual machine instructions of the claim.
        await storage._run(lambda conn: conn.set_progress_handler(count, 100))
        claimed = await storage.claim("relay-1", limit=10, run_limit=10, lease=30.0)
        await storage._run(lambda conn: conn.set_progress_handler(None, 100))

        assert [entry.correlation_id for entry in claimed] == [f"c-{n}" for n in range(10)]
        # A run read through the pending entries after its head walks the backlog: ten
        # runs of 5,000 entries are some 2,000 calls; through its correlation, a few.
        assert steps < 200, f"the claim ran {steps * 100} SQLite instructions for 10 entries"
    finally:
        await storage.close()
