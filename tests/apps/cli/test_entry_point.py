"""The ``cqrs`` entry point without the ``[cli]`` extra says how to install it."""

from __future__ import annotations

import subprocess
import sys

from python_cqrs_core.apps.cli import INSTALL_HINT

# Runs main() in an interpreter where typer cannot be imported, as after a plain
# `pip install python-cqrs-core` (None in sys.modules makes `import typer` fail).
_WITHOUT = """
import sys
sys.modules[{blocked!r}] = None
sys.argv = ["cqrs", "--help"]
from python_cqrs_core.apps.cli import main
main()
"""


def run_without(library: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT.format(blocked=library)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_typer_cqrs_prints_how_to_install_the_extra_and_exits_2():
    result = run_without("typer")
    assert result.returncode == 2
    assert result.stderr.strip() == INSTALL_HINT
    assert "Traceback" not in result.stderr
    assert "pip install 'python-cqrs-core[cli]'" in INSTALL_HINT


def test_without_rich_cqrs_prints_the_same_hint():
    result = run_without("rich")
    assert (result.returncode, result.stderr.strip()) == (2, INSTALL_HINT)


def test_with_the_extra_cqrs_runs_the_commands():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv=['cqrs','--help'];"
            "from python_cqrs_core.apps.cli import main; main()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "trace" in result.stdout
