"""``cqrs worker``: a real process consuming a stream, stopped by SIGTERM in the middle
of it: the deliveries in flight are finished and acknowledged, nothing is lost, and it
exits 0 within its grace."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from worker_service import CODEC, DESTINATION, GROUP, OrderPlaced

from python_cqrs_core.transports.redis import RedisTransport
from service_testing import REDIS_URL, new_prefix, redis_keyspace

HERE = Path(__file__).resolve().parent
CQRS = str(Path(sys.executable).with_name("cqrs"))
ORDERS = 300


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own on the machine's Redis; its keys go at the end."""
    prefix = new_prefix("cqrs-cli-worker")
    async with redis_keyspace(prefix, needed_by="the cqrs worker tests"):
        yield prefix


def start_worker(prefix: str, *options: str, delay: float = 0.05) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "WORKER_TEST_PREFIX": prefix,
        "WORKER_TEST_DELAY": str(delay),
        "CQRS_TEST_REDIS_URL": REDIS_URL,
    }
    return subprocess.Popen(
        [CQRS, "worker", "worker_service:worker", "--app-dir", str(HERE), *options],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    """The worker processes a test starts: killed at its end if still running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


async def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.05)


async def stop(process: subprocess.Popen[str], timeout: float) -> tuple[int, str, float]:
    """SIGTERM ``process``; its exit code, its stderr and how long it took to exit."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.to_thread(process.communicate, timeout=timeout)
    return process.returncode, stderr, time.monotonic() - started


async def test_sigterm_in_the_middle_of_a_stream_acks_what_is_in_flight_and_loses_nothing(
    redis_prefix, workers
):
    transport = RedisTransport.from_url(REDIS_URL, prefix=redis_prefix)
    client = transport.client
    handled_key = f"{redis_prefix}handled"
    try:
        await transport.ensure_group(DESTINATION, GROUP)
        for order_id in range(ORDERS):
            headers, body = CODEC.encode(OrderPlaced(order_id=order_id))
            await transport.publish(DESTINATION, headers, body)

        workers.append(first := start_worker(redis_prefix, "--grace", "10"))

        async def some_handled() -> bool:
            return await client.hlen(handled_key) >= 40

        await wait_for(some_handled, 30, "the first deliveries handled")
        code, stderr, took = await stop(first, timeout=20)
        assert code == 0, stderr
        assert took < 10
        assert "Traceback" not in stderr
        assert "SIGTERM received, stopping" in stderr
        assert "worker stock stopped cleanly" in stderr

        handled = {int(k): int(v) for k, v in (await client.hgetall(handled_key)).items()}
        assert 40 <= len(handled) < ORDERS  # stopped in the middle of the stream
        assert set(handled.values()) == {1}
        pending = await client.xpending(f"{redis_prefix}{DESTINATION}", GROUP)
        assert pending["pending"] == 0  # every delivery it took was acknowledged
        assert await transport.lag(DESTINATION, GROUP) == ORDERS - len(handled)

        # a new worker takes the rest, and serves its metrics meanwhile
        workers.append(second := start_worker(redis_prefix, "--metrics-port", "0"))

        async def all_handled() -> bool:
            return await client.hlen(handled_key) == ORDERS

        await wait_for(all_handled, 60, "every order handled")
        code, stderr, _ = await stop(second, timeout=45)
        assert code == 0, stderr
        handled = {int(k): int(v) for k, v in (await client.hgetall(handled_key)).items()}
        assert sorted(handled) == list(range(ORDERS))
        assert set(handled.values()) == {1}  # nothing lost, nothing handled twice
        assert await transport.lag(DESTINATION, GROUP) == 0
    finally:
        await transport.close()


async def test_the_metrics_port_serves_prometheus_text_while_the_worker_runs(redis_prefix, workers):
    workers.append(process := start_worker(redis_prefix, "--metrics-port", "0"))
    assert process.stderr is not None
    port = None
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline:
        line = await asyncio.to_thread(process.stderr.readline)
        found = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", line)
        port = int(found.group(1)) if found else None
    assert port is not None, "the worker did not say where its metrics are"
    url = f"http://127.0.0.1:{port}/metrics"
    text = (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())).decode()
    assert 'cqrs_consumer_acked_total{destination="orders",group="stock",worker="stock"} 0.0' in (
        text
    )
    code, stderr, _ = await stop(process, timeout=20)
    assert code == 0, stderr


def run_cqrs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CQRS, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("worker_service", "expected module:attribute, such as services.inventory:worker"),
        ("no_such_service:worker", "no module named 'no_such_service'"),
        ("worker_service:nothing", "module 'worker_service' has no attribute 'nothing'"),
        ("worker_service:GROUP", "expected a Worker, or a function or async context manager"),
    ],
)
def test_a_name_that_does_not_lead_to_a_worker_is_one_error_line_and_exit_2(target, problem):
    result = run_cqrs("worker", target, "--app-dir", str(HERE))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and problem in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--log-level", "loud"], "--log-level: expected one of debug, info, warning, error"),
        (["--app-dir", "/no/such/dir"], "--app-dir: '/no/such/dir' is not a directory"),
        (["--grace", "-1"], "Invalid value for '--grace'"),
    ],
)
def test_bad_options_are_one_error_line_and_exit_2(options, problem):
    result = run_cqrs("worker", "worker_service:worker", *options)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {problem}"), result.stderr


def test_metrics_without_prometheus_client_say_how_to_install_it():
    script = (
        "import sys; sys.modules['prometheus_client'] = None;"
        "sys.argv = ['cqrs', 'worker', 'worker_service:worker', '--metrics-port', '9100'];"
        "from python_cqrs_core.apps.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: --metrics-port serves Prometheus metrics with ")
    assert "pip install 'python-cqrs-core[prometheus]'" in result.stderr
