"""The dispatch context: reading it, and the ambient correlation of correlation_scope."""

from __future__ import annotations

import asyncio
import contextvars
from uuid import UUID, uuid4

import pytest

from python_cqrs_core import (
    BaseCommand,
    Mediator,
    correlation_scope,
    current_causation_id,
    current_correlation_id,
    current_message,
    current_requested_by,
)


class DoThing(BaseCommand):
    pass


def snapshot() -> tuple[object, ...]:
    return (
        current_message(),
        current_correlation_id(),
        current_causation_id(),
        current_requested_by(),
    )


def test_every_reader_returns_none_outside_any_dispatch_or_scope():
    assert snapshot() == (None, None, None, None)


def test_a_scope_sets_correlation_and_requested_by_but_no_message_or_cause():
    with correlation_scope("ext-123", requested_by="gateway") as scope:
        assert snapshot() == (None, "ext-123", None, "gateway")
        assert scope.correlation_id == "ext-123"
        assert scope.requested_by == "gateway"
    assert snapshot() == (None, None, None, None)


async def test_the_async_form_behaves_like_the_sync_form():
    async with correlation_scope("ext-async", requested_by="svc") as scope:
        await asyncio.sleep(0)
        assert snapshot() == (None, "ext-async", None, "svc")
    assert scope.correlation_id == "ext-async"
    assert snapshot() == (None, None, None, None)


def test_a_scope_without_an_id_generates_a_fresh_uuid():
    with correlation_scope() as first:
        assert isinstance(first.correlation_id, UUID)
        assert first.correlation_id.version == 4
        assert current_correlation_id() == first.correlation_id
    with correlation_scope() as second:
        pass
    assert first.correlation_id != second.correlation_id


def test_a_uuid_string_scope_id_is_parsed_to_a_uuid():
    value = uuid4()
    with correlation_scope(str(value)) as scope:
        assert current_correlation_id() == value
    assert type(scope.correlation_id) is UUID


@pytest.mark.parametrize("bad", ["", "a b", "x" * 129, "line\nbreak", 42])
def test_a_bad_scope_id_is_a_value_error_naming_the_argument(bad):
    with pytest.raises(ValueError, match=r"^correlation_id: "):
        correlation_scope(bad)


@pytest.mark.parametrize("bad", ["admin\nforged", "x" * 257, 7])
def test_a_bad_scope_requested_by_is_a_value_error_naming_the_argument(bad):
    with pytest.raises(ValueError, match=r"^requested_by: "):
        correlation_scope("ok", requested_by=bad)


def test_scopes_nest_and_restore_the_outer_one():
    with correlation_scope("outer", requested_by="alice"):
        with correlation_scope("inner"):
            assert (current_correlation_id(), current_requested_by()) == ("inner", None)
        assert (current_correlation_id(), current_requested_by()) == ("outer", "alice")
    assert current_correlation_id() is None


def test_the_outer_value_is_restored_when_the_block_raises():
    with correlation_scope("outer"):
        with pytest.raises(RuntimeError, match="boom"):
            with correlation_scope("inner"):
                raise RuntimeError("boom")
        assert current_correlation_id() == "outer"
    assert current_correlation_id() is None


async def test_the_async_form_restores_when_the_block_raises():
    with pytest.raises(KeyError):
        async with correlation_scope("inner"):
            raise KeyError("x")
    assert current_correlation_id() is None


def test_a_scope_object_cannot_be_entered_twice_at_once_but_can_be_reused_after():
    scope = correlation_scope("ext-1")
    with scope:
        with pytest.raises(RuntimeError, match="already active"):
            scope.__enter__()
        assert current_correlation_id() == "ext-1"
    with scope:
        assert current_correlation_id() == "ext-1"
    assert current_correlation_id() is None


def test_exiting_a_scope_that_was_never_entered_is_an_error():
    with pytest.raises(RuntimeError, match="without being entered"):
        correlation_scope("ext-1").__exit__(None, None, None)


