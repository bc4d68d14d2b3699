"""Routes: which messages leave the process, for which destination."""

from __future__ import annotations

import pytest

from python_cqrs_core import BaseCommand, BaseEvent
from python_cqrs_core.transports import Routes


class OrderEvent(BaseEvent):
    order_id: int


class OrderPlaced(OrderEvent):
    pass


class OrderCancelled(OrderEvent):
    pass


class PlaceOrder(BaseCommand):
    order_id: int


def test_a_routed_class_and_its_subclasses_go_to_its_destination():
    routes = Routes({OrderEvent: "orders.events"})
    assert routes.destination_of(OrderPlaced(order_id=1)) == "orders.events"
    assert routes.destination_of(OrderCancelled) == "orders.events"
    assert routes.destination_of(PlaceOrder(order_id=1)) is None


def test_a_class_routed_itself_beats_its_base():
    routes = Routes({OrderEvent: "orders.events"})
    routes.route(OrderCancelled, "orders.cancellations")
    assert routes.destination_of(OrderCancelled) == "orders.cancellations"
    assert routes.destination_of(OrderPlaced) == "orders.events"
    assert routes.destinations() == ["orders.cancellations", "orders.events"]


@pytest.mark.parametrize("bad", ["", "orders events", "orders\r\nx", "x" * 257])
def test_a_destination_must_be_printable_ascii_without_whitespace(bad):
    with pytest.raises(ValueError, match="destination"):
        Routes({OrderPlaced: bad})


def test_only_message_classes_can_be_routed():
    with pytest.raises(TypeError):
        Routes().route(int, "x")  # type: ignore[arg-type]
