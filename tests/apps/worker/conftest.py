"""Fixtures of the worker tests: both transports side by side (the memory one, and Redis
Streams on the machine's Redis with a key prefix of the test's own).

Redis is the machine's local service; a test that needs it fails, saying so, when it
cannot be reached.  The test's keys are deleted at its end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from python_cqrs_core.transports import MemoryTransport, Transport
from python_cqrs_core.transports.redis import RedisTransport
from service_testing import REDIS_URL, new_prefix, redis_keyspace

TransportFactory = Callable[..., Transport]


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of this test alone."""
    return new_prefix("cqrs-worker-test")


@pytest.fixture
async def redis_client(prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the machine's Redis; the test's keys are deleted afterwards."""
    async with redis_keyspace(prefix, needed_by="the worker tests") as client:
        yield client


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
