"""Which store the ``cqrs`` commands open, and how: read-only whatever the URL's
spelling, the same file ``open_store`` opens, one ``error:`` line for every store or
input the CLI cannot use, and never a password in the output."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cli_testing import (
    SHARED_CHECKOUT,
    cqrs,
    postgres_url,
    rewrite_rows,
    run,
    sqlite_url,
    tables_of,
)

from python_cqrs_core.apps.cli import commands
from python_cqrs_core.apps.cli._demo import DemoResult, run_demo
from python_cqrs_core.store import CausationNode

READING_COMMANDS = [
    ["list"],
    ["trace", SHARED_CHECKOUT],
    ["trace", SHARED_CHECKOUT, "--flat"],
    ["show", str(UUID(int=7))],
    ["effects", str(UUID(int=7))],
    ["causes", str(UUID(int=7))],
]
by_name = " ".join


def one_error_line(result: Any) -> str:
    """The single ``error:`` line a failed command printed (and nothing on stdout)."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return str(line)


# -- which store ---------------------------------------------------------------------------


def test_the_store_url_comes_from_CQRS_STORE_URL_without_store_option(
    url: str, alice: CausationNode
) -> None:
    result = cqrs("trace", alice.record.correlation_id, env={"CQRS_STORE_URL": url})

    assert result.exit_code == 0, result.output
    assert alice.record.message_id.hex[:8] in result.stdout


def test_the_store_option_beats_the_environment(
    url: str, alice: CausationNode, tmp_path: Path
) -> None:
    elsewhere = sqlite_url(tmp_path / "other.db")
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

    assert result.exit_code == 0, result.output
    assert demo.requests[0].trees[0].record.message_id.hex[:8] in result.stdout


@pytest.mark.parametrize("command", [*READING_COMMANDS, ["demo"]], ids=by_name)
@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_store_option_is_an_error_not_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], empty: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cqrs(*command, "--store", empty)

    line = one_error_line(result)
    assert result.exit_code == 2
    assert line.startswith("error: --store is empty: give a store URL")
    assert list(tmp_path.iterdir()) == []


# -- read-only, whatever the spelling ------------------------------------------------------


@pytest.mark.parametrize("command", READING_COMMANDS, ids=by_name)
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


SPELLINGS = [
    "sqlite:///{path}",
    "SQLITE:///{path}",
    "SQLite:///{path}",
    "sqlite+aiosqlite:///{path}",
    "SQLITE+AIOSQLITE:///{path}",
]


@pytest.mark.parametrize("command", READING_COMMANDS, ids=by_name)
@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("where", ["absolute", "relative", "in a subfolder"])
def test_a_missing_sqlite_store_is_reported_and_nothing_is_created(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    spelling: str,
    where: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    path = {"absolute": str(tmp_path / "x.db"), "relative": "x.db", "in a subfolder": "sub/x.db"}
    result = cqrs(*command, "--store", spelling.format(path=path[where]))

    line = one_error_line(result)
    assert result.exit_code == 1
    assert "no message store at" in line and "x.db" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_spelling_of_a_sqlite_url_reads_the_store_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    monkeypatch.chdir(tmp_path)
    demo = run(run_demo("sqlite:///cqrs.db"))
    before = (tmp_path / "cqrs.db").read_bytes()

    for path in ("cqrs.db", str(tmp_path / "cqrs.db")):
        result = cqrs("list", "--store", spelling.format(path=path))
        assert result.exit_code == 0, result.output
        assert demo.requests[0].correlation_id in result.stdout

    assert (tmp_path / "cqrs.db").read_bytes() == before


def test_the_default_store_missing_says_how_to_choose_or_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(cqrs("list"))

    assert "cqrs.db" in line
    assert "no --store given and $CQRS_STORE_URL unset" in line
    assert "`cqrs demo`" in line
    assert list(tmp_path.iterdir()) == []


def test_a_percent_encoded_path_reads_the_file_open_store_made(tmp_path: Path) -> None:
    folder = tmp_path / "my stores"
    folder.mkdir()
    encoded = sqlite_url(folder).replace(" ", "%20") + "/my%20store.db"
    demo = run(run_demo(encoded))
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".db") == ["my store.db"]

    for command in (["list"], ["trace", demo.requests[1].correlation_id]):
        result = cqrs(*command, "--store", encoded)
        assert result.exit_code == 0, result.output
        assert demo.requests[1].correlation_id in result.stdout
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".db") == ["my store.db"]


def test_a_postgres_database_without_the_store_tables_is_an_error_and_stays_empty(
    postgres_database: str,
) -> None:
    for command in READING_COMMANDS:
        line = one_error_line(cqrs(*command, "--store", postgres_url(postgres_database)))
        assert "not a message store" in line, line

    assert run(tables_of(postgres_database)) == []


