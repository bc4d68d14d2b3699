"""docs/testing.md says what really happens: its blocks print the output it shows, and
its test module passes under pytest."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
_BLOCK = re.compile(r"^(<!-- fragment -->\n)?```(python|text)\n(.*?)^```$", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of the page's blocks, fragments left out."""
    return [
        (language, code)
        for fragment, language, code in _BLOCK.findall(DOC.read_text())
        if not fragment
    ]


def test_each_printed_output_is_the_text_block_that_follows_it():
    """Run the page's Python blocks in order, in one namespace (as tests/test_docs.py
    does), and compare what each prints with the ``text`` block after it."""
    namespace: dict[str, object] = {"__name__": "docs_testing"}
    loop = asyncio.new_event_loop()
    compared = 0
    printed = ""
    try:
        for language, code in blocks():
            if language == "text":
                assert printed == code, f"the page shows:\n{code}\nthe code prints:\n{printed}"
                compared += 1
                continue
            output = io.StringIO()
            compiled = compile(code, str(DOC), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            with contextlib.redirect_stdout(output):
                result = eval(compiled, namespace)
                if asyncio.iscoroutine(result):
                    loop.run_until_complete(result)
            printed = output.getvalue()
    finally:
        loop.close()
    assert compared == 2


def test_the_test_module_of_the_page_passes_under_pytest(pytester: pytest.Pytester):
    (module,) = [code for language, code in blocks() if "def test_" in code]
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_accounts=module)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_opening_an_account_announces_it PASSED*",
            "*test_the_opening_is_recorded PASSED*",
        ]
    )
