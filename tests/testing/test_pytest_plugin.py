"""The opt-in pytest plugin, tested as a user's project uses it (through pytester).

Each project runs in its own interpreter: its message classes (``shop.PlaceOrder``)
must not outlive it in this one, where a registry's ``discover`` would meet them.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SHOP = """
from python_cqrs_core import BaseCommand, BaseEvent, Mediator


class PlaceOrder(BaseCommand):
    order_id: str


class OrderPlaced(BaseEvent):
    order_id: str


def wire(bus: Mediator) -> None:
    async def place(command: PlaceOrder) -> None:
        await bus.publish(OrderPlaced(order_id=command.order_id))

    bus.register(PlaceOrder, place)
"""

USES_EVERY_FIXTURE = """
import pytest
from shop import OrderPlaced, PlaceOrder, wire

from python_cqrs_core import Mediator
from python_cqrs_core.store import MemoryStore, MessageRecorder
from python_cqrs_core.testing import Capture, assert_chain

{marker}
async def test_a_dispatch_is_captured_and_recorded(
    cqrs_bus, cqrs_dispatched, cqrs_store, cqrs_recorder
):
    assert isinstance(cqrs_bus, Mediator)
    assert isinstance(cqrs_dispatched, Capture) and cqrs_dispatched.bus is cqrs_bus
    assert isinstance(cqrs_store, MemoryStore) and len(cqrs_store) == 0
    assert isinstance(cqrs_recorder, MessageRecorder) and cqrs_recorder.store is cqrs_store
    wire(cqrs_bus)
    command = PlaceOrder(order_id="o-1", correlation_id="req-1")
    await cqrs_bus.send(command)

    spec = "PlaceOrder  !succeeded\\n  OrderPlaced"
    assert_chain(cqrs_dispatched, spec, correlation_id="req-1")
    assert_chain(await cqrs_store.build_causation_tree("req-1"), spec)
    assert cqrs_dispatched.one(OrderPlaced).causation_id == command.request_id
"""

TEARDOWN = """
import pytest
from shop import PlaceOrder, wire

left_behind = []

{marker}
async def test_first(cqrs_bus, cqrs_dispatched, cqrs_store, cqrs_recorder):
    wire(cqrs_bus)
    await cqrs_bus.send(PlaceOrder(order_id="o-1"))
    left_behind.extend([cqrs_bus, cqrs_dispatched, cqrs_store, cqrs_recorder])

{marker}
async def test_second_starts_from_nothing(cqrs_bus, cqrs_dispatched, cqrs_store):
    bus, dispatched, store, recorder = left_behind
    assert cqrs_bus is not bus and cqrs_store is not store
    assert len(cqrs_dispatched) == 0 and len(cqrs_store) == 0
    assert not dispatched.capturing and len(dispatched) == 2  # stopped, still readable
    assert [entry.middleware for entry in bus._middleware] == [recorder._record]
    with pytest.raises(RuntimeError, match="closed"):
        await store.get("anything")
    with pytest.raises(RuntimeError, match="this MessageRecorder is closed"):
        await bus.send(PlaceOrder(order_id="o-2"))
"""


# pytest-asyncio warns about every project that leaves its loop scope unset
LOOP_SCOPE = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


def write_project(pytester: pytest.Pytester, test_module: str, *, ini: str = "") -> None:
    """A user's project: the shop, a conftest enabling the plugin, one test module and
    the pytest settings ``ini``."""
    pytester.makepyfile(shop=SHOP)
    pytester.makeconftest('pytest_plugins = ["python_cqrs_core.testing.pytest_plugin"]\n')
    pytester.makepyfile(test_module)
    pytester.makeini(f"{LOOP_SCOPE}{ini}\n")


@pytest.mark.parametrize(
    ("ini", "marker"),
    [
        ("", "@pytest.mark.asyncio"),  # pytest-asyncio's default, strict mode
        ("asyncio_mode = auto", ""),
    ],
    ids=["strict-mode", "auto-mode"],
)
def test_every_fixture_works_in_both_pytest_asyncio_modes(pytester, ini, marker):
    write_project(pytester, USES_EVERY_FIXTURE.format(marker=marker), ini=ini)
    result = pytester.runpytest_subprocess("-W", "error::pytest.PytestUnraisableExceptionWarning")
    result.assert_outcomes(passed=1)


def test_each_test_gets_fresh_fixtures_and_they_are_torn_down_after_it(pytester):
    write_project(pytester, TEARDOWN.format(marker=""), ini="asyncio_mode = auto")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)


def test_the_plugin_is_enabled_from_a_test_module_too(pytester):
    pytester.makeini(LOOP_SCOPE)
    pytester.makepyfile(
        test_direct=(
            'pytest_plugins = ["python_cqrs_core.testing.pytest_plugin"]\n\n'
            "def test_a_bus(cqrs_bus, cqrs_dispatched):\n"
            "    assert cqrs_dispatched.bus is cqrs_bus\n"
        )
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_the_fixtures_do_not_exist_unless_the_plugin_is_enabled(pytester):
    pytester.makeini(LOOP_SCOPE)
    pytester.makepyfile("def test_a_bus(cqrs_bus):\n    pass\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'cqrs_bus' not found*"])


def test_a_failing_chain_reads_well_in_the_pytest_report(pytester):
    write_project(
        pytester,
        '''
from shop import PlaceOrder, wire
from python_cqrs_core.testing import assert_chain


async def test_the_order_is_shipped(cqrs_bus, cqrs_dispatched):
    wire(cqrs_bus)
    await cqrs_bus.send(PlaceOrder(order_id="o-1"))
    assert_chain(cqrs_dispatched, """
        PlaceOrder
        └── OrderShipped
    """)
''',
        ini="asyncio_mode = auto",
    )
    result = pytester.runpytest_subprocess("-ra")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*assert_chain(cqrs_dispatched, *",  # the user's line, not the library's
            "E       AssertionError: the causation chain differs from the spec: under "
            "PlaceOrder (line 2): expected ?OrderShipped?, got ?OrderPlaced?",
            "E       expected:",
            "E           PlaceOrder",
            "E           └── OrderShipped",
            "E       actual (correlation id *):",
            "E           PlaceOrder",
            "E           └── OrderPlaced",
            "FAILED test_*.py::test_the_order_is_shipped*",
        ]
    )
    assert "chains.py" not in result.stdout.str()  # the helper's frames are hidden
