"""Every Python block of README.md and docs/ runs, unchanged.

A document's blocks run in order, in one namespace (as a reader types them into one
session), in a fresh interpreter whose working directory is an empty temporary
directory; top-level ``await`` works, as in ``python -m asyncio``.  A block that is not
meant to run on its own (a signature, an excerpt that needs the reader's own
collaborators) is marked by the line before its fence::

    <!-- fragment -->
    ```python
    ...
    ```

Blocks that show an error catch it, so a block that raises is a failing document.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FRAGMENT = "<!-- fragment -->"
_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the fence in the document
    code: str


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def runnable_documents() -> list[Path]:
    return [doc for doc in documents() if python_blocks(doc.read_text())[0]]


def python_blocks(text: str) -> tuple[list[Block], int]:
    """The runnable Python blocks of a markdown text, and how many were fragments."""
    blocks: list[Block] = []
    fragments = 0
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if before == FRAGMENT:
            fragments += 1
            continue
        blocks.append(Block(text.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks, fragments


_DRIVER = r"""
import ast, asyncio, json, sys, traceback, types
blocks = json.loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
sys.modules["__main__"] = module = types.ModuleType("__main__")
module.__dict__.update(namespace)
namespace = module.__dict__
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
for line, code in blocks:
    try:
        compiled = compile(code, f"<block at line {line}>", "exec",
                           flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(compiled, namespace)
        if asyncio.iscoroutine(result):
            loop.run_until_complete(result)
    except BaseException:
        print(f"the block at line {line} failed:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
loop.run_until_complete(loop.shutdown_asyncgens())
loop.close()
"""


def run_blocks(blocks: list[Block], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=json.dumps([(block.line, block.code) for block in blocks]),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_the_block_finder_skips_fragments_and_knows_lines():
    text = "# t\n\n```python\nx = 1\n```\n\n<!-- fragment -->\n```python\ndef f(): ...\n```\n"
    blocks, fragments = python_blocks(text)
    assert [(b.line, b.code) for b in blocks] == [(3, "x = 1\n")]
    assert fragments == 1


def test_a_failing_block_fails_its_document(tmp_path):
    result = run_blocks([Block(1, "x = 1\n"), Block(5, "raise ValueError('no')\n")], tmp_path)
    assert result.returncode == 1
    assert "the block at line 5 failed" in result.stderr


@pytest.mark.parametrize(
    "document", runnable_documents(), ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_python_block_of_the_document_runs(document: Path, tmp_path: Path):
    blocks, _ = python_blocks(document.read_text())
    result = run_blocks(blocks, tmp_path)
    assert result.returncode == 0, f"{document.relative_to(ROOT)}:\n{result.stderr}"
