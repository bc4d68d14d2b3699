"""open_store(): which backend a URL selects, its spellings, read-only opening, and
what it refuses."""

from __future__ import annotations

import sqlite3
import threading
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from store_testing import create_schema

from python_cqrs_core import CQRSError
from python_cqrs_core.store import (
    BACKENDS,
    ENTRY_POINT_GROUP,
    MemoryStore,
    ReadOnlyStoreError,
    StoreOpenError,
    base,
    find_backend,
    open_store,
    url_without_password,
)
from python_cqrs_core.store.postgres import PostgresStore
from python_cqrs_core.store.sqlite import SQLiteStore
from python_cqrs_core.testing.store_contract import sample_record


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
    assert versions == [(1,), (2,), (3,), (4,)]
    assert {
        "cqrs_messages_correlation",
        "cqrs_messages_causation",
        "cqrs_messages_openings",
        "cqrs_messages_requested_by",
        "cqrs_messages_type",
        "cqrs_messages_failed",
        "cqrs_messages_recorded_at",
        "cqrs_messages_service",
        "cqrs_deliveries_message",
        "cqrs_deliveries_correlation",
    } <= indexes


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
    assert url_without_password("sqlite:///data/user@host.db") == "sqlite:///data/user@host.db"


# -- passwords: never in an error, a repr or a log -----------------------------------------

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://app:{SECRET}@db:5432/orders", "postgresql://app:***@db:5432/orders"),
        (f"postgresql://app:{SECRET}@db:99999/orders", "postgresql://app:***@db:99999/orders"),
        (f"postgresql://app@db/orders?password={SECRET}&x=1", "postgresql://app@db/orders?password=***&x=1"),
        (f"postgresql://app@db/orders?sslpassword={SECRET}", "postgresql://app@db/orders?sslpassword=***"),
        (f"sqlite:///x.db?password={SECRET}", "sqlite:///x.db?password=***"),
        (f"postgresql://app:{SECRET}@[::1/orders", "postgresql://***"),  # does not parse
        (f"postgresql://app:pa/{SECRET}@db/orders", "postgresql://***"),  # '/' not encoded
        (f"postgresql://app:pa#{SECRET}@db/orders", "postgresql://***"),  # '#' not encoded
        (f"postgresql://app:pa?{SECRET}@db/orders", "postgresql://***"),  # '?' not encoded
        (f"no scheme at all:{SECRET}@", "***"),
    ],
)  # fmt: skip
def test_url_without_password_copes_with_any_url_and_never_echoes_one_it_cannot_read(
    url: str, shown: str
) -> None:
    assert url_without_password(url) == shown


def everything_printed(error: BaseException) -> str:
    """What a traceback of ``error`` shows: its text, its notes, and every exception
    chained to it."""
    return "".join(traceback.format_exception(error))


@pytest.mark.parametrize(
    ("url", "options", "kind", "says"),
    [
        (f"postgresql://app:{SECRET}@127.0.0.1:99999/db", {}, ValueError, "port must be a number"),
        (f"postgresq://app:{SECRET}@127.0.0.1/db", {}, ValueError, "unknown store URL scheme"),
        (f"postgresql://app:{SECRET}@[::1/db", {}, ValueError, "cannot read the store URL"),
        (f"postgresql://app:pa/{SECRET}@127.0.0.1/db", {}, ValueError, "percent-encoded"),
        (f"postgresql://app:{SECRET}@127.0.0.1/db", {"no_such": 1}, TypeError, "no_such"),
        (f"sqlite://app:{SECRET}@host/x.db", {}, ValueError, r"app:\*\*\*@host"),
        (f"sqlite:///x.db?password={SECRET}", {}, ValueError, "unknown option.s. 'password'"),
        (f"postgresql://app:{SECRET}@127.0.0.1:1/db", {}, StoreOpenError, r"app:\*\*\*@127"),
        (f"postgresql://app@127.0.0.1:1/db?password={SECRET}", {}, StoreOpenError, "Connect"),
    ],
)  # fmt: skip
async def test_no_error_of_a_malformed_or_unreachable_store_url_shows_its_password(
    url: str, options: dict[str, Any], kind: type[Exception], says: str
) -> None:
    with pytest.raises(kind, match=says) as raised:
        await open_store(url, **options)
    printed = everything_printed(raised.value)
    assert SECRET not in printed and "pa/" not in printed


