"""open_store(): which backend a URL selects, and what it refuses."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from python_cqrs_core import CQRSError
from python_cqrs_core.store import MemoryStore, StoreOpenError, open_store, url_without_password
from python_cqrs_core.store.sqlite import SQLiteStore


async def test_an_unknown_scheme_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="'mysql'"):
        await open_store("mysql://localhost/db")


async def test_memory_urls_open_a_new_empty_store_each_time() -> None:
    first, second = await open_store("memory://"), await open_store("memory://")
    assert isinstance(first, MemoryStore) and first is not second


async def test_without_a_url_the_environment_variable_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CQRS_STORE_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    async with await open_store() as store:
        assert isinstance(store, SQLiteStore)
    assert (tmp_path / "from-env.db").exists()


async def test_without_url_or_variable_the_store_is_cqrs_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CQRS_STORE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    async with await open_store() as store:
        assert store.url == "sqlite:///cqrs.db"
    assert (tmp_path / "cqrs.db").exists()


async def test_sqlite_urls_take_relative_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    async with await open_store("sqlite:///sub/relative.db"):
        pass
    async with await open_store(f"sqlite:///{tmp_path}/absolute.db"):  # sqlite:////tmp/...
        pass
    assert (tmp_path / "sub" / "relative.db").exists()
    assert (tmp_path / "absolute.db").exists()


async def test_sqlite_durability_is_normal_by_default_and_full_on_request(tmp_path: Path) -> None:
    async with await open_store(f"sqlite:///{tmp_path / 'a.db'}") as default:
        assert isinstance(default, SQLiteStore) and default.synchronous == "normal"
    async with await open_store(f"sqlite:///{tmp_path / 'b.db'}?synchronous=FULL") as full:
        assert isinstance(full, SQLiteStore) and full.synchronous == "full"
    async with await open_store(f"sqlite:///{tmp_path / 'c.db'}", synchronous="full") as opt:
        assert isinstance(opt, SQLiteStore) and opt.synchronous == "full"
    with pytest.raises(ValueError, match="synchronous"):
        await open_store(f"sqlite:///{tmp_path / 'd.db'}?synchronous=off")


async def test_an_sqlite_store_is_a_wal_database_with_a_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "cqrs.db"
    async with await open_store(f"sqlite:///{path}"):
        pass
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = conn.execute("SELECT version FROM cqrs_schema_version").fetchall()
        indexes = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")
        }
    finally:
        conn.close()
    assert versions == [(1,)]
    assert {"cqrs_messages_correlation", "cqrs_messages_causation"} <= indexes


@pytest.mark.parametrize(
    "url",
    ["sqlite:///:memory:", "sqlite://host/path.db", "sqlite:///"],
)
async def test_sqlite_urls_without_a_usable_file_path_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="SQLite"):
        await open_store(url)


async def test_a_store_in_a_missing_directory_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(StoreOpenError, match="does not exist") as info:
        await open_store(f"sqlite:///{tmp_path / 'nowhere' / 'cqrs.db'}")
    assert isinstance(info.value.__cause__, FileNotFoundError)


async def test_a_store_newer_than_the_library_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    async with await open_store(f"sqlite:///{path}"):
        pass
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO cqrs_schema_version VALUES (99, 'from the future', '')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreOpenError, match="schema version 99") as info:
        await open_store(f"sqlite:///{path}")
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_sqlite_traversal_queries_search_indexes_and_never_scan_the_table(
    tmp_path: Path,
) -> None:
    from python_cqrs_core.store import sqlite as backend

    path = tmp_path / "plan.db"
    async with await open_store(f"sqlite:///{path}"):
        pass
    queries = {
        "get": (backend._SELECT_ONE, ("x",)),
        "by_correlation": (backend._SELECT_CORRELATION, ("x",)),
        "trace_causation": (backend._SELECT_CAUSES, ("x",)),
        "trace_effects": (backend._SELECT_EFFECTS, ("x", "x")),
        "recent_correlations": (backend._SELECT_OPENINGS, (20,)),
        "count": (backend._COUNT_MESSAGES, ("x",)),
    }
    conn = sqlite3.connect(path)
    try:
        for name, (sql, params) in queries.items():
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            table_scans = [step for step in plan if step.startswith("SCAN cqrs_messages")]
            unindexed = [s for s in table_scans if "USING INDEX" not in s]
            assert not unindexed, f"{name} scans the table: {plan}"
    finally:
        conn.close()


async def test_a_file_that_is_not_a_store_raises_store_open_error_with_the_cause(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(StoreOpenError, match="cannot open the message store") as info:
        await open_store(f"sqlite:///{path}")
    assert info.value.__cause__ is not None
    assert isinstance(info.value, CQRSError)


async def test_an_unknown_postgres_database_raises_store_open_error_without_the_password():
    url = "postgresql://postgres:s3cret@127.0.0.1:5432/cqrs_no_such_database_xyz"
    with pytest.raises(StoreOpenError) as info:
        await open_store(url)
    assert "s3cret" not in str(info.value)
    assert "postgres:***@127.0.0.1" in str(info.value)


def test_url_without_password_masks_only_the_password():
    assert url_without_password("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert url_without_password("postgresql://u@h/db") == "postgresql://u@h/db"
    assert url_without_password("sqlite:///cqrs.db") == "sqlite:///cqrs.db"
