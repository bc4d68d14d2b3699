"""Helpers for tests that run against the machine's services or a private one.

``eventually`` waits for a condition; ``redis_keyspace`` is a test's own key prefix on
the machine's Redis (reachable, or the test fails saying so; its keys deleted at the
end); ``PrivateRedis`` is a redis-server on a free port that a fault test owns (it may
stop it and start it again: its append-only file keeps the streams), so the machine's
shared Redis is never stopped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis

REDIS_URL = os.environ.get("CQRS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
"""The machine's Redis (``scripts/test`` starts it)."""


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "the condition",
) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(interval)


def new_prefix(name: str) -> str:
    """A Redis key prefix no other test (or test run) uses: ``name:pid:random:``."""
    return f"{name}:{os.getpid()}:{secrets.token_hex(4)}:"


async def delete_keys(prefix: str, url: str = REDIS_URL) -> None:
    """Delete every key under ``prefix`` (on a client of its own: the test may have
    closed the one it used)."""
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def redis_keyspace(
    prefix: str, *, needed_by: str, url: str = REDIS_URL
) -> AsyncIterator[aioredis.Redis]:
    """A client of the Redis at ``url`` for a test that keeps its keys under
    ``prefix``; they are deleted when the block ends.  An unreachable Redis fails the
    test, naming ``needed_by`` and how to start it: a test never skips for it."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as exc:
        await client.aclose()
        pytest.fail(
            f"Redis is required by {needed_by} and is not reachable at {url} "
            f"({type(exc).__name__}: {exc}); start it with scripts/services",
            pytrace=False,
        )
    try:
        yield client
    finally:
        await client.aclose()
        await delete_keys(prefix, url)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PrivateRedis:
    """A redis-server on 127.0.0.1:``port`` that a test owns: stop it, start it again."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is required by the fault tests (apt install redis)"
        self.process = subprocess.Popen(
            [
                executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the private redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def start_private_redis(directory: Path) -> PrivateRedis:
    server = PrivateRedis(directory)
    server.start()
    return server
