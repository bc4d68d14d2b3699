"""The README's Python examples run as printed."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_quick_start_runs_and_prints_the_propagated_ids():
    quick_start = _python_blocks()[0]
    result = subprocess.run(
        [sys.executable, "-c", quick_start], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    correlation_id, causation_id = result.stdout.split()
    assert correlation_id == "req-abc-123"
    assert re.fullmatch(r"[0-9a-f-]{36}", causation_id)


def test_the_recording_example_builds_the_causation_tree(tmp_path):
    quick_start, recording = _python_blocks()[:2]
    # The recording snippet continues the quick start inside main(): run both.
    program = quick_start.replace("asyncio.run(main())", "") + textwrap.dedent(
        """
        async def record() -> None:
            bus = Mediator()
            bus.register(PlaceOrder, PlaceOrderHandler(bus))
            bus.subscribe(OrderPlaced, SendConfirmation())
        {body}
            with correlation_scope("req-abc-123"):
                await bus.send(PlaceOrder(order_id="o-1", amount=42, requested_by="alice"))
        {tree}
            await store.close()

        asyncio.run(record())
        """
    ).format(
        body=textwrap.indent(recording.split("...")[0], "    "),
        tree=textwrap.indent(recording.split("...")[1], "    "),
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2].split() == ["__main__.PlaceOrder", "succeeded"]  # stable type names
    assert lines[-1].split() == ["__main__.OrderPlaced", "succeeded"]
    assert (tmp_path / "cqrs.db").exists()