def test_a_postgres_database_that_does_not_exist_is_an_error(postgres_database: str) -> None:
    missing = f"{postgres_database}_absent"
    line = one_error_line(cqrs("list", "--store", postgres_url(missing)))

    assert f'database "{missing}" does not exist' in line


def test_a_postgres_store_is_read_like_any_other(postgres_database: str) -> None:
    url = postgres_url(postgres_database)
    demo = run(run_demo(url))
    cid = demo.requests[1].correlation_id

    assert (
        demo.requests[1].trees[0].record.message_id.hex[:8]
        in cqrs("trace", cid, "--store", url).stdout
    )
    assert cid in cqrs("list", "--store", url).stdout


# -- stores and values the CLI cannot use: one error line ------------------------------------


def _corrupt(tmp_path: Path) -> Path:
    """A store whose file header and catalogue are intact, and every table and index
    page scrambled: it opens, and fails when read."""
    path = tmp_path / "corrupt.db"
    run(run_demo(sqlite_url(path)))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (keep,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'cqrs_schema_version'"
        ).fetchone()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    for page in range(2, len(data) // page_size + 1):
        if page != keep:
            start = (page - 1) * page_size
            data[start + 8 : start + page_size] = b"\x5a" * (page_size - 8)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "command",
    [["list"], ["trace", "req-000000000001"], ["show", str(UUID(int=1))],
     ["effects", str(UUID(int=1))], ["causes", str(UUID(int=1))], ["show", "0000"]],
    ids=by_name,
)  # fmt: skip
def test_a_corrupted_store_is_one_error_line(tmp_path: Path, command: list[str]) -> None:
    path = _corrupt(tmp_path)
    result = cqrs(*command, "--store", sqlite_url(path))

    line = one_error_line(result)
    assert result.exit_code == 1
    assert "malformed" in line or "no message" in line, line


ROW_DAMAGE = {
    "a duration that is text": {"duration_ms": "slow"},
    "a handler that is numbers": {"handlers": json.dumps([[1, 2, 3, 4, 5]])},
    "a handler duration that is text": {
        "handlers": json.dumps([["Notify", "failed", "slow", None, None]])
    },
    "a time that is not one": {"requested_at": "yesterday"},
    "handlers that are not JSON": {"handlers": "not json"},
}


@pytest.mark.parametrize("damage", list(ROW_DAMAGE), ids=list(ROW_DAMAGE))
@pytest.mark.parametrize("view", [[], ["--flat"], ["--json"]], ids=["tree", "flat", "json"])
def test_a_row_with_values_of_the_wrong_type_is_one_error_line(
    tmp_path: Path, damage: str, view: list[str]
) -> None:
    path = tmp_path / "damaged.db"
    demo = run(run_demo(sqlite_url(path)))
    root = demo.requests[1].trees[0].record
    rewrite_rows(path, root.message_id, **ROW_DAMAGE[damage])

    as_json = [option for option in view if option == "--json"]
    shown = cqrs("show", str(root.message_id), "--store", sqlite_url(path), *as_json)
    traced = cqrs("trace", root.correlation_id, "--store", sqlite_url(path), *view)

    # show prints every field, so it always meets the damage; trace may not need the
    # damaged value (JSON writes any value as it is): it succeeds, or says why not.
    for result, must_fail in ((shown, not as_json), (traced, False)):
        assert isinstance(result.exception, SystemExit | None), repr(result.exception)
        if result.exit_code == 0 and not must_fail:
            continue
        assert result.exit_code == 1, result.output
        (line,) = result.stderr.splitlines()
        assert line.startswith("error: ") and "the message store" in line, line


@pytest.mark.parametrize("contents", [b"shopping list: milk, eggs\n" * 200, b"", b"SQLite"])
def test_a_file_that_is_not_a_store_is_one_error_line(tmp_path: Path, contents: bytes) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_bytes(contents)
    result = cqrs("list", "--store", sqlite_url(bogus))

    one_error_line(result)
    assert result.exit_code == 1
    assert bogus.read_bytes() == contents


def test_a_truncated_store_is_one_error_line(tmp_path: Path, url: str, demo: DemoResult) -> None:
    copy = tmp_path / "truncated.db"
    shutil.copy(url.removeprefix("sqlite:///"), copy)
    copy.write_bytes(copy.read_bytes()[:5000])
    result = cqrs("list", "--store", sqlite_url(copy))

    one_error_line(result)


@pytest.mark.parametrize("limit", ["0", "-1", "10001", str(10**30), "many", "1.5", ""])
def test_a_limit_out_of_range_is_one_error_line(url: str, demo: DemoResult, limit: str) -> None:
    line = one_error_line(cqrs("list", "--store", url, "--limit", limit))

    assert cqrs("list", "--store", url, "--limit", limit).exit_code == 2
    assert "--limit" in line


