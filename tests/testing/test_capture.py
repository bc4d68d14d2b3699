"""capture(bus): what a mediator dispatched, in order, with outcomes, errors, handlers
and causation parents; and nothing left on the bus afterwards."""

from __future__ import annotations

import asyncio

import pytest

from python_cqrs_core import (
    BaseCommand,
    BaseEvent,
    BaseQuery,
    EventHandlersFailed,
    HandlerEvent,
    Mediator,
    message_type_name,
)
from python_cqrs_core.mediator import CallNext
from python_cqrs_core.messages import BaseMessage
from python_cqrs_core.testing import Capture, Dispatch, capture


class PlaceOrder(BaseCommand):
    order_id: str


class OrderPlaced(BaseEvent):
    order_id: str


class ExpressOrderPlaced(OrderPlaced):
    pass


class ReserveInventory(BaseCommand):
    order_id: str


class NotifyCustomer(BaseCommand):
    order_id: str


class GetOrder(BaseQuery):
    order_id: str


class SmsGatewayError(Exception):
    pass


def wiring_of(bus: Mediator) -> tuple[int, int, int]:
    """How much middleware, handler middleware and listeners a mediator holds."""
    return len(bus._middleware), len(bus._handler_middleware), len(bus._listeners)


@pytest.fixture
def shop(bus: Mediator) -> Mediator:
    """PlaceOrder -> OrderPlaced -> (ReserveInventory, NotifyCustomer); NotifyCustomer
    fails for order "sms"."""

    async def place(command: PlaceOrder) -> str:
        await bus.publish(OrderPlaced(order_id=command.order_id))
        return f"placed {command.order_id}"

    async def reserve_when_placed(event: OrderPlaced) -> None:
        await bus.send(ReserveInventory(order_id=event.order_id))

    async def notify_when_placed(event: OrderPlaced) -> None:
        await bus.send(NotifyCustomer(order_id=event.order_id))

    async def reserve(command: ReserveInventory) -> None:
        return None

    async def notify(command: NotifyCustomer) -> None:
        if command.order_id == "sms":
            raise SmsGatewayError("503 from the gateway")

    async def get(query: GetOrder) -> dict[str, str]:
        return {"order_id": query.order_id}

    bus.register(PlaceOrder, place)
    bus.subscribe(OrderPlaced, reserve_when_placed)
    bus.subscribe(OrderPlaced, notify_when_placed)
    bus.register(ReserveInventory, reserve)
    bus.register(NotifyCustomer, notify)
    bus.register(GetOrder, get)
    return bus


async def test_every_dispatch_is_captured_in_dispatch_order_with_its_kind(shop: Mediator):
    with capture(shop) as dispatched:
        await shop.send(PlaceOrder(order_id="o-1"))
        await shop.query(GetOrder(order_id="o-1"))

    assert [(type(d.message).__name__, d.kind) for d in dispatched] == [
        ("PlaceOrder", "command"),
        ("OrderPlaced", "event"),
        ("ReserveInventory", "command"),
        ("NotifyCustomer", "command"),
        ("GetOrder", "query"),
    ]
    assert len(dispatched) == 5
    assert dispatched[0].type_name == message_type_name(PlaceOrder)


async def test_each_dispatch_links_to_the_dispatch_of_the_message_that_caused_it(shop: Mediator):
    with capture(shop) as dispatched:
        await shop.send(PlaceOrder(order_id="o-1"))

    place, placed, reserve, notify = dispatched
    assert place.parent is None
    assert placed.parent is place
    assert reserve.parent is placed and notify.parent is placed
    assert place.children == [placed]
    assert placed.children == [reserve, notify]
    for child in (placed, reserve, notify):
        assert child.causation_id == child.parent.request_id  # type: ignore[union-attr]
        assert child.correlation_id == place.correlation_id
    assert dispatched.roots == [place]


async def test_handlers_that_ran_are_listed_in_the_order_they_started(shop: Mediator):
    with capture(shop) as dispatched:
        await shop.send(PlaceOrder(order_id="o-1"))

    placed = dispatched.dispatch_of(dispatched.one(OrderPlaced))
    assert [name.rsplit(".", 1)[-1] for name in placed.handlers] == [
        "reserve_when_placed",
        "notify_when_placed",
    ]
    assert [name.rsplit(".", 1)[-1] for name in dispatched[0].handlers] == ["place"]


async def test_an_event_without_subscribers_is_captured_with_no_handlers(bus: Mediator):
    with capture(bus) as dispatched:
        await bus.publish(OrderPlaced(order_id="o-1"))

    (only,) = dispatched
    assert (only.outcome, only.handlers) == ("succeeded", [])


