"""assert_chain: one drawn spec checks a whole causation tree, captured or recorded;
a mismatch shows both trees; a malformed spec is named by line."""

from __future__ import annotations

import contextlib
import dataclasses
import textwrap
from datetime import UTC, datetime
from uuid import UUID

import pytest

from python_cqrs_core import BaseCommand, BaseEvent, Mediator, correlation_scope
from python_cqrs_core.store import (
    CausationNode,
    MessageRecord,
    MessageRecorder,
    MessageStore,
    assemble_trees,
    open_store,
)
from python_cqrs_core.testing import (
    Capture,
    ChainSpecError,
    assert_chain,
    capture,
    render_chain,
)


class PlaceOrder(BaseCommand):
    order_id: str


class OrderPlaced(BaseEvent):
    __message_type__ = "orders.OrderPlaced"
    order_id: str


class ReserveInventory(BaseCommand):
    order_id: str


class InventoryReserved(BaseEvent):
    order_id: str


class NotifyCustomer(BaseCommand):
    order_id: str


class SmsGatewayError(Exception):
    pass


GUIDE_TREE = """
    PlaceOrder  !failed
    └── OrderPlaced
        ├── ReserveInventory
        │   └── InventoryReserved  !succeeded
        └── NotifyCustomer  !failed
"""


@pytest.fixture
def shop(bus: Mediator) -> Mediator:
    """The guide's tree; NotifyCustomer fails for order "sms", and "late" reserves
    after notifying."""

    async def place(command: PlaceOrder) -> None:
        await bus.publish(OrderPlaced(order_id=command.order_id))

    async def fulfil(event: OrderPlaced) -> None:
        if event.order_id == "late":
            await bus.send(NotifyCustomer(order_id=event.order_id))
            await bus.send(ReserveInventory(order_id=event.order_id))
            return
        await bus.send(ReserveInventory(order_id=event.order_id))
        await bus.send(NotifyCustomer(order_id=event.order_id))

    async def reserve(command: ReserveInventory) -> None:
        await bus.publish(InventoryReserved(order_id=command.order_id))

    async def notify(command: NotifyCustomer) -> None:
        if command.order_id == "sms":
            raise SmsGatewayError("503")

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, fulfil)
    bus.register(ReserveInventory, reserve)
    bus.register(NotifyCustomer, notify)
    return bus


async def run(bus: Mediator, order_id: str, correlation_id: str = "req-1") -> Capture:
    """Place one order with this correlation id; the capture of what was dispatched."""
    with capture(bus) as dispatched:
        with contextlib.suppress(SmsGatewayError):
            await bus.process(PlaceOrder(order_id=order_id), correlation_id=correlation_id)
    return dispatched


def failure(source: object, spec: str, **options: object) -> str:
    """The AssertionError message of a failing assert_chain."""
    with pytest.raises(AssertionError) as raised:
        assert_chain(source, spec, **options)  # type: ignore[arg-type]
    return str(raised.value)


# -- passing chains ------------------------------------------------------------------------


async def test_a_drawn_spec_matches_the_captured_tree(shop: Mediator):
    dispatched = await run(shop, "sms")
    assert_chain(dispatched, GUIDE_TREE, correlation_id="req-1")


@pytest.mark.parametrize(
    "spec",
    [
        """
        PlaceOrder
            OrderPlaced
                ReserveInventory
                    InventoryReserved
                NotifyCustomer
        """,
        "PlaceOrder\n OrderPlaced\n  ReserveInventory\n   InventoryReserved\n  NotifyCustomer",
        """
        PlaceOrder
        `-- OrderPlaced
            |-- ReserveInventory
            |   `-- InventoryReserved
            `-- NotifyCustomer
        """,
        """
        PlaceOrder
        +-- OrderPlaced
            +-- ReserveInventory
            |   +-- InventoryReserved
            +-- NotifyCustomer
        """,
    ],
    ids=["four-spaces", "one-space", "ascii-tree", "ascii-plus"],
)
async def test_plain_indentation_and_ascii_trees_read_like_the_drawn_tree(shop: Mediator, spec):
    assert_chain(await run(shop, "o-1"), spec)


