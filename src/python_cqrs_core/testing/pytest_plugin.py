"""pytest fixtures for testing code built on python-cqrs-core.

Opt in from a ``conftest.py`` (or a test module) of your project; the plugin is never
loaded on its own::

    pytest_plugins = ["python_cqrs_core.testing.pytest_plugin"]

Then ask for what a test needs::

    async def test_placing_an_order_reserves_stock(cqrs_bus, cqrs_dispatched):
        register_shop_handlers(cqrs_bus)                    # your application's wiring
        await cqrs_bus.send(PlaceOrder(order_id="o-1"))
        assert_chain(cqrs_dispatched, '''
            PlaceOrder
            └── OrderPlaced
                └── ReserveStock
        ''')

==================  ===========================================================  ========
fixture             what it is                                                   kind
==================  ===========================================================  ========
``cqrs_bus``        a fresh :class:`~python_cqrs_core.Mediator`, nothing on it   sync
``cqrs_dispatched`` a :func:`~python_cqrs_core.testing.capture` on ``cqrs_bus``,  sync
                    stopped after the test
``cqrs_store``      a new, empty ``memory://`` store, closed after the test       async
``cqrs_recorder``   a :class:`~python_cqrs_core.store.MessageRecorder` recording  async
                    ``cqrs_bus`` into ``cqrs_store`` (default options), closed
                    after the test
==================  ===========================================================  ========

The two async fixtures are ``pytest_asyncio`` fixtures when pytest-asyncio is
installed (so they work in its strict and auto modes alike), plain async fixtures
otherwise (for anyio's plugin).  All four are function-scoped: every test starts
from nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar, cast

import pytest

from ..mediator import Mediator
from ..store import MessageRecorder, MessageStore, open_store
from .capture import Capture, capture

__all__ = ["cqrs_bus", "cqrs_dispatched", "cqrs_recorder", "cqrs_store"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture(function: _F) -> _F:
    """Declare an async fixture with the async plugin that is installed."""
    try:
        from pytest_asyncio import fixture
    except ImportError:  # no pytest-asyncio: anyio's plugin runs plain async fixtures
        return cast(_F, pytest.fixture(function))
    return cast(_F, fixture(function))


@pytest.fixture
def cqrs_bus() -> Mediator:
    """A fresh mediator with no handlers, middleware or listeners."""
    return Mediator()


@pytest.fixture
def cqrs_dispatched(cqrs_bus: Mediator) -> Iterator[Capture]:
    """Everything dispatched through ``cqrs_bus`` during the test (a
    :class:`~python_cqrs_core.testing.Capture`), removed from the bus afterwards."""
    with capture(cqrs_bus) as dispatched:
        yield dispatched


@_async_fixture
async def cqrs_store() -> AsyncIterator[MessageStore]:
    """A new, empty in-memory message store, closed after the test."""
    store = await open_store("memory://")
    try:
        yield store
    finally:
        await store.close()


@_async_fixture
async def cqrs_recorder(
    cqrs_bus: Mediator, cqrs_store: MessageStore
) -> AsyncIterator[MessageRecorder]:
    """A :class:`~python_cqrs_core.store.MessageRecorder` recording ``cqrs_bus`` into
    ``cqrs_store``, closed (flushed) after the test, before the store."""
    recorder = MessageRecorder(cqrs_store).install(cqrs_bus)
    try:
        yield recorder
    finally:
        await recorder.close()
