"""Stored text never drives the terminal: whatever a producer recorded (escape
sequences, carriage returns, bidi overrides...), every ``cqrs`` view prints it escaped,
and ``--json`` stays exact and valid."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest
from cli_testing import cqrs, rewrite_rows, run, sqlite_url, stored

from python_cqrs_core import BaseCommand, Mediator
from python_cqrs_core.store import MessageRecorder, open_store

HOSTILE = (
    "\x1b[2J\x1b]8;;https://evil.example\x07click\x1b]8;;\x07\rOK\x08\x9b31m"
    "\u202eevil\u2028x\x7f\x00"
)
ESCAPED = (
    "\\x1b[2J\\x1b]8;;https://evil.example\\x07click\\x1b]8;;\\x07\\rOK\\x08\\x9b31m"
    "\\u202eevil\\u2028x\\x7f\\x00"
)
CID = "req-hostile"


class ImportPrices(BaseCommand):
    __message_type__ = "cli_escaping_tests.ImportPrices"
    feed: str


def dangerous(text: str) -> list[str]:
    """The characters of ``text`` that would act on a terminal (newlines excepted)."""
    return [
        ch
        for ch in text
        if (ord(ch) < 0x20 and ch != "\n")
        or 0x7F <= ord(ch) < 0xA0
        or ch in "\u2028\u2029\u061c\u200e\u200f"
        or "\u202a" <= ch <= "\u202e"
        or "\u2066" <= ch <= "\u2069"
    ]


async def _record(url: str) -> tuple[UUID, UUID]:
    bus = Mediator()

    async def import_prices(command: ImportPrices) -> None:
        if command.feed == "supplier":
            await bus.send(ImportPrices(feed="retry"))  # a child, for effects and causes
            raise RuntimeError("feed rejected")

    bus.register(ImportPrices, import_prices)
    async with await open_store(url) as store:
        recorder = MessageRecorder(store).install(bus)
        command = ImportPrices(feed="supplier", correlation_id=CID, requested_by="user:x")
        with pytest.raises(RuntimeError):
            await bus.send(command)
        await recorder.close()
    records = await stored(url, "by_correlation", CID)
    return records[0].message_id, records[1].message_id


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, UUID, UUID]:
    """A store whose root and first child record hold hostile text in every field a
    producer controls, written behind the store's back."""
    path = tmp_path_factory.mktemp("hostile") / "hostile.db"
    url = sqlite_url(path)
    root, child = run(_record(url))
    # handler, outcome, duration_ms, error_type, error_message: one row of the column
    handler = [f"import{HOSTILE}", "failed", 1.0, f"Err{HOSTILE}", f"first {HOSTILE}\nsecond"]
    for message_id in (root, child):
        rewrite_rows(
            path,
            message_id,
            message_type=f"shop.Import{HOSTILE}Prices",
            requested_by=f"user:{HOSTILE}",
            error_type=f"Err{HOSTILE}",
            error_message=f"first {HOSTILE}\nsecond {HOSTILE}",
            handlers=json.dumps([handler]),
            headers=json.dumps({"traceparent": HOSTILE, f"x-{HOSTILE}": HOSTILE}),
            payload=json.dumps({"feed": HOSTILE}),
            service=f"svc{HOSTILE}",
        )
    return url, root, child


def views(root: UUID, child: UUID) -> list[list[str]]:
    return [
        ["trace", CID],
        ["trace", CID, "--full-ids"],
        ["trace", CID, "--flat"],
        ["show", str(root)],
        ["show", str(child)],
        ["effects", str(root)],
        ["causes", str(child)],
        ["list"],
    ]


def test_every_view_prints_stored_text_escaped(hostile: tuple[str, UUID, UUID]) -> None:
    url, root, child = hostile
    for view in views(root, child):
        result = cqrs(*view, "--store", url)

        assert result.exit_code == 0, (view, result.output)
        assert dangerous(result.output) == [], view
        assert "\\x1b" in result.stdout, view
        if view[0] != "list" and "--flat" not in view:  # not cut short by a column
            assert "\\u202eevil" in result.stdout, view


def test_show_prints_every_field_escaped_and_the_error_on_its_own_lines(
    hostile: tuple[str, UUID, UUID],
) -> None:
    url, root, _ = hostile
    out = cqrs("show", str(root), "--store", url).stdout

    assert f"command shop.Import{ESCAPED}Prices {root}" in out
    assert f"requested by    user:{ESCAPED}" in out
    assert f"service         svc{ESCAPED}" in out
    assert f"✗ failed: Err{ESCAPED}: first {ESCAPED}\n" in out
    assert f"\n                second {ESCAPED}" in out  # under the first line of the value
    assert f"traceparent: {ESCAPED}" in out
    assert f"x-{ESCAPED}: {ESCAPED}" in out
    assert "\\u202eevil" in out  # the payload too (JSON escapes of these characters)


def test_one_line_views_keep_a_message_on_one_line(hostile: tuple[str, UUID, UUID]) -> None:
    url, root, _ = hostile
    out = cqrs("trace", CID, "--store", url, env={"COLUMNS": "2000"}).stdout

    (line,) = [line for line in out.splitlines() if root.hex[:8] in line]
    assert f"Err{ESCAPED}: first \\x1b[2J" in line
    assert line.endswith("…")  # the first line, cut at 240 characters
    assert "second" not in out


@pytest.mark.parametrize(
    "view", [["trace", CID], ["trace", CID, "--flat"], ["show", "root"], ["effects", "root"],
             ["causes", "child"], ["list"]],
    ids=" ".join,
)  # fmt: skip
def test_json_stays_exact_and_valid_and_safe_to_print(
    hostile: tuple[str, UUID, UUID], view: list[str]
) -> None:
    url, root, child = hostile
    args = [{"root": str(root), "child": str(child)}.get(arg, arg) for arg in view]
    result = cqrs(*args, "--store", url, "--json")

    assert result.exit_code == 0, result.output
    assert dangerous(result.stdout) == []
    data = json.loads(result.stdout)
    text = json.dumps(data, ensure_ascii=False)
    assert HOSTILE in text or json.dumps(HOSTILE, ensure_ascii=False)[1:-1] in text


def test_show_json_is_the_stored_record_exactly(hostile: tuple[str, UUID, UUID]) -> None:
    url, root, _ = hostile
    result = cqrs("show", str(root), "--store", url, "--json")

    record = run(stored(url, "get", root))
    assert json.loads(result.stdout) == record.to_dict()
    assert record.requested_by == f"user:{HOSTILE}"


@pytest.mark.parametrize(
    "args",
    [
        ["trace", f"req{HOSTILE}"],
        ["show", f"6c1f{HOSTILE}"],
        ["list", "--requested-by", HOSTILE],
        ["list", "--since", HOSTILE],
        ["list", "--store", f"sqlite:///nowhere/x{HOSTILE}.db"],
        ["list", "--store", f"mysql{HOSTILE}://x"],
        ["list", f"--{HOSTILE}"],
    ],
    ids=lambda args: args[0] + " " + args[1][:8].encode("unicode_escape").decode(),
)
def test_error_lines_print_what_was_typed_escaped(tmp_path: Path, args: list[str]) -> None:
    result = (
        cqrs(*args, "--store", sqlite_url(tmp_path / "absent.db"))
        if "--store" not in args
        else cqrs(*args)
    )

    assert result.exit_code != 0
    assert dangerous(result.stderr) == [], result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
