"""Correlation and causation propagation: the guarantee of the mediator.

Root message: correlation = explicit ``correlation_id=`` > the message's field > the
ambient ``correlation_scope`` > its own ``request_id``; causation ``None``.  A message
built or dispatched inside a handler inherits the handled message's correlation, has
its ``request_id`` as causation and its ``requested_by`` by default.  Explicit values
win, and ids are stamped once.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

import pytest

from python_cqrs_core import (
    BaseCommand,
    BaseEvent,
    BaseMessage,
    BaseQuery,
    Mediator,
    correlation_scope,
    current_causation_id,
    current_correlation_id,
    current_message,
    current_requested_by,
)
from python_cqrs_core.testing import Capture, assert_chain, capture


class PlaceOrder(BaseCommand):
    order_id: str


class OrderPlaced(BaseEvent):
    order_id: str


class ReserveInventory(BaseCommand):
    order_id: str


class NotifyCustomer(BaseCommand):
    order_id: str


class GetOrder(BaseQuery):
    order_id: str


@dataclass(frozen=True)
class Seen:
    """What a handler saw: the message, and the context readers at that moment."""

    message: BaseMessage
    correlation_id: object
    causation_id: object
    requested_by: object
    current: object

    @classmethod
    def now(cls, message: BaseMessage) -> Seen:
        return cls(
            message,
            current_correlation_id(),
            current_causation_id(),
            current_requested_by(),
            current_message(),
        )


@pytest.fixture
def seen() -> list[Seen]:
    return []


@pytest.fixture
def dispatched(bus: Mediator) -> Iterator[Capture]:
    """Every message dispatched through ``bus``, with its causation parent."""
    with capture(bus) as captured:
        yield captured


@pytest.fixture
def recording_bus(bus: Mediator, seen: list[Seen]) -> Mediator:
    """PlaceOrder and ReserveInventory handlers that only record what they saw."""

    async def record(message: BaseMessage) -> str:
        seen.append(Seen.now(message))
        return "ok"

    bus.register(PlaceOrder, record)
    bus.register(ReserveInventory, record)
    bus.register(NotifyCustomer, record)
    bus.register(GetOrder, record)
    return bus


# -- root messages ----------------------------------------------------------------------


async def test_a_root_message_with_no_correlation_is_its_own_correlation(recording_bus, seen):
    cmd = PlaceOrder(order_id="o-1")
    await recording_bus.send(cmd)
    assert cmd.correlation_id == cmd.request_id
    assert cmd.causation_id is None
    assert seen[0].message is cmd


async def test_a_root_message_keeps_its_own_correlation_field(recording_bus, seen):
    cmd = PlaceOrder(order_id="o-1", correlation_id="req-abc-123")
    await recording_bus.send(cmd)
    assert (cmd.correlation_id, cmd.causation_id) == ("req-abc-123", None)


async def test_the_message_field_beats_the_ambient_correlation(recording_bus, seen):
    async with correlation_scope("ambient"):
        cmd = PlaceOrder(order_id="o-1", correlation_id="own")
        await recording_bus.send(cmd)
    assert cmd.correlation_id == "own"
    assert seen[0].correlation_id == "own"


async def test_a_root_message_built_outside_a_scope_takes_the_ambient_correlation_when_sent(
    recording_bus, seen
):
    cmd = PlaceOrder(order_id="o-1")
    async with correlation_scope("ext-123", requested_by="gateway"):
        await recording_bus.send(cmd)
    assert (cmd.correlation_id, cmd.causation_id, cmd.requested_by) == (
        "ext-123",
        None,
        "gateway",
    )


async def test_a_root_message_built_inside_a_scope_takes_the_ambient_correlation(
    recording_bus, seen
):
    with correlation_scope("ext-123"):
        cmd = PlaceOrder(order_id="o-1")
    await recording_bus.send(cmd)
    assert (cmd.correlation_id, cmd.causation_id, cmd.requested_by) == ("ext-123", None, None)


async def test_the_explicit_argument_beats_the_field_and_the_ambient_correlation(
    recording_bus, seen
):
    async with correlation_scope("ambient"):
        await recording_bus.process(PlaceOrder(order_id="o-1"), correlation_id="explicit")
        await recording_bus.process(
            PlaceOrder(order_id="o-2", correlation_id="field"), correlation_id="explicit"
        )
    assert [s.message.correlation_id for s in seen] == ["explicit", "explicit"]
    assert [s.correlation_id for s in seen] == ["explicit", "explicit"]
    assert [s.message.causation_id for s in seen] == [None, None]


async def test_process_stamps_a_message_without_correlation_in_place(recording_bus, seen):
    cmd = PlaceOrder(order_id="o-1")
    await recording_bus.process(cmd, correlation_id="req-abc-123")
    assert seen[0].message is cmd
    assert cmd.correlation_id == "req-abc-123"


async def test_process_with_the_same_id_as_the_message_handles_the_message_itself(
    recording_bus, seen
):
    cmd = PlaceOrder(order_id="o-1", correlation_id=UUID(int=7))
    await recording_bus.process(cmd, correlation_id=str(UUID(int=7)))
    assert seen[0].message is cmd


async def test_process_with_a_different_id_hands_the_handler_a_copy(recording_bus, seen):
    cmd = PlaceOrder(order_id="o-1", correlation_id="original", requested_by="ann")
    await recording_bus.process(cmd, correlation_id="explicit")
    handled = seen[0].message
    assert handled is not cmd
    assert cmd.correlation_id == "original"
    assert handled.correlation_id == "explicit"
    assert (handled.request_id, handled.requested_by, handled.order_id) == (
        cmd.request_id,
        "ann",
        "o-1",
    )


async def test_process_parses_a_uuid_string_correlation(recording_bus, seen):
    value = UUID("550e8400-e29b-41d4-a716-446655440000")
    await recording_bus.process(PlaceOrder(order_id="o-1"), correlation_id=str(value))
    assert seen[0].message.correlation_id == value
    assert type(seen[0].message.correlation_id) is UUID


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "crlf\r\n", 42])
async def test_process_rejects_a_bad_correlation_id_before_anything_runs(recording_bus, seen, bad):
    cmd = PlaceOrder(order_id="o-1")
    with pytest.raises(ValueError, match=r"^correlation_id: "):
        await recording_bus.process(cmd, correlation_id=bad)
    assert seen == []
    assert cmd.correlation_id is None


async def test_a_root_query_is_correlated_like_a_command(recording_bus, seen):
    query = GetOrder(order_id="o-1")
    await recording_bus.query(query)
    assert (query.correlation_id, query.causation_id) == (query.request_id, None)


async def test_a_root_event_is_correlated_like_a_command(bus: Mediator):
    event = OrderPlaced(order_id="o-1")
    await bus.publish(event)
    assert (event.correlation_id, event.causation_id) == (event.request_id, None)


# -- children -----------------------------------------------------------------------------


async def test_a_message_built_in_a_handler_inherits_correlation_cause_and_requested_by(
    bus: Mediator,
):
    built: list[BaseMessage] = []

    async def place(command: PlaceOrder) -> None:
        built.append(OrderPlaced(order_id=command.order_id))

    bus.register(PlaceOrder, place)
    cmd = PlaceOrder(order_id="o-1", correlation_id="ext-123", requested_by="ann")
    await bus.send(cmd)
    (event,) = built
    assert (event.correlation_id, event.causation_id, event.requested_by) == (
        "ext-123",
        cmd.request_id,
        "ann",
    )


async def test_explicit_values_on_a_child_win(bus: Mediator, seen):
    async def place(command: PlaceOrder) -> None:
        await bus.send(
            ReserveInventory(
                order_id=command.order_id,
                correlation_id="other-operation",
                causation_id="external-cause",
                requested_by="scheduler",
            )
        )

    async def reserve(command: ReserveInventory) -> None:
        seen.append(Seen.now(command))

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, reserve)
    await bus.send(PlaceOrder(order_id="o-1", requested_by="ann"))
    child = seen[0].message
    assert (child.correlation_id, child.causation_id, child.requested_by) == (
        "other-operation",
        "external-cause",
        "scheduler",
    )
    assert seen[0].correlation_id == "other-operation"


async def test_a_child_keeps_no_requested_by_when_its_parent_has_none(bus: Mediator, seen):
    async def place(command: PlaceOrder) -> None:
        await bus.send(ReserveInventory(order_id=command.order_id))

    async def reserve(command: ReserveInventory) -> None:
        seen.append(Seen.now(command))

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, reserve)
    await bus.send(PlaceOrder(order_id="o-1"))
    assert seen[0].message.requested_by is None


async def test_a_message_built_before_but_dispatched_inside_a_handler_becomes_its_child(
    bus: Mediator, seen
):
    prepared = ReserveInventory(order_id="o-1")  # built at the root: no ids yet

    async def place(command: PlaceOrder) -> None:
        await bus.send(prepared)

    async def reserve(command: ReserveInventory) -> None:
        seen.append(Seen.now(command))

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, reserve)
    cmd = PlaceOrder(order_id="o-1", correlation_id="ext-1", requested_by="ann")
    await bus.send(cmd)
    assert (prepared.correlation_id, prepared.causation_id, prepared.requested_by) == (
        "ext-1",
        cmd.request_id,
        "ann",
    )


async def test_a_child_with_only_its_correlation_set_still_gets_its_causation(bus: Mediator, seen):
    async def place(command: PlaceOrder) -> None:
        await bus.send(ReserveInventory(order_id="o-1", correlation_id="explicit"))

    async def reserve(command: ReserveInventory) -> None:
        seen.append(Seen.now(command))

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, reserve)
    cmd = PlaceOrder(order_id="o-1")
    await bus.send(cmd)
    assert (seen[0].message.correlation_id, seen[0].message.causation_id) == (
        "explicit",
        cmd.request_id,
    )


async def test_a_message_built_in_a_handler_and_dispatched_later_keeps_its_ids(
    bus: Mediator, seen, dispatched
):
    async def place(command: PlaceOrder) -> OrderPlaced:
        return OrderPlaced(order_id=command.order_id)  # built here, published by the caller

    async def on_placed(event: OrderPlaced) -> None:
        seen.append(Seen.now(event))

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, on_placed)
    cmd = PlaceOrder(order_id="o-1", requested_by="ann")
    event = await bus.send(cmd)
    async with correlation_scope("unrelated-request"):
        await bus.publish(event)
    assert_chain(
        dispatched,
        """
        PlaceOrder
        └── OrderPlaced  # published by the caller, yet caused by PlaceOrder's handler
        """,
        correlation_id=cmd.request_id,
    )
    assert event.requested_by == "ann"
    assert (seen[0].correlation_id, seen[0].current) == (cmd.request_id, event)


async def test_a_handler_sending_two_commands_gives_both_the_same_ids(bus: Mediator, dispatched):
    between: list[Seen] = []

    async def on_placed(event: OrderPlaced) -> None:
        await bus.send(ReserveInventory(order_id=event.order_id))
        between.append(Seen.now(event))
        await bus.send(NotifyCustomer(order_id=event.order_id))

    async def done(command: BaseCommand) -> None:
        return None

    bus.subscribe(OrderPlaced, on_placed)
    bus.register(ReserveInventory, done)
    bus.register(NotifyCustomer, done)
    event = OrderPlaced(order_id="o-1", correlation_id="ext-123")
    await bus.publish(event)

    assert_chain(
        dispatched,
        """
        OrderPlaced
        ├── ReserveInventory  !succeeded
        └── NotifyCustomer  !succeeded
        """,
        correlation_id="ext-123",
    )
    assert between[0].current is event
    assert between[0].causation_id == event.request_id


async def test_the_context_is_empty_again_after_a_dispatch(recording_bus):
    await recording_bus.send(PlaceOrder(order_id="o-1"))
    assert (current_message(), current_correlation_id(), current_causation_id()) == (
        None,
        None,
        None,
    )


async def test_the_context_is_restored_when_a_handler_raises(bus: Mediator):
    async def failing(command: PlaceOrder) -> None:
        raise RuntimeError("boom")

    bus.register(PlaceOrder, failing)
    async with correlation_scope("ext-1"):
        with pytest.raises(RuntimeError):
            await bus.send(PlaceOrder(order_id="o-1"))
        assert (current_message(), current_correlation_id()) == (None, "ext-1")
    assert current_correlation_id() is None


async def test_a_nested_failure_restores_the_outer_message(bus: Mediator, seen):
    async def place(command: PlaceOrder) -> None:
        with pytest.raises(RuntimeError):
            await bus.send(ReserveInventory(order_id="o-1"))
        seen.append(Seen.now(command))

    async def failing(command: ReserveInventory) -> None:
        raise RuntimeError("boom")

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, failing)
    cmd = PlaceOrder(order_id="o-1")
    await bus.send(cmd)
    assert seen[0].current is cmd


async def test_a_correlation_scope_inside_a_handler_does_not_split_the_chain(
    bus: Mediator, seen, dispatched
):
    async def place(command: PlaceOrder) -> None:
        async with correlation_scope("would-split"):
            await bus.send(ReserveInventory(order_id="o-1"))

    async def reserve(command: ReserveInventory) -> None:
        seen.append(Seen.now(command))

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, reserve)
    await bus.send(PlaceOrder(order_id="o-1", correlation_id="ext-1"))
    assert_chain(dispatched, "PlaceOrder\n└── ReserveInventory", correlation_id="ext-1")
    assert seen[0].correlation_id == "ext-1"  # the handler's context agrees


async def test_process_with_an_explicit_correlation_inside_a_handler_keeps_the_causation(
    bus: Mediator, seen
):
    async def place(command: PlaceOrder) -> None:
        await bus.process(ReserveInventory(order_id="o-1"), correlation_id="explicit")

    async def reserve(command: ReserveInventory) -> None:
        seen.append(Seen.now(command))

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, reserve)
    cmd = PlaceOrder(order_id="o-1", correlation_id="ext-1")
    await bus.send(cmd)
    child = seen[0].message
    assert (child.correlation_id, child.causation_id) == ("explicit", cmd.request_id)


# -- what the handler sees ----------------------------------------------------------------


async def test_the_handler_sees_fields_equal_to_the_context(bus: Mediator, seen):
    async def place(command: PlaceOrder) -> None:
        seen.append(Seen.now(command))
        await bus.publish(OrderPlaced(order_id=command.order_id))

    async def on_placed(event: OrderPlaced) -> None:
        seen.append(Seen.now(event))

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, on_placed)
    async with correlation_scope("ext-9", requested_by="ann"):
        await bus.send(PlaceOrder(order_id="o-1"))

    for s in seen:
        assert s.current is s.message
        assert s.correlation_id == s.message.correlation_id == "ext-9"
        assert s.causation_id == s.message.request_id
        assert s.requested_by == s.message.requested_by == "ann"


# -- write-once stamping -------------------------------------------------------------------


async def test_a_message_sent_twice_keeps_the_ids_of_its_first_dispatch(recording_bus, seen):
    cmd = PlaceOrder(order_id="o-1")
    await recording_bus.send(cmd)
    first = (cmd.request_id, cmd.correlation_id, cmd.causation_id)
    async with correlation_scope("later-request"):
        await recording_bus.send(cmd)
    assert (cmd.request_id, cmd.correlation_id, cmd.causation_id) == first
    assert [s.message.correlation_id for s in seen] == [first[1], first[1]]


async def test_a_child_dispatched_twice_keeps_its_first_parent(bus: Mediator, seen):
    children: list[ReserveInventory] = []

    async def place(command: PlaceOrder) -> None:
        if not children:
            children.append(ReserveInventory(order_id="o-1"))
        await bus.send(children[0])

    async def reserve(command: ReserveInventory) -> None:
        seen.append(Seen.now(command))

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, reserve)
    first_parent = PlaceOrder(order_id="o-1")
    await bus.send(first_parent)
    await bus.send(PlaceOrder(order_id="o-2"))
    assert [s.message.causation_id for s in seen] == [first_parent.request_id] * 2
    assert [s.message.correlation_id for s in seen] == [first_parent.request_id] * 2


async def test_a_root_message_re_dispatched_inside_a_handler_stays_a_root(bus: Mediator, seen):
    root = ReserveInventory(order_id="o-1")

    async def place(command: PlaceOrder) -> None:
        await bus.send(root)

    async def reserve(command: ReserveInventory) -> None:
        seen.append(Seen.now(command))

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, reserve)
    await bus.send(root)  # dispatched as a root: correlation = own id, cause None
    await bus.send(PlaceOrder(order_id="o-2"))
    assert (root.correlation_id, root.causation_id) == (root.request_id, None)


async def test_the_request_id_and_hash_never_change_when_ids_are_stamped(recording_bus):
    cmd = PlaceOrder(order_id="o-1")
    request_id, before = cmd.request_id, hash(cmd)
    pending = {cmd}
    await recording_bus.send(cmd)
    assert cmd.request_id == request_id
    assert hash(cmd) == before
    assert cmd in pending


async def test_stamped_fields_count_as_set_and_survive_a_json_round_trip(recording_bus):
    cmd = PlaceOrder(order_id="o-1")
    await recording_bus.send(cmd)
    assert {"correlation_id"} <= cmd.model_fields_set
    restored = PlaceOrder.model_validate_json(cmd.model_dump_json())
    assert restored == cmd
    assert restored.model_dump(exclude_unset=True)["correlation_id"] == cmd.request_id


# -- concurrency ---------------------------------------------------------------------------


class StartChain(BaseCommand):
    chain: int


class ChainStarted(BaseEvent):
    chain: int


class FinishChain(BaseCommand):
    chain: int


CHAINS = 10_000
THREADED_CHAINS = 1_000  # of which run in 4 threads, each with its own event loop
BUILT_IN_THREAD_EVERY = 50  # every 50th follow-up command is built in asyncio.to_thread


def expected_root_correlation(chain: int, start: StartChain) -> object:
    mode = chain % 3
    return start.request_id if mode == 0 else f"ext-{chain}" if mode == 1 else f"explicit-{chain}"


async def run_chain(bus: Mediator, chain: int) -> None:
    mode = chain % 3
    requested_by = f"user-{chain}" if chain % 2 else None
    if mode == 0:
        await bus.send(StartChain(chain=chain, requested_by=requested_by))
    elif mode == 1:
        async with correlation_scope(f"ext-{chain}", requested_by=requested_by):
            await bus.send(StartChain(chain=chain))
    else:
        await bus.process(
            StartChain(chain=chain, requested_by=requested_by), correlation_id=f"explicit-{chain}"
        )


def run_chains_in_own_loop(bus: Mediator, chains: range) -> None:
    async def main() -> None:
        await asyncio.gather(*(run_chain(bus, chain) for chain in chains))

    asyncio.run(main())


async def test_ten_thousand_concurrent_chains_never_mix_ids():
    bus = Mediator()
    handled: dict[int, list[Seen]] = defaultdict(list)

    async def start(command: StartChain) -> None:
        handled[command.chain].append(Seen.now(command))
        await asyncio.sleep(0)
        await bus.publish(ChainStarted(chain=command.chain))

    async def started(event: ChainStarted) -> None:
        handled[event.chain].append(Seen.now(event))
        await asyncio.sleep(0)
        if event.chain % BUILT_IN_THREAD_EVERY == 0:
            follow_up = await asyncio.to_thread(FinishChain, chain=event.chain)
        else:
            follow_up = FinishChain(chain=event.chain)
        await asyncio.sleep(0)
        await bus.send(follow_up)

    async def finish(command: FinishChain) -> None:
        await asyncio.sleep(0)
        handled[command.chain].append(Seen.now(command))

    bus.register(StartChain, start)
    bus.subscribe(ChainStarted, started)
    bus.register(FinishChain, finish)

    per_thread = THREADED_CHAINS // 4
    in_threads = [
        asyncio.to_thread(run_chains_in_own_loop, bus, range(i * per_thread, (i + 1) * per_thread))
        for i in range(4)
    ]
    in_loop = [run_chain(bus, chain) for chain in range(THREADED_CHAINS, CHAINS)]
    await asyncio.gather(*in_threads, *in_loop)

    assert sorted(handled) == list(range(CHAINS))
    request_ids = set()
    for chain, steps in handled.items():
        assert [type(s.message) for s in steps] == [StartChain, ChainStarted, FinishChain]
        root, event, follow_up = (s.message for s in steps)
        correlation = expected_root_correlation(chain, root)
        requested_by = f"user-{chain}" if chain % 2 else None
        assert root.causation_id is None
        assert event.causation_id == root.request_id
        assert follow_up.causation_id == event.request_id
        for s in steps:
            assert s.message.chain == chain
            assert s.message.correlation_id == s.correlation_id == correlation
            assert s.causation_id == s.message.request_id
            assert s.current is s.message
            assert s.message.requested_by == s.requested_by == requested_by
            request_ids.add(s.message.request_id)
    assert len(request_ids) == 3 * CHAINS


async def test_tasks_created_in_a_handler_inherit_its_context(bus: Mediator, seen):
    async def place(command: PlaceOrder) -> None:
        await asyncio.gather(
            bus.send(ReserveInventory(order_id="o-1")),
            asyncio.create_task(bus.send(NotifyCustomer(order_id="o-1"))),
        )

    async def record(command: BaseCommand) -> None:
        seen.append(Seen.now(command))

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, record)
    bus.register(NotifyCustomer, record)
    cmd = PlaceOrder(order_id="o-1", correlation_id="ext-7")
    await bus.send(cmd)
    assert sorted(type(s.message).__name__ for s in seen) == ["NotifyCustomer", "ReserveInventory"]
    for s in seen:
        assert (s.message.correlation_id, s.message.causation_id) == ("ext-7", cmd.request_id)


# -- write once, on every path (the rule of python_cqrs_core.propagation) --------------


async def test_a_root_that_already_had_its_correlation_stays_a_root_when_re_dispatched(
    bus: Mediator, seen
):
    root = ReserveInventory(order_id="o-1", correlation_id="ext-1")

    async def place(command: PlaceOrder) -> None:
        await bus.send(root)

    async def reserve(command: ReserveInventory) -> None:
        seen.append(Seen.now(command))

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, reserve)
    await bus.send(root)  # a root with its own correlation: its cause is final (None)
    await bus.send(PlaceOrder(order_id="o-2"))
    assert (root.correlation_id, root.causation_id) == ("ext-1", None)
    assert [s.message.causation_id for s in seen] == [None, None]


async def test_requested_by_passed_as_none_in_a_handler_stays_none_at_dispatch(bus: Mediator, seen):
    async def place(command: PlaceOrder) -> None:
        await bus.send(ReserveInventory(order_id=command.order_id, requested_by=None))

    async def reserve(command: ReserveInventory) -> None:
        seen.append(Seen.now(command))

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, reserve)
    await bus.send(PlaceOrder(order_id="o-1", requested_by="alice"))
    assert seen[0].message.requested_by is None
    assert seen[0].message.causation_id is not None  # the other fields still inherit


async def test_requested_by_passed_as_none_beats_the_scope_at_dispatch(recording_bus, seen):
    cmd = PlaceOrder(order_id="o-1", requested_by=None)
    with correlation_scope("ext-1", requested_by="alice"):
        await recording_bus.send(cmd)
    assert (cmd.correlation_id, cmd.requested_by) == ("ext-1", None)


async def test_a_dispatch_settles_every_tracing_field(recording_bus):
    cmd = PlaceOrder(order_id="o-1")
    await recording_bus.send(cmd)
    assert {"correlation_id", "causation_id", "requested_by"} <= cmd.model_fields_set


async def test_a_dispatch_the_recorder_refuses_changes_nothing_on_the_message(bus: Mediator):
    from python_cqrs_core.store import MessageAlreadyRecordedError, MessageRecorder, open_store

    store = await open_store("memory://")
    MessageRecorder(store).install(bus)
    again = ReserveInventory(order_id="o-1", correlation_id="ext-1")

    async def place(command: PlaceOrder) -> None:
        await bus.send(again)

    async def reserve(command: ReserveInventory) -> None:
        return None

    bus.register(PlaceOrder, place)
    bus.register(ReserveInventory, reserve)
    await bus.send(again)
    before = (dict(again.__dict__), set(again.model_fields_set))
    with pytest.raises(MessageAlreadyRecordedError):
        await bus.send(PlaceOrder(order_id="o-2"))
    assert (dict(again.__dict__), set(again.model_fields_set)) == before
    assert again.causation_id is None


async def test_the_dispatcher_fast_path_agrees_with_the_rule(recording_bus):
    from python_cqrs_core.propagation import is_settled

    fresh, sent = PlaceOrder(order_id="o-1"), PlaceOrder(order_id="o-2")
    await recording_bus.send(sent)
    assert not is_settled(fresh)
    assert is_settled(sent)