async def test_comments_and_spacer_lines_are_ignored(shop: Mediator):
    assert_chain(
        await run(shop, "o-1"),
        """
        # the order flow of the guide
        PlaceOrder               # the HTTP request
        │
        └── OrderPlaced
            ├── ReserveInventory   # first: stock before the customer hears of it
            │   └── InventoryReserved
            │
            └── NotifyCustomer  !succeeded  # sms
        """,
    )


async def test_types_are_named_by_class_name_or_stable_type_name_or_a_dotted_tail(
    shop: Mediator,
):
    dispatched = await run(shop, "o-1")
    module = __name__
    for place, placed in [
        ("PlaceOrder", "OrderPlaced"),  # class names
        (f"{module}.PlaceOrder", "orders.OrderPlaced"),  # stable type names
        (f"{module.rsplit('.', 1)[-1]}.PlaceOrder", "OrderPlaced"),  # a dotted tail
    ]:
        assert_chain(
            dispatched,
            f"""
            {place}
              {placed}
                ReserveInventory
                  InventoryReserved
                NotifyCustomer
            """,
        )
    message = failure(dispatched, "laceOrder\n  OrderPlaced")  # a tail ends at a dot
    assert "top level: expected [laceOrder], got [PlaceOrder]" in message


async def test_the_chain_recorded_in_a_store_is_asserted_the_same_way(shop: Mediator):
    store = await open_store("memory://")
    recorder = MessageRecorder(store).install(shop)
    await run(shop, "sms", correlation_id="req-7")
    await recorder.close()

    trees = await store.build_causation_tree("req-7")
    assert_chain(trees, GUIDE_TREE, correlation_id="req-7")  # list[CausationNode]
    assert_chain(trees[0], GUIDE_TREE)  # one CausationNode
    assert_chain(await store.by_correlation("req-7"), GUIDE_TREE)  # list[MessageRecord]
    await store.close()


async def test_the_correlation_id_may_be_given_as_a_uuid_or_in_any_spelling(bus: Mediator):
    async def place(command: PlaceOrder) -> None:
        return None

    bus.register(PlaceOrder, place)
    operation = UUID("550e8400-e29b-41d4-a716-446655440000")
    with capture(bus) as dispatched:
        async with correlation_scope(operation):
            await bus.send(PlaceOrder(order_id="o-1"))

    assert_chain(dispatched, "PlaceOrder", correlation_id=operation)
    assert_chain(dispatched, "PlaceOrder", correlation_id=operation.hex.upper())


async def test_several_roots_sharing_a_correlation_id_are_several_top_level_lines(
    shop: Mediator,
):
    with capture(shop) as dispatched:
        async with correlation_scope("retry-42"):
            await shop.send(NotifyCustomer(order_id="o-1"))
            await shop.send(ReserveInventory(order_id="o-1"))

    assert_chain(
        dispatched,
        """
        NotifyCustomer
        ReserveInventory
        └── InventoryReserved
        """,
        correlation_id="retry-42",
    )


async def test_one_operation_of_several_is_picked_by_filtering_the_dispatches(shop: Mediator):
    with capture(shop) as dispatched:
        for order in ("o-1", "sms"):
            with contextlib.suppress(SmsGatewayError):
                await shop.process(PlaceOrder(order_id=order), correlation_id=f"req-{order}")

    sms = [d for d in dispatched if d.correlation_id == "req-sms"]
    assert_chain(sms, GUIDE_TREE, correlation_id="req-sms")
    message = failure(dispatched, GUIDE_TREE)
    assert "top level: expected [PlaceOrder], got [PlaceOrder, PlaceOrder]" in message
    assert "one correlation id expected, the messages carry 2: 'req-o-1' (" in message


async def test_a_message_caused_elsewhere_is_a_root_marked_orphan(bus: Mediator):
    async def on_placed(event: OrderPlaced) -> None:
        await bus.send(ReserveInventory(order_id=event.order_id))

    async def reserve(command: ReserveInventory) -> None:
        return None

    bus.subscribe(OrderPlaced, on_placed)
    bus.register(ReserveInventory, reserve)
    with capture(bus) as dispatched:
        # delivered by a broker: its cause is a message of another service
        await bus.publish(OrderPlaced(order_id="o-1", causation_id="upstream-msg"))

    assert_chain(dispatched, "OrderPlaced  !orphan\n  ReserveInventory")
    message = failure(dispatched, "OrderPlaced\n  ReserveInventory")
    assert (
        "line 1: OrderPlaced has causation_id 'upstream-msg', which is not among these "
        "messages (mark it !orphan if its cause is elsewhere)"
    ) in message