async def test_an_unknown_postgres_option_in_the_url_is_refused_without_the_password(
    postgres_url: str,
) -> None:
    url = postgres_url.replace("://postgres@", f"://postgres:{SECRET}@") + "?no_such_setting=1"
    with pytest.raises(StoreOpenError, match="no_such_setting") as raised:
        await open_store(url)
    assert SECRET not in everything_printed(raised.value)


LEAKY_BACKEND = '''
from python_cqrs_core.store import MemoryStore


class LeakyStore(MemoryStore):
    """A backend of another package whose errors repeat the URL it was given."""

    @classmethod
    async def open(cls, url, *, read_only=False, problem="value", **options):
        if problem == "value":
            raise ValueError(f"cannot parse {url}")
        try:
            raise OSError(f"connection to {url} refused")
        except OSError as exc:
            raise RuntimeError("driver gave up") from exc
'''


@pytest.fixture
def leaky_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed backend for the ``leaky`` scheme whose errors hold its URL."""
    package = f"cqrs_leaky_backend_{tmp_path.name[-8:].replace('-', '_')}"
    (tmp_path / f"{package}.py").write_text(LEAKY_BACKEND)
    info = tmp_path / f"{package}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nleaky = {package}:LeakyStore\n")
    monkeypatch.syspath_prepend(str(tmp_path))


async def test_a_backend_error_that_repeats_the_password_is_scrubbed_and_not_chained(
    leaky_backend: None,
) -> None:
    url = f"leaky://app:{SECRET}@host/x?password={SECRET}"
    with pytest.raises(ValueError, match=r"cannot parse leaky://app:\*\*\*@host") as value:
        await open_store(url)
    with pytest.raises(StoreOpenError, match="driver gave up") as other:
        await open_store(url, problem="chained")
    for raised in (value.value, other.value):
        assert SECRET not in everything_printed(raised)
        assert raised.__cause__ is None and raised.__suppress_context__


async def test_a_store_repr_and_url_never_show_the_password(
    postgres_url: str, tmp_path: Path
) -> None:
    schema = await create_schema(postgres_url)
    pg_url = postgres_url.replace("://postgres@", f"://postgres:{SECRET}@")  # trust: any works
    stores = [
        await open_store(f"memory://app:{SECRET}@here"),
        await open_store(f"sqlite:///{tmp_path / 'x.db'}"),
        await open_store(pg_url, server_settings={"search_path": schema}),
    ]
    try:
        for store in stores:
            assert SECRET not in repr(store) and SECRET not in store.url
        assert repr(stores[0]) == "<MemoryStore memory://app:***@here>"
        assert stores[2].url == url_without_password(pg_url) and ":***@" in stores[2].url
    finally:
        for store in stores:
            await store.close()


# -- URL spellings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling", ["sqlite:///{}", "SQLITE:///{}", "SQLite+aiosqlite:///{}", "sqlite+AIOSQLITE:///{}"]
)
async def test_sqlite_schemes_are_case_insensitive_and_take_the_aiosqlite_spelling(
    tmp_path: Path, spelling: str
) -> None:
    path = tmp_path / "spelt.db"
    async with await open_store(spelling.format(path)) as store:
        assert isinstance(store, SQLiteStore) and store.path == str(path)
    assert path.exists()


async def test_a_percent_encoded_sqlite_path_opens_the_file_it_decodes_to(tmp_path: Path) -> None:
    folder = tmp_path / "my stores"
    folder.mkdir()
    encoded = f"sqlite:///{quote(str(folder))}/caf%C3%A9%20%231.db"
    async with await open_store(encoded) as store:
        await store.append([sample_record()])
    assert (folder / "café #1.db").exists()
    async with await open_store(encoded, read_only=True) as reader:
        assert await reader.last_position() == 1


@pytest.mark.parametrize(
    "scheme", ["postgresql", "postgres", "postgresql+asyncpg", "PostgreSQL", "POSTGRES"]
)
async def test_postgres_urls_take_every_usual_scheme_spelling(
    postgres_url: str, scheme: str
) -> None:
    url = scheme + postgres_url[postgres_url.index("://") :]
    schema = await create_schema(postgres_url)
    async with await open_store(url, server_settings={"search_path": schema}) as store:
        assert isinstance(store, PostgresStore)
        assert await store.last_position() == 0


def test_find_backend_knows_the_library_schemes_in_any_case() -> None:
    assert find_backend("MEMORY") is MemoryStore
    assert find_backend("sqlite+aiosqlite") is SQLiteStore
    assert find_backend("Postgres") is PostgresStore
    assert set(BACKENDS) == {
        "memory",
        "sqlite",
        "sqlite+aiosqlite",
        "postgresql",
        "postgres",
        "postgresql+asyncpg",
    }


async def test_a_url_without_a_scheme_is_a_value_error_saying_so() -> None:
    with pytest.raises(ValueError, match="starts with its scheme"):
        await open_store("cqrs.db")


def test_the_store_abc_module_names_no_backend() -> None:
    source = Path(base.__file__).read_text()
    for backend in ("MemoryStore", "SQLiteStore", "PostgresStore", "sqlite3", "asyncpg"):
        assert backend not in source


# -- backends of other packages (entry points) ---------------------------------------------

FAKE_BACKEND = '''
from python_cqrs_core.store import MemoryStore


class FakeStore(MemoryStore):
    """A backend of another package: a memory store that remembers how it was opened."""

    @classmethod
    async def open(cls, url, *, read_only=False, **options):
        store = cls(url, read_only=read_only)
        store.options = options
        return store
'''


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed distribution (on sys.path) whose entry point registers a backend
    for the ``fake`` scheme, as ``pip install`` would leave it."""
    package = f"cqrs_fake_backend_{tmp_path.name[-8:].replace('-', '_')}"
    (tmp_path / f"{package}.py").write_text(FAKE_BACKEND)
    info = tmp_path / f"{package}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nfake = {package}:FakeStore\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return package