async def test_a_failed_dispatch_keeps_the_exception_the_caller_received(shop: Mediator):
    with capture(shop) as dispatched:
        with pytest.raises(SmsGatewayError) as raised:
            await shop.send(PlaceOrder(order_id="sms"))

    assert [(type(d.message).__name__, d.outcome) for d in dispatched] == [
        ("PlaceOrder", "failed"),
        ("OrderPlaced", "failed"),
        ("ReserveInventory", "succeeded"),
        ("NotifyCustomer", "failed"),
    ]
    assert [type(d.message).__name__ for d in dispatched.failed] == [
        "PlaceOrder",
        "OrderPlaced",
        "NotifyCustomer",
    ]
    for failed in dispatched.failed:
        assert failed.error is raised.value
        assert failed.failed and not failed.succeeded
    assert dispatched[2].error is None and dispatched[2].succeeded


async def test_several_failing_subscribers_fail_the_event_with_their_group(bus: Mediator):
    async def broken(event: OrderPlaced) -> None:
        raise SmsGatewayError(event.order_id)

    bus.subscribe(OrderPlaced, broken)
    bus.subscribe(OrderPlaced, broken)
    with capture(bus) as dispatched:
        with pytest.raises(EventHandlersFailed):
            await bus.publish(OrderPlaced(order_id="o-1"))

    (event,) = dispatched
    assert isinstance(event.error, EventHandlersFailed)
    assert len(event.handlers) == 2


async def test_a_dispatch_is_running_until_it_returns(bus: Mediator):
    during: list[str] = []
    with capture(bus) as dispatched:

        async def place(command: PlaceOrder) -> None:
            during.append(dispatched[0].outcome)

        bus.register(PlaceOrder, place)
        await bus.send(PlaceOrder(order_id="o-1"))

    assert during == ["running"]
    assert dispatched[0].outcome == "succeeded"


async def test_accessors_answer_the_usual_questions_of_a_test(shop: Mediator):
    with capture(shop) as dispatched:
        await shop.send(PlaceOrder(order_id="o-1"))
        await shop.query(GetOrder(order_id="o-1"))
        await shop.publish(ExpressOrderPlaced(order_id="o-2"))

    assert dispatched.messages == [d.message for d in dispatched.dispatches]
    assert [type(m).__name__ for m in dispatched.commands] == [
        "PlaceOrder",
        "ReserveInventory",
        "NotifyCustomer",
        "ReserveInventory",
        "NotifyCustomer",
    ]
    assert [type(m).__name__ for m in dispatched.queries] == ["GetOrder"]
    assert [type(m).__name__ for m in dispatched.events] == ["OrderPlaced", "ExpressOrderPlaced"]
    # of_type includes subclasses, as the mediator's routing does
    assert [m.order_id for m in dispatched.of_type(OrderPlaced)] == ["o-1", "o-2"]
    assert dispatched.one(ExpressOrderPlaced).order_id == "o-2"
    assert dispatched.one(GetOrder).order_id == "o-1"
    assert dispatched.failed == []


async def test_one_names_the_type_and_shows_what_was_dispatched_when_not_exactly_one(
    shop: Mediator,
):
    with capture(shop) as dispatched:
        await shop.send(PlaceOrder(order_id="o-1"))

    with pytest.raises(AssertionError) as none:
        dispatched.one(GetOrder)
    assert str(none.value).startswith(
        "expected exactly one GetOrder to be dispatched, found none; dispatched:\n"
    )
    assert "    PlaceOrder\n    └── OrderPlaced\n" in str(none.value)

    with pytest.raises(
        AssertionError, match="expected exactly one BaseCommand to be dispatched, found 3"
    ):
        dispatched.one(BaseCommand)


async def test_dispatch_of_a_message_never_dispatched_is_an_assertion_error(bus: Mediator):
    with capture(bus) as dispatched:
        pass
    never = PlaceOrder(order_id="o-1")
    with pytest.raises(AssertionError, match=rf"PlaceOrder {never.request_id} was not dispatched"):
        dispatched.dispatch_of(never)


async def test_dispatch_of_finds_the_copy_that_process_hands_the_handler(shop: Mediator):
    command = PlaceOrder(order_id="o-1", correlation_id="original")
    with capture(shop) as dispatched:
        await shop.process(command, correlation_id="explicit")

    handled = dispatched.dispatch_of(command)
    assert handled.message is not command and handled.request_id == command.request_id
    assert handled.correlation_id == "explicit"