async def test_render_chain_draws_a_spec_that_assert_chain_accepts(shop: Mediator):
    dispatched = await run(shop, "sms")
    drawn = render_chain(dispatched)
    assert drawn == textwrap.dedent(
        """\
        PlaceOrder  !failed
        └── OrderPlaced  !failed
            ├── ReserveInventory
            │   └── InventoryReserved
            └── NotifyCustomer  !failed"""
    )
    assert_chain(dispatched, drawn)


async def test_render_chain_notes_each_correlation_id_when_they_differ(bus: Mediator):
    async def place(command: PlaceOrder) -> None:
        await bus.send(NotifyCustomer(order_id="o-1", correlation_id="other-operation"))

    async def notify(command: NotifyCustomer) -> None:
        return None

    bus.register(PlaceOrder, place)
    bus.register(NotifyCustomer, notify)
    with capture(bus) as dispatched:
        await bus.process(PlaceOrder(order_id="o-1"), correlation_id="req-1")

    assert render_chain(dispatched) == (
        "PlaceOrder  # correlation id 'req-1'\n"
        "└── NotifyCustomer  # correlation id 'other-operation'"
    )


# -- mismatches ------------------------------------------------------------------------------


async def test_a_mismatch_names_the_difference_and_draws_both_trees(shop: Mediator):
    dispatched = await run(shop, "o-1")
    message = failure(
        dispatched,
        """
        PlaceOrder
        └── OrderPlaced
            ├── ReserveInventory
            │   └── InventoryReserved
            └── NotifyCustomer  !failed
        """,
    )
    first_line, rest = message.split("\n", 1)
    assert first_line == (
        "the causation chain differs from the spec: "
        "line 6: NotifyCustomer was expected to fail (!failed), but it succeeded"
    )
    assert rest == textwrap.dedent(
        """\
        expected:
            PlaceOrder
            └── OrderPlaced
                ├── ReserveInventory
                │   └── InventoryReserved
                └── NotifyCustomer  !failed
        actual (correlation id 'req-1'):
            PlaceOrder
            └── OrderPlaced
                ├── ReserveInventory
                │   └── InventoryReserved
                └── NotifyCustomer"""
    )


@pytest.mark.parametrize(
    ("spec", "difference"),
    [
        (  # a message missing
            "PlaceOrder\n  OrderPlaced\n    ReserveInventory\n    NotifyCustomer",
            "under ReserveInventory (line 3): expected nothing, got [InventoryReserved]",
        ),
        (  # one too many
            "PlaceOrder\n  OrderPlaced\n    ReserveInventory\n      InventoryReserved\n"
            "    NotifyCustomer\n      CustomerNotified",
            "under NotifyCustomer (line 5): expected [CustomerNotified], got nothing",
        ),
        (  # siblings in another order than they were dispatched
            "PlaceOrder\n  OrderPlaced\n    NotifyCustomer\n    ReserveInventory\n"
            "      InventoryReserved",
            "under OrderPlaced (line 2): expected [NotifyCustomer, ReserveInventory], "
            "got [ReserveInventory, NotifyCustomer]",
        ),
        (  # a message under the wrong parent
            "PlaceOrder\n  OrderPlaced\n    ReserveInventory\n    InventoryReserved\n"
            "    NotifyCustomer",
            "under OrderPlaced (line 2): expected [ReserveInventory, InventoryReserved, "
            "NotifyCustomer], got [ReserveInventory, NotifyCustomer]",
        ),
        (  # another type
            "PlaceOrder\n  OrderShipped",
            "under PlaceOrder (line 1): expected [OrderShipped], got [OrderPlaced]",
        ),
        (  # an outcome that did not happen
            "PlaceOrder  !failed\n  OrderPlaced\n    ReserveInventory\n"
            "      InventoryReserved\n    NotifyCustomer",
            "line 1: PlaceOrder was expected to fail (!failed), but it succeeded",
        ),
    ],
    ids=["missing", "extra", "sibling-order", "wrong-parent", "wrong-type", "outcome"],
)
async def test_each_kind_of_difference_is_named(shop: Mediator, spec, difference):
    message = failure(await run(shop, "o-1"), spec)
    first_line = message.splitlines()[0]
    assert first_line == f"the causation chain differs from the spec: {difference}"


