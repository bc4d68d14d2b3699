"""docs/testing.md says what really happens: its blocks print the output it shows, and
its test module passes under pytest."""

from __future__ import annotations

import json
import re
import subprocess
import sys
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


# Runs the page's Python blocks in order, in one namespace, with top-level await (as
# tests/test_docs.py does), and prints what each block printed, as JSON.
_DRIVER = r"""
import ast, asyncio, contextlib, io, json, sys
namespace = {"__name__": "__main__"}
loop = asyncio.new_event_loop()
outputs = []
for code in json.loads(sys.stdin.read()):
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        result = eval(compile(code, "docs/testing.md", "exec",
                              flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), namespace)
        if asyncio.iscoroutine(result):
            loop.run_until_complete(result)
    outputs.append(output.getvalue())
print(json.dumps(outputs))
"""


def test_each_printed_output_is_the_text_block_that_follows_it(tmp_path: Path):
    page = blocks()
    run = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=json.dumps([code for language, code in page if language == "python"]),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    printed = iter(json.loads(run.stdout))
    compared = 0
    last = ""
    for language, code in page:
        if language == "python":
            last = next(printed)
            continue
        assert last == code, f"the page shows:\n{code}\nthe code prints:\n{last}"
        compared += 1
    assert compared == 2


def test_the_test_module_of_the_page_passes_under_pytest(pytester: pytest.Pytester):
    (module,) = [code for language, code in blocks() if "def test_" in code]
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_accounts=module)
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_opening_an_account_announces_it PASSED*",
            "*test_the_opening_is_recorded PASSED*",
        ]
    )
