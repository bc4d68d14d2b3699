"""Fixtures of the Observatory tests: a store with the shop's orders recorded, on SQLite
and on PostgreSQL (the machine's local service: the tests fail if it is down), and the
Observatory serving it over real HTTP.

``orders`` records 12 orders (36 records): order 3 fails with an HTML error message,
every ``PlaceOrder`` has a ``<script>`` note and an e-mail address (personal data).
The Observatory opens the store read-only, on its own connection, as it does when it
runs as a process of its own.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from observatory_testing import record_orders, running

from postgres_testing import admin, database_url, temporary_database
from python_cqrs_core.apps.observatory import create_app
from python_cqrs_core.store import MessageStore, open_store

ORDERS = range(1, 13)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database made for this run of the Observatory tests, dropped at the end."""
    with temporary_database("cqrs_obs", needed_by="the Observatory tests") as name:
        yield database_url(name)


@dataclass
class StoreLocation:
    """Where a test's store lives, and the options that open it (a PostgreSQL store
    lives in a schema of its own)."""

    url: str
    options: dict[str, Any]

    async def open(self, *, read_only: bool = False) -> MessageStore:
        return await open_store(self.url, read_only=read_only, **self.options)


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> StoreLocation:
    """An empty store, on each backend (the test runs once per backend)."""
    if request.param == "sqlite":
        return StoreLocation(f"sqlite:///{tmp_path / 'cqrs.db'}", {})
    url = request.getfixturevalue("postgres_url")
    schema = f"obs_{secrets.token_hex(6)}"
    asyncio.run(admin(f'CREATE SCHEMA "{schema}"', url))
    return StoreLocation(url, {"server_settings": {"search_path": schema}})


@pytest.fixture
async def writer(location: StoreLocation) -> AsyncIterator[MessageStore]:
    """The application's store: where the shop records."""
    store = await location.open()
    yield store
    await store.close()


@pytest.fixture
async def orders(writer: MessageStore) -> list[str]:
    """The correlation ids of the 12 recorded orders, oldest first."""
    return await record_orders(writer, ORDERS)


@pytest.fixture
async def reader(location: StoreLocation, orders: list[str]) -> AsyncIterator[MessageStore]:
    """The Observatory's own read-only connection to the store."""
    store = await location.open(read_only=True)
    yield store
    await store.close()


@pytest.fixture
async def client(reader: MessageStore) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the Observatory serving the recorded orders."""
    async with running(create_app(reader, poll_interval=0.05)) as http:
        yield http