def test_an_unknown_option_or_command_is_one_error_line(url: str) -> None:
    assert "No such option: --colour" in one_error_line(cqrs("list", "--colour"))
    assert "No such command" in one_error_line(cqrs("lsit"))
    assert "(see `cqrs list --help`)" in one_error_line(cqrs("list", "--colour"))


def test_an_unknown_store_scheme_exits_2_with_the_schemes_it_knows() -> None:
    result = cqrs("list", "--store", "mysql://localhost/cqrs")

    line = one_error_line(result)
    assert result.exit_code == 2
    assert line.startswith("error: invalid store URL mysql://localhost/cqrs")
    assert "sqlite:///path.db" in line


# -- passwords -------------------------------------------------------------------------------

BAD_URLS = [
    ("postgresql://app:Hunter2Pw@127.0.0.1:99999/cqrs", "port out of range"),
    ("postgresql://app:Hunter2Pw@127.0.0.1:port/cqrs", "port not a number"),
    ("postgresq://app:Hunter2Pw@127.0.0.1/cqrs", "mistyped scheme"),
    ("postgres ql://app:Hunter2Pw@127.0.0.1/cqrs", "space in the scheme"),
    ("postgresql://app:Hunter2Pw@[127.0.0.1/cqrs", "unclosed IPv6 bracket"),
    ("postgresql://app:Hunter2Pw@127.0.0.1/cqrs?sslmode=sometimes", "bad option"),
    ("postgresql://127.0.0.1/cqrs?password=Hunter2Pw&sslmode=sometimes", "password option"),
    ("postgresql://app:Hunter2Pw@127.0.0.1:1/cqrs", "nothing listening"),
    ("sqlite://app:Hunter2Pw@localhost/x.db", "sqlite with a host"),
    ("postgresql://app:Hunt#er2Pw@127.0.0.1/cqrs", "unencoded # in the password"),
    ("postgresql://app:Hunt/er2Pw@127.0.0.1/cqrs", "unencoded / in the password"),
    ("postgresql://app:Hunt?er2Pw@127.0.0.1/cqrs", "unencoded ? in the password"),
    ("postgresql://app:Hunter2Pw%21@127.0.0.1:99999/cqrs", "percent-encoded password"),
]


SECRET_PIECES = ("Hunter2Pw", "Hunt", "er2Pw")  # the password, and its parts around a # / ?


@pytest.mark.parametrize(
    "command", [["list"], ["trace", "req-1"], ["show", str(UUID(int=1))], ["show", "abcd"]],
    ids=by_name,
)  # fmt: skip
@pytest.mark.parametrize(("bad_url", "what"), BAD_URLS, ids=[what for _, what in BAD_URLS])
@pytest.mark.parametrize("given_by", ["option", "environment"])
def test_no_error_ever_prints_the_password_of_the_store_url(
    command: list[str], bad_url: str, what: str, given_by: str
) -> None:
    if given_by == "option":
        result = cqrs(*command, "--store", bad_url)
    else:
        result = cqrs(*command, env={"CQRS_STORE_URL": bad_url})

    line = one_error_line(result)
    for piece in SECRET_PIECES:
        assert piece not in result.output, line
    assert "***" in line, line


@pytest.mark.parametrize("reserved", ["#", "/", "?"])
def test_a_password_with_a_reserved_character_gets_advice_not_a_parser_error(
    reserved: str,
) -> None:
    url = f"postgresql://app:Hunt{reserved}er2Pw@127.0.0.1/cqrs"
    line = one_error_line(cqrs("list", "--store", url))

    assert cqrs("list", "--store", url).exit_code == 2
    assert "postgresql://***" in line
    assert "percent-encoded" in line
    assert "Hunt" not in line and "er2Pw" not in line


def test_a_demo_on_a_url_with_a_password_never_prints_it(postgres_database: str) -> None:
    url = postgres_url(postgres_database, password="Hunter2Pw")

    result = cqrs("demo", "--store", url)

    assert result.exit_code == 0, result.output
    assert "Hunter2Pw" not in result.output
    assert postgres_url(postgres_database, password="***") in result.stdout
    assert "--store" not in result.stdout  # it could not be typed back without the password
    assert "with $CQRS_STORE_URL set to" in result.stdout


def test_reading_a_url_with_a_password_never_prints_it(postgres_database: str) -> None:
    url = postgres_url(postgres_database, password="Hunter2Pw")
    run(run_demo(url))

    for command in (["list"], ["trace", "req-000000000000"], ["list", "--type", "Nothing"]):
        result = cqrs(*command, "--store", url)
        assert "Hunter2Pw" not in result.output
        assert "***" in result.output or result.exit_code == 0


def test_memory_store_listing_masks_the_password_on_stdout_too() -> None:
    result = cqrs("list", "--store", "memory://app:Hunter2Pw@nowhere")

    assert result.exit_code == 0, result.output
    assert result.stdout == "no messages recorded in memory://app:***@nowhere yet\n"
