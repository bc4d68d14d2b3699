"""The store contract (:mod:`python_cqrs_core.testing.store_contract`), run for each of
the library's backends: a backend is correct when its class passes.

The same classes are what a third-party backend writes; see the contract's docs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from store_testing import create_schema

from python_cqrs_core.testing.store_contract import (
    DurableStoreContract,
    MessageStoreContract,
    StoreLocation,
)


class TestMemoryStore(MessageStoreContract):
    async def new_location(self) -> StoreLocation:
        return StoreLocation("memory://")


class TestSQLiteStore(DurableStoreContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path
        self.stores = 0

    async def new_location(self) -> StoreLocation:
        self.stores += 1
        return StoreLocation(f"sqlite:///{self.directory / f'store-{self.stores}.db'}")


class TestPostgresStore(DurableStoreContract):
    """Each store is a fresh schema of the test run's database (its ``search_path``)."""

    @pytest.fixture(autouse=True)
    def _database(self, postgres_url: str) -> None:
        self.url = postgres_url

    async def new_location(self) -> StoreLocation:
        schema = await create_schema(self.url)
        return StoreLocation(self.url, {"server_settings": {"search_path": schema}})
