"""How recorded messages read in every view: durations, ids, names, errors, order, the
effects tree, and stored text made safe for a terminal."""

from __future__ import annotations

import doctest
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from python_cqrs_core.apps import presentation
from python_cqrs_core.apps.presentation import (
    ErrorSummary,
    chronological,
    display_handler_name,
    display_type_name,
    duration,
    effects_tree,
    error_summary,
    first_line,
    printable,
    short_id,
    terminal_json,
)
from python_cqrs_core.store import HandlerOutcome, MessageRecord

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def record(n: int, cause: int | None = None, **fields: Any) -> MessageRecord:
    values: dict[str, Any] = {
        "message_id": UUID(int=n),
        "kind": "event",
        "message_type": f"shop.Step{n}",
        "correlation_id": "req-1",
        "causation_id": None if cause is None else str(UUID(int=cause)),
        "requested_by": "user:ada",
        "requested_at": T0 + timedelta(milliseconds=n),
        "recorded_at": T0 + timedelta(seconds=1),
        "payload": {},
        "outcome": "succeeded",
        "handlers": (),
        "error_type": None,
        "error_message": None,
        "duration_ms": 1.0,
        "headers": {},
        "position": n,
    }
    values.update(fields)
    return MessageRecord(**values)


# -- printable ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # CSI: colours
        (
            "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
            "\\x1b]8;;https://evil.example\\x1b\\click\\x1b]8;;\\x1b\\",
        ),  # OSC 8: a hyperlink
        ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),  # OSC: window title, ended by BEL
        ("paid\rrefunded", "paid\\rrefunded"),  # carriage return overwrites the line
        ("ok\x08\x08no", "ok\\x08\\x08no"),  # backspace
        ("a\x00b\x7fc", "a\\x00b\\x7fc"),  # NUL and DEL
        ("\x9b31m", "\\x9b31m"),  # C1 CSI, one byte
        ("\x9d0;t\x9c", "\\x9d0;t\\x9c"),  # C1 OSC and ST
        ("one\u2028two\u2029three", "one\\u2028two\\u2029three"),  # line/paragraph separators
        ("abc\u202edcba\u202c", "abc\\u202edcba\\u202c"),  # bidi override (Trojan Source)
        ("\u2066x\u2069\u200f\u061c", "\\u2066x\\u2069\\u200f\\u061c"),  # isolates, marks
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),  # cannot even be encoded
        ("tab\there", "tab\\there"),
        ("first\nsecond", "first\\nsecond"),
    ],
)
def test_printable_shows_every_character_that_acts_on_a_terminal_escaped(
    stored: str, shown: str
) -> None:
    assert printable(stored) == shown


def test_printable_leaves_ordinary_text_of_any_script_alone() -> None:
    for text in ("user:alice", "Zoë Ørsted", "注文を確定", "✓ ✗ └──", "C:\\Users\\ada", "👩‍💻"):
        assert printable(text) == text


def test_printable_output_holds_no_control_character_at_all() -> None:
    code_points = [*range(0x3000), *range(0xD800, 0xE000)]
    shown = printable("".join(map(chr, code_points)))

    assert not any(_dangerous(ch) for ch in shown)
    shown.encode("utf-8")


def _dangerous(ch: str) -> bool:
    code = ord(ch)
    return (
        code < 0x20
        or 0x7F <= code < 0xA0
        or code in (0x2028, 0x2029, 0x061C, 0x200E, 0x200F)
        or 0x202A <= code <= 0x202E
        or 0x2066 <= code <= 0x2069
        or 0xD800 <= code < 0xE000
    )


def test_printable_can_keep_newlines_for_views_that_show_a_message_in_full() -> None:
    assert printable("line 1\r\n\tline 2\x1b[K", keep_newlines=True) == (
        "line 1\\r\n\tline 2\\x1b[K"
    )


def test_printable_returns_the_same_string_when_there_is_nothing_to_escape() -> None:
    text = "sms-gateway.internal answered 503"
    assert printable(text) is text


# -- terminal_json -----------------------------------------------------------------------------


def test_terminal_json_is_the_same_json_with_terminal_controls_escaped() -> None:
    data = {
        "note": "\x1b[2Jwiped",
        "c1": "\x9b31m",
        "bidi": "abc\u202ecba",
        "sep": "a\u2028b",
        "del": "x\x7f",
        "who": "Zoë",
        "n": 3,
        "lone": "\udc80",
    }
    text = terminal_json(data)

    assert json.loads(text) == data
    assert not any(_dangerous(ch) for ch in text.replace("\n", ""))
    assert '"who": "Zoë"' in text  # other text stays readable
    assert "\\u202e" in text and "\\u009b" in text and "\\u007f" in text
    text.encode("utf-8")  # no lone surrogate left to break the output stream


def test_terminal_json_writes_datetimes_and_uuids_as_text() -> None:
    assert json.loads(terminal_json({"at": T0, "id": UUID(int=1)})) == {
        "at": str(T0),
        "id": str(UUID(int=1)),
    }


# -- ids, names, durations ---------------------------------------------------------------------


def test_short_id_is_the_first_8_hex_digits_whatever_the_spelling() -> None:
    value = UUID("6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c44")
    assert short_id(value) == short_id(str(value)) == short_id(value.hex.upper()) == "6c1f0d1e"
    assert short_id(value.hex, full=True) == str(value)


