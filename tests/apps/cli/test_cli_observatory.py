"""``cqrs observatory``: serves the store until stopped; says how to install the extra
without it; a bad setting is one error line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cli_testing import cqrs

from python_cqrs_core.apps.cli.observatory import INSTALL_OBSERVATORY

CQRS = str(Path(sys.executable).with_name("cqrs"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_it_serves_the_store_until_interrupted(
    url: str, store_path: Path, demo: object, stop: signal.Signals
) -> None:
    files = sorted(store_path.parent.iterdir())
    port = free_port()
    process = subprocess.Popen(
        [CQRS, "observatory", "--store", url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CQRS_OBSERVATORY_TOKEN": ""},
    )
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = get(f"http://127.0.0.1:{port}/api/status")
                break
            except OSError:
                time.sleep(0.1)
        assert status is not None, process.communicate(timeout=5)
        code, body = status
        assert code == 200
        answer = json.loads(body)
        assert answer["store"] == url
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
        assert f"Observatory on http://127.0.0.1:{port}/timeline" in stderr
        assert "Traceback" not in stderr
        # The store was closed before the process ended: no -wal or -shm left behind.
        assert sorted(store_path.parent.iterdir()) == files
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_without_the_extra_it_says_how_to_install_it() -> None:
    script = (
        "import sys; sys.modules['fastapi'] = None;"
        "sys.argv = ['cqrs', 'observatory'];"
        "from python_cqrs_core.apps.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {INSTALL_OBSERVATORY}\n"


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (["--token", "short"], 2, "error: token must be at least 16 printable ASCII characters"),
        (
            ["--host", "0.0.0.0"],
            2,
            "error: the Observatory shows business data: to bind 0.0.0.0 (reachable from",
        ),
        (["--port", "70000"], 2, "error: Invalid value for '--port'"),
        (
            ["--transport", "http://app:s3cret@broker/0", "--dead-letters", "orders.events"],
            2,
            "error: transport: the Observatory reads dead letters from Redis Streams",
        ),
        (
            ["--dead-letters", "orders.events"],
            2,
            "error: dead_letter_destinations need a transport to read them from",
        ),
        (["--apm-url", "ftp://apm/{trace_id}"], 2, "error: "),
    ],
)
def test_a_bad_setting_is_one_error_line(url: str, args: list[str], code: int, error: str) -> None:
    result = cqrs("observatory", "--store", url, "--port", str(free_port()), *args)
    assert result.exit_code == code, result.output
    assert result.output.startswith(error), result.output
    assert len(result.output.splitlines()) == 1
    assert "s3cret" not in result.output
    assert "short" not in result.output.partition("(")[0]  # the token is never repeated


def test_a_store_that_cannot_be_opened_is_one_error_line(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    result = cqrs("observatory", "--store", missing, "--port", str(free_port()))
    assert result.exit_code == 1
    assert result.output.startswith("error: no message store at ")
    assert not (tmp_path / "missing.db").exists()


def test_a_port_in_use_is_one_error_line(url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cqrs("observatory", "--store", url, "--port", str(port))
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