async def test_a_message_built_in_a_handler_and_published_later_is_still_its_child(
    bus: Mediator,
):
    async def place(command: PlaceOrder) -> OrderPlaced:
        return OrderPlaced(order_id=command.order_id)  # built here, published by the caller

    bus.register(PlaceOrder, place)
    with capture(bus) as dispatched:
        event = await bus.send(PlaceOrder(order_id="o-1"))
        await bus.publish(event)

    place_dispatch, event_dispatch = dispatched
    assert event_dispatch.parent is place_dispatch  # the causation link, not the call stack


async def test_a_child_whose_cause_was_not_captured_has_no_parent(bus: Mediator):
    with capture(bus) as dispatched:
        await bus.publish(OrderPlaced(order_id="o-1", causation_id="upstream-message"))

    (event,) = dispatched
    assert (event.parent, event.causation_id) == (None, "upstream-message")
    assert dispatched.roots == [event]


async def test_concurrent_chains_keep_their_own_parents_and_handlers(shop: Mediator):
    with capture(shop) as dispatched:
        await asyncio.gather(*(shop.send(PlaceOrder(order_id=f"o-{n}")) for n in range(20)))

    assert len(dispatched) == 20 * 4
    for root in dispatched.roots:
        assert isinstance(root.message, PlaceOrder)
        (placed,) = root.children
        assert placed.message.order_id == root.message.order_id  # type: ignore[attr-defined]
        assert [c.message.order_id for c in placed.children] == [root.message.order_id] * 2  # type: ignore[attr-defined]
        assert len(placed.handlers) == 2
        assert [len(leaf.handlers) for leaf in placed.children] == [1, 1]


async def test_leaving_the_with_block_removes_everything_it_installed(shop: Mediator):
    before = wiring_of(shop)
    with capture(shop) as dispatched:
        assert wiring_of(shop) == (before[0] + 1, before[1], before[2] + 1)
        await shop.send(PlaceOrder(order_id="o-1"))

    assert wiring_of(shop) == before
    assert not dispatched.capturing
    await shop.send(PlaceOrder(order_id="o-2"))
    assert len(dispatched) == 4  # kept, and nothing more captured


async def test_an_exception_in_the_with_block_still_removes_the_capture(shop: Mediator):
    with pytest.raises(SmsGatewayError):
        with capture(shop):
            await shop.send(PlaceOrder(order_id="sms"))
    assert wiring_of(shop) == (0, 0, 0)


async def test_without_with_it_captures_until_stopped_and_stopping_twice_is_harmless(
    shop: Mediator,
):
    dispatched = capture(shop)
    await shop.query(GetOrder(order_id="o-1"))
    dispatched.stop()
    dispatched.stop()
    await shop.query(GetOrder(order_id="o-2"))

    assert [q.order_id for q in dispatched.queries] == ["o-1"]  # type: ignore[attr-defined]
    assert wiring_of(shop) == (0, 0, 0)
    with pytest.raises(RuntimeError, match="stopped"):
        with dispatched:
            pass


async def test_stopping_keeps_the_other_middleware_and_listeners_of_the_bus(bus: Mediator):
    async def passthrough(message: BaseMessage, call_next: CallNext) -> object:
        return await call_next(message)

    def listener(event: HandlerEvent) -> None:
        return None

    bus.add_middleware(passthrough)
    with capture(bus):
        bus.add_listener(listener)
    assert (bus._middleware[0].middleware, bus._listeners) == (passthrough, [listener])


async def test_two_captures_on_one_bus_both_see_everything(shop: Mediator):
    with capture(shop) as outer, capture(shop) as inner:
        await shop.send(PlaceOrder(order_id="o-1"))

    assert outer.messages == inner.messages
    assert [d.handlers for d in outer] == [d.handlers for d in inner]
    assert wiring_of(shop) == (0, 0, 0)


async def test_clear_forgets_the_set_up_and_goes_on_capturing(shop: Mediator):
    with capture(shop) as dispatched:
        await shop.send(PlaceOrder(order_id="set-up"))
        dispatched.clear()
        await shop.query(GetOrder(order_id="o-1"))

    assert [type(m).__name__ for m in dispatched.messages] == ["GetOrder"]


def test_a_dispatch_reads_well_in_a_pytest_report():
    dispatch = Dispatch(PlaceOrder(order_id="o-1"), outcome="failed", error=SmsGatewayError())
    assert repr(dispatch) == (
        f"<Dispatch command PlaceOrder failed SmsGatewayError request_id={dispatch.request_id}>"
    )
    assert repr(Capture(Mediator())) == "<Capture capturing, 0 dispatch(es)>"