async def test_a_backend_registered_by_entry_point_is_found_by_its_scheme(
    fake_distribution: str,
) -> None:
    store = await open_store("FAKE://bucket/x", read_only=True, region="eu")
    assert type(store).__module__ == fake_distribution
    assert (store.url, store.read_only, store.options) == (  # type: ignore[attr-defined]
        "FAKE://bucket/x",
        True,
        {"region": "eu"},
    )
    with pytest.raises(ValueError, match=r"'nope'.*fake://"):
        await open_store("nope://x")


async def test_an_entry_point_cannot_take_over_a_library_scheme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "hijack-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hijack\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nsqlite = os:getcwd\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_backend("sqlite") is SQLiteStore


async def test_an_entry_point_that_is_not_a_store_class_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nbroken = os:getcwd\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="not a MessageStore subclass"):
        await open_store("broken://x")


# -- read-only opening -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    ["sqlite:///{}", "SQLITE:///{}", "sqlite+aiosqlite:///{}", "sqlite:///{}?synchronous=full"],
)
async def test_opening_a_missing_sqlite_store_read_only_creates_no_file(
    tmp_path: Path, spelling: str
) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(StoreOpenError, match=r"no message store at .*absent\.db"):
        await open_store(spelling.format(path), read_only=True)
    assert list(tmp_path.iterdir()) == []


