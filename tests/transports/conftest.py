"""Fixtures of the transport tests: the machine's Redis with a unique key prefix per
test, a private redis-server for fault tests, and both transports side by side.

Redis is the machine's local service (``scripts/test`` starts it).  Every test gets
its own key prefix and deletes its keys at the end, so tests never see each other's
streams.  If Redis cannot be reached the tests *fail*, saying so; they never skip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio as aioredis
from transport_testing import TransportFactory

from python_cqrs_core.transports import MemoryTransport, Transport
from python_cqrs_core.transports.redis import RedisTransport
from service_testing import REDIS_URL, PrivateRedis, new_prefix, redis_keyspace, start_private_redis


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test alone."""
    return new_prefix("cqrs-test")


@pytest.fixture
async def redis_client(redis_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the machine's Redis; the test's keys are deleted afterwards."""
    async with redis_keyspace(prefix, needed_by="the transport tests", url=redis_url) as client:
        yield client


@pytest.fixture
async def make_redis_transport(
    redis_client: aioredis.Redis, redis_url: str, prefix: str
) -> AsyncIterator[Callable[..., RedisTransport]]:
    """``make_redis_transport(**options)``: transports on the test's prefix, closed
    after the test."""
    made: list[RedisTransport] = []

    def make(**options: object) -> RedisTransport:
        options.setdefault("prefix", prefix)
        transport = RedisTransport.from_url(redis_url, **options)  # type: ignore[arg-type]
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()


@pytest.fixture(params=["memory", "redis"])
def make_transport(request: pytest.FixtureRequest) -> TransportFactory:
    """Each test using it runs once per transport: ``make_transport(claim_idle=...)``."""
    if request.param == "memory":
        return lambda **options: MemoryTransport(**options)
    factory: Callable[..., RedisTransport] = request.getfixturevalue("make_redis_transport")

    def make(**options: object) -> Transport:
        options.setdefault("poll_interval", 0.02)
        return factory(**options)

    return make


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A redis-server of this test alone, on a free port, that the test may stop and
    start again (with its append-only file, so a restart keeps the data)."""
    server = start_private_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()