async def test_a_success_expected_of_a_failure_is_named(shop: Mediator):
    message = failure(await run(shop, "sms"), GUIDE_TREE.replace("!failed", "!succeeded"))
    assert "line 2: PlaceOrder was expected to succeed (!succeeded), but it failed" in message
    assert "line 6: NotifyCustomer was expected to succeed (!succeeded), but it failed" in message


async def test_an_unexpected_orphan_mark_is_named(shop: Mediator):
    message = failure(await run(shop, "o-1"), "PlaceOrder  !orphan\n  OrderPlaced")
    assert "line 1: PlaceOrder was expected to be !orphan, but it has no causation_id" in message


async def test_a_dispatch_still_running_does_not_satisfy_an_outcome_mark(bus: Mediator):
    checked: list[str] = []

    async def place(command: PlaceOrder) -> None:
        checked.append(failure(dispatched, "PlaceOrder  !succeeded"))
        assert_chain(dispatched, "PlaceOrder")  # no mark: any outcome

    bus.register(PlaceOrder, place)
    with capture(bus) as dispatched:
        await bus.send(PlaceOrder(order_id="o-1"))

    assert "PlaceOrder was expected to succeed (!succeeded), but it is still running" in checked[0]
    assert "    PlaceOrder  # still running" in checked[0]


async def test_a_child_that_left_the_operation_breaks_the_shared_correlation(bus: Mediator):
    async def place(command: PlaceOrder) -> None:
        await bus.send(NotifyCustomer(order_id="o-1", correlation_id="other-operation"))

    async def notify(command: NotifyCustomer) -> None:
        return None

    bus.register(PlaceOrder, place)
    bus.register(NotifyCustomer, notify)
    with capture(bus) as dispatched:
        await bus.process(PlaceOrder(order_id="o-1"), correlation_id="req-1")

    message = failure(dispatched, "PlaceOrder\n  NotifyCustomer")
    assert message.splitlines()[0] == (
        "the causation chain differs from the spec: one correlation id expected, the messages "
        "carry 2: 'req-1' (PlaceOrder); 'other-operation' (NotifyCustomer)"
    )
    assert "actual:\n" in message  # no single id to show in the heading


async def test_another_correlation_id_than_the_one_given_is_named(shop: Mediator):
    message = failure(
        await run(shop, "o-1", correlation_id="req-1"),
        GUIDE_TREE.replace("!failed", ""),
        correlation_id="req-2",
    )
    assert "expected correlation id 'req-2', the messages carry 'req-1'" in message


async def test_nothing_dispatched_fails_every_spec(bus: Mediator):
    with capture(bus) as dispatched:
        pass
    message = failure(dispatched, "PlaceOrder")
    assert message.splitlines()[0] == (
        "the causation chain differs from the spec: top level: expected [PlaceOrder], got nothing"
    )
    assert message.endswith("actual:\n    (no messages)")


def record(number: int, message_type: str, cause: int | None, outcome: str = "succeeded"):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return MessageRecord(
        message_id=UUID(int=number), kind="event", message_type=message_type,
        correlation_id="op-1", causation_id=None if cause is None else str(UUID(int=cause)),
        requested_by=None, requested_at=now, recorded_at=now, payload={},
        outcome=outcome, handlers=(), error_type=None, error_message=None,  # type: ignore[arg-type]
        duration_ms=None, headers={},
    )  # fmt: skip


