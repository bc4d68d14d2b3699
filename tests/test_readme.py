"""The README's Python examples run as printed and print what they say.

``tests/test_docs.py`` runs every block of every document; this file checks what the
README's two examples print, since the README promises it in comments.
"""

from __future__ import annotations

import re
from pathlib import Path

from test_docs import ROOT, python_blocks, run_blocks

README = ROOT / "README.md"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def test_the_quick_start_and_the_recording_example_print_the_chain(tmp_path: Path):
    quick_start, recording = python_blocks(README.read_text())[0][:2]
    result = run_blocks([quick_start, recording], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # the quick start, then the recorded run: SendConfirmation prints the ids it got
    for line in (lines[0], lines[1]):
        correlation_id, causation_id = line.split()
        assert correlation_id == "req-abc-123"
        assert re.fullmatch(_UUID, causation_id)
    # the recorded tree, read back from the SQLite file, under stable type names
    assert [line.split() for line in lines[2:]] == [
        ["__main__.PlaceOrder", "succeeded"],
        ["__main__.OrderPlaced", "succeeded"],
    ]
    assert (tmp_path / "cqrs.db").exists()