def test_short_id_keeps_an_opaque_id_whole_and_shows_none_as_a_dash() -> None:
    assert short_id("req-4f1c2a9b7d3e") == "req-4f1c2a9b7d3e"
    assert short_id("req-4f1c2a9b7d3e", full=True) == "req-4f1c2a9b7d3e"
    assert short_id(None) == "-"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("shop.PlaceOrder", "PlaceOrder"),
        ("python_cqrs_core.apps.cli._demo.OrderPlaced", "OrderPlaced"),
        ("PlaceOrder", "PlaceOrder"),
        ("trailing.", "trailing."),
    ],
)
def test_display_type_name_is_the_last_dotted_part(name: str, shown: str) -> None:
    assert display_type_name(name) == shown


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("PlaceOrderHandler", "PlaceOrderHandler"),
        ("test_flow.<locals>.import_prices", "import_prices"),
        ("make.<locals>.Outer.<locals>.Handler", "Handler"),
        ("orders.OrderService.place", "place"),
        ("OrderService.handle", "OrderService.handle"),
        ("app.<locals>.Projection.handle_event", "Projection.handle_event"),
        ("Sender.__call__", "Sender.__call__"),
    ],
)
def test_display_handler_name_is_short_but_keeps_the_class_of_a_handle_method(
    name: str, shown: str
) -> None:
    assert display_handler_name(name) == shown


@pytest.mark.parametrize(
    ("ms", "shown"),
    [
        (0.0, "0.00 ms"),
        (0.25, "0.25 ms"),
        (0.999, "1.00 ms"),
        (1.0, "1.0 ms"),
        (48.21, "48.2 ms"),
        (999.9, "999.9 ms"),
        (1000.0, "1.00 s"),
        (1200.0, "1.20 s"),
        (93_000.0, "93.00 s"),
        (None, "-"),
    ],
)
def test_duration_shows_the_digits_that_matter(ms: float | None, shown: str) -> None:
    assert duration(ms) == shown


# -- errors ------------------------------------------------------------------------------------


def test_first_line_marks_what_it_leaves_out() -> None:
    assert first_line("one line") == "one line"
    assert first_line("  padded  ") == "padded"
    assert first_line("first\nsecond") == "first …"
    assert first_line("first\rsecond") == "first …"  # any line boundary
    assert first_line("first\u2028second") == "first …"
    assert first_line("x" * 300) == "x" * 239 + "…"
    assert first_line("") == ""


def test_error_summary_of_a_record_that_succeeded_is_none() -> None:
    assert error_summary(record(1)) is None


def test_error_summary_is_the_records_own_error_first_line() -> None:
    failed = record(
        1,
        outcome="failed",
        error_type="SmsGatewayError",
        error_message="503 Service Unavailable\nTraceback (most recent call last): ...",
        handlers=(HandlerOutcome("Other", "failed", 1.0, "KeyError", "'x'"),),
    )

    summary = error_summary(failed)

    assert summary == ErrorSummary("SmsGatewayError", "503 Service Unavailable …")
    assert str(summary) == "SmsGatewayError: 503 Service Unavailable …"


def test_error_summary_falls_back_on_the_first_failed_handler() -> None:
    failed = record(
        1,
        outcome="failed",
        handlers=(
            HandlerOutcome("Audit", "succeeded", 0.1),
            HandlerOutcome("Notify", "failed", 12.0, "TimeoutError", None),
            HandlerOutcome("Bill", "failed", 3.0, "KeyError", "'card'"),
        ),
    )

    summary = error_summary(failed)

    assert summary == ErrorSummary("TimeoutError", "")
    assert str(summary) == "TimeoutError"


def test_error_summary_of_a_failure_without_any_detail_still_says_it_failed() -> None:
    assert error_summary(record(1, outcome="failed")) == ErrorSummary("Exception", "")


# -- order and shape ---------------------------------------------------------------------------


def test_chronological_orders_by_creation_then_by_recorded_position() -> None:
    child = record(2, cause=1, position=1)  # committed first by a concurrent request
    parent = record(1, position=2)
    twin = record(3, position=0, requested_at=child.requested_at)

    assert chronological([child, twin, parent]) == [parent, twin, child]


def test_effects_tree_hangs_each_effect_under_its_cause() -> None:
    root = record(1, cause=99)  # its own cause is outside the view: not an orphan here
    effects = [record(2, cause=1), record(3, cause=2), record(4, cause=1)]

    tree = effects_tree(root, effects)

    assert [(d, n.record.message_id.int) for d, n in tree.walk()] == [
        (0, 1),
        (1, 2),
        (2, 3),
        (1, 4),
    ]
    assert not any(node.orphan for _, node in tree.walk())


def test_effects_tree_keeps_an_effect_whose_cause_is_missing_under_the_root() -> None:
    root = record(1)
    stray = record(5, cause=42)

    tree = effects_tree(root, [record(2, cause=1), stray])

    assert [n.record.message_id.int for _, n in tree.walk()] == [1, 2, 5]
    assert [n.orphan for _, n in tree.walk()] == [False, False, True]


def test_effects_tree_of_a_message_that_caused_nothing_is_the_message_alone() -> None:
    tree = effects_tree(record(1), [])
    assert len(tree) == 1 and tree.children == []


def test_effects_tree_survives_corrupted_links_that_form_a_cycle() -> None:
    root = record(1)
    a = record(2, cause=3)
    b = record(3, cause=2)

    tree = effects_tree(root, [a, b])

    assert sorted(n.record.message_id.int for _, n in tree.walk()) == [1, 2, 3]


def test_effects_tree_does_not_change_the_records_it_is_given() -> None:
    root = record(1)
    effect = record(2, cause=1)
    before = [replace(root), replace(effect)]

    effects_tree(root, [effect])

    assert [root, effect] == before


def test_the_docstring_examples_of_the_presentation_module_hold() -> None:
    results = doctest.testmod(presentation)
    assert results.attempted >= 15
    assert results.failed == 0