async def test_concurrent_tasks_each_see_their_own_scope():
    async def in_scope(cid: str) -> list[object]:
        seen = []
        async with correlation_scope(cid):
            for _ in range(3):
                await asyncio.sleep(0)
                seen.append(current_correlation_id())
        return seen

    results = await asyncio.gather(*(in_scope(f"req-{i}") for i in range(50)))
    assert results == [[f"req-{i}"] * 3 for i in range(50)]


async def test_the_scope_follows_to_thread_and_create_task():
    async def snapshot_in_task() -> tuple[object, ...]:
        return snapshot()

    async with correlation_scope("ext-thread", requested_by="bob"):
        in_thread = await asyncio.to_thread(snapshot)
        in_task = await asyncio.create_task(snapshot_in_task())
    assert in_thread == (None, "ext-thread", None, "bob")
    assert in_task == (None, "ext-thread", None, "bob")


def test_a_fresh_context_knows_nothing_of_the_scope():
    with correlation_scope("ext-1"):
        assert contextvars.Context().run(current_correlation_id) is None


async def test_inside_a_handler_the_readers_describe_the_message_being_handled(bus: Mediator):
    seen: list[tuple[object, ...]] = []

    async def handle(command: DoThing) -> None:
        seen.append(snapshot())

    bus.register(DoThing, handle)
    cmd = DoThing(correlation_id="corr-1", causation_id="evt-9", requested_by="carol")
    await bus.send(cmd)
    assert seen == [(cmd, "corr-1", cmd.request_id, "carol")]
    assert snapshot() == (None, None, None, None)


async def test_a_scope_inside_a_handler_does_not_split_the_chain(bus: Mediator):
    seen: list[tuple[object, ...]] = []

    async def handle(command: DoThing) -> None:
        with correlation_scope("other-request", requested_by="mallory"):
            child = DoThing()
            seen.append(snapshot())
        seen.append((child.correlation_id, child.causation_id, child.requested_by))

    bus.register(DoThing, handle)
    cmd = DoThing(correlation_id="corr-1", requested_by="carol")
    await bus.send(cmd)
    assert seen == [
        (cmd, "corr-1", cmd.request_id, "carol"),
        ("corr-1", cmd.request_id, "carol"),
    ]


async def test_a_scope_reports_the_correlation_id_its_first_root_message_used():
    from python_cqrs_core import BaseCommand, Mediator

    class Ping(BaseCommand):
        pass

    bus = Mediator()

    async def ping(command: Ping) -> None:
        return None

    bus.register(Ping, ping)
    async with correlation_scope("from-header") as scope:
        assert scope.used_correlation_id == "from-header"  # nothing dispatched yet
        await bus.process(Ping(), correlation_id="explicit-1")
        await bus.process(Ping(), correlation_id="explicit-2")
    assert scope.used_correlation_id == "explicit-1"
    async with correlation_scope("from-header") as plain:
        await bus.send(Ping())
    assert plain.used_correlation_id == "from-header"


async def test_consuming_makes_a_received_message_current_and_optionally_the_parent():
    from uuid import uuid4

    from python_cqrs_core import BaseCommand, Mediator
    from python_cqrs_core.context import Consumption, consuming, current_consumption

    class Reserve(BaseCommand):
        pass

    seen: list[Reserve] = []
    bus = Mediator()

    async def reserve(command: Reserve) -> None:
        seen.append(command)

    bus.register(Reserve, reserve)
    received = Consumption(
        message_id=uuid4(),
        message_type="orders.OrderPlaced",
        correlation_id="req-77",
        causation_id=None,
        requested_by="alice",
        transport="memory",
        destination="orders.events",
        group="inventory",
    )
    assert current_consumption() is None
    with consuming(received, as_parent=True) as consumption:
        assert current_consumption() is consumption is received
        assert current_message() is None  # no local message object
        await bus.send(Reserve())
    assert current_consumption() is None and current_correlation_id() is None
    child = seen[0]
    assert (child.correlation_id, child.causation_id) == ("req-77", received.message_id)
    assert child.requested_by == "alice"
    with consuming(received):  # without as_parent: nothing is inherited from it
        assert current_correlation_id() is None