async def test_an_sqlite_database_without_the_store_tables_is_not_a_message_store(
    tmp_path: Path,
) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    with pytest.raises(StoreOpenError, match="not a message store"):
        await open_store(f"sqlite:///{path}", read_only=True)
    conn = sqlite3.connect(path)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
    finally:
        conn.close()
    assert tables == ["notes"]


async def test_a_read_only_sqlite_store_runs_no_writer_and_leaves_the_file_as_it_was(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cqrs.db"
    async with await open_store(f"sqlite:///{path}") as store:
        await store.append([sample_record()])
    before = path.read_bytes()
    files = sorted(tmp_path.iterdir())
    threads = {thread.name for thread in threading.enumerate()}
    async with await open_store(f"sqlite:///{path}", read_only=True) as reader:
        assert isinstance(reader, SQLiteStore) and reader.read_only
        started = {thread.name for thread in threading.enumerate()} - threads
        assert not [name for name in started if "writer" in name or "checkpoint" in name]
        assert len(await reader.read()) == 1
    assert path.read_bytes() == before
    assert sorted(tmp_path.iterdir()) == files  # no -wal or -shm left behind


async def test_a_read_only_sqlite_store_refuses_writes_and_leaves_a_writers_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cqrs.db"
    async with await open_store(f"sqlite:///{path}") as writer:
        await writer.append([sample_record()])
        assert (tmp_path / "cqrs.db-wal").exists()  # the writer's, while it is open
        async with await open_store(f"sqlite:///{path}", read_only=True) as reader:
            assert len(await reader.read()) == 1
            with pytest.raises(ReadOnlyStoreError):
                await reader.append([sample_record()])
        assert (tmp_path / "cqrs.db-wal").exists()  # still there for the writer
        await writer.append([sample_record()])
    async with await open_store(f"sqlite:///{path}", read_only=True) as reader:
        assert len(await reader.read()) == 2


async def test_a_read_only_store_newer_than_the_library_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    async with await open_store(f"sqlite:///{path}"):
        pass
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO cqrs_schema_version VALUES (99, 'from the future', '')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreOpenError, match="schema version 99"):
        await open_store(f"sqlite:///{path}", read_only=True)


async def test_a_postgres_database_without_the_store_tables_is_not_a_message_store(
    postgres_url: str,
) -> None:
    schema = await create_schema(postgres_url)
    with pytest.raises(StoreOpenError, match="is not a message store"):
        await open_store(postgres_url, read_only=True, server_settings={"search_path": schema})
    conn = await asyncpg.connect(postgres_url)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", schema
        )
    finally:
        await conn.close()
    assert tables == 0


async def test_a_read_only_postgres_store_runs_read_only_transactions(postgres_url: str) -> None:
    schema = await create_schema(postgres_url)
    settings = {"server_settings": {"search_path": schema, "application_name": "reader"}}
    async with await open_store(postgres_url, **settings) as store:
        await store.append([sample_record()])
    async with await open_store(postgres_url, read_only=True, **settings) as reader:
        assert isinstance(reader, PostgresStore) and reader.read_only
        pool = reader._pool
        assert await pool.fetchval("SHOW default_transaction_read_only") == "on"
        assert await pool.fetchval("SHOW application_name") == "reader"  # options kept
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await pool.execute("DELETE FROM cqrs_messages")
        assert await reader.last_position() == 1


async def test_postgres_sessions_run_without_jit_unless_the_caller_sets_it(
    postgres_url: str,
) -> None:
    schema = await create_schema(postgres_url)
    async with await open_store(postgres_url, server_settings={"search_path": schema}) as store:
        assert isinstance(store, PostgresStore)
        assert await store._pool.fetchval("SHOW jit") == "off"
    settings = {"search_path": schema, "jit": "on"}
    async with await open_store(postgres_url, server_settings=settings) as store:
        assert await store._pool.fetchval("SHOW jit") == "on"  # type: ignore[attr-defined]