def test_a_tree_whose_child_does_not_name_its_parent_as_cause_is_refused():
    parent, stranger = record(1, "PlaceOrder", None), record(2, "OrderPlaced", 99)
    tree = CausationNode(parent, [CausationNode(stranger)])  # linked by hand, wrongly
    message = failure(tree, "PlaceOrder\n  OrderPlaced")
    assert (
        f"OrderPlaced under PlaceOrder: its causation_id '{UUID(int=99)}' is not "
        f"PlaceOrder's request_id '{UUID(int=1)}'"
    ) in message


def test_records_with_stable_type_names_match_class_names_and_draw_them_short():
    records = [record(1, "shop.orders.PlaceOrder", None), record(2, "shop.orders.OrderPlaced", 1)]
    assert_chain(records, "PlaceOrder\n  orders.OrderPlaced", correlation_id="op-1")
    assert render_chain(records) == "PlaceOrder\n└── OrderPlaced"
    # a name that looks right but is not is shown in full
    message = failure(records, "PlaceOrder\n  billing.OrderPlaced")
    assert (
        "under PlaceOrder (line 1): expected [billing.OrderPlaced], got [shop.orders.OrderPlaced]"
    ) in message


def test_a_deep_recorded_chain_is_checked_without_recursion():
    depth = 3000
    records = [record(n, f"Step{n}", n - 1 if n > 1 else None) for n in range(1, depth + 1)]
    spec = "\n".join(" " * n + f"Step{n}" for n in range(1, depth + 1))
    assert_chain(assemble_trees(records), spec)
    wrong = spec.replace(f"Step{depth}", "StepX")
    assert f"expected [StepX], got [Step{depth}]" in failure(records, wrong)


async def test_a_source_it_cannot_read_is_a_type_error(shop: Mediator):
    dispatched = await run(shop, "o-1")
    with pytest.raises(TypeError, match="got str"):
        assert_chain("PlaceOrder", "PlaceOrder")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="one kind at a time"):
        assert_chain([dispatched[0], record(1, "PlaceOrder", None)], "PlaceOrder")  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must be a string"):
        assert_chain(dispatched, ["PlaceOrder"])  # type: ignore[arg-type]


async def test_records_a_store_was_given_by_hand_are_linked_in_the_order_given(
    cqrs_like_store: MessageStore,
):
    records = [record(1, "PlaceOrder", None), record(2, "OrderPlaced", 1, "failed")]
    await cqrs_like_store.append(records)
    stored = await cqrs_like_store.by_correlation("op-1")
    assert_chain(stored, "PlaceOrder\n  OrderPlaced  !failed")
    assert [r.position for r in stored] == [1, 2]
    assert dataclasses.replace(stored[0], position=None) == records[0]


@pytest.fixture
async def cqrs_like_store():
    store = await open_store("memory://")
    yield store
    await store.close()


# -- malformed specs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("", "the chain spec names no message"),
        ("\n   \n  # only a comment\n", "the chain spec names no message"),
        ("PlaceOrder\n\tOrderPlaced", "line 2: indent with spaces, not tabs"),
        (
            "PlaceOrder\n    OrderPlaced\n  ReserveInventory",
            "line 3: ReserveInventory is indented to column 2, which matches no line above it",
        ),
        (
            "    PlaceOrder\n  OrderPlaced",
            "line 2: OrderPlaced is indented less than the first message",
        ),
        (
            "PlaceOrder  !fialed",
            "line 1: unknown mark '!fialed'; the marks are !succeeded, !failed, !orphan",
        ),
        (
            "PlaceOrder failed",
            "line 1: unexpected 'failed' after PlaceOrder: a line holds one message type, then "
            "marks such as !failed, then an optional # comment",
        ),
        ("!failed", "line 1: the mark '!failed' has no message type before it"),
        ("PlaceOrder\n├──\n", "line 2: a branch with no message type"),
        (
            "PlaceOrder  !failed !succeeded",
            "line 1: PlaceOrder cannot be both !failed and !succeeded",
        ),
        (
            "PlaceOrder\n└── OrderPlaced  !orphan",
            "line 2: only a top-level message can be !orphan, and OrderPlaced is under PlaceOrder",
        ),
    ],
)
def test_a_malformed_spec_is_named_by_line(spec, error):
    with pytest.raises(ChainSpecError) as raised:
        assert_chain([], spec)
    assert str(raised.value) == error
    assert isinstance(raised.value, ValueError)
