"""Fixtures of the worker tests: both transports side by side (the memory one, and Redis
Streams on the machine's Redis with a key prefix of the test's own).

Redis is the machine's local service; a test that needs it fails, saying so, when it
cannot be reached.  The test's keys are deleted at its end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from python_cqrs_core.transports import MemoryTransport, Transport
from python_cqrs_core.transports.redis import RedisTransport

REDIS_URL = os.environ.get("CQRS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

TransportFactory = Callable[..., Transport]


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of this test alone."""
    return f"cqrs-worker-test:{os.getpid()}:{secrets.token_hex(4)}:"


@pytest.fixture
async def redis_client(prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the machine's Redis; the test's keys are deleted afterwards."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as exc:
        await client.aclose()
        pytest.fail(
            f"Redis is required by the worker tests and is not reachable at {REDIS_URL} "
            f"({type(exc).__name__}: {exc}); start it with scripts/services",
            pytrace=False,
        )
    yield client
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def make_redis_transport(
    redis_client: aioredis.Redis, prefix: str
) -> AsyncIterator[Callable[..., RedisTransport]]:
    """``make_redis_transport(**options)``: transports on the test's prefix, closed
    after the test."""
    made: list[RedisTransport] = []

    def make(**options: object) -> RedisTransport:
        options.setdefault("prefix", prefix)
        options.setdefault("poll_interval", 0.02)
        transport = RedisTransport.from_url(REDIS_URL, **options)  # type: ignore[arg-type]
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()


@pytest.fixture(params=["memory", "redis"])
def make_transport(request: pytest.FixtureRequest) -> TransportFactory:
    """Each test using it runs once per transport: ``make_transport(**options)``."""
    if request.param == "memory":
        return lambda **options: MemoryTransport(**options)
    factory: Callable[..., RedisTransport] = request.getfixturevalue("make_redis_transport")
    return factory
