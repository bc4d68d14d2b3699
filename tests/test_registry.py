"""The message registry: stable type names back to classes."""

from __future__ import annotations

import pytest

from python_cqrs_core import (
    BaseCommand,
    BaseEvent,
    BaseMessage,
    CQRSError,
    MessageRegistry,
    MessageTypeCollisionError,
    UnknownMessageTypeError,
    message_type_name,
)


class PlaceOrder(BaseCommand):
    order_id: str


class OrderPlaced(BaseEvent):
    __message_type__ = "orders.OrderPlaced"
    order_id: str


class ExpressOrderPlaced(OrderPlaced):
    pass


def test_registered_classes_resolve_by_their_stable_name():
    registry = MessageRegistry([PlaceOrder, OrderPlaced])
    assert registry.resolve(message_type_name(PlaceOrder)) is PlaceOrder
    assert registry.resolve("orders.OrderPlaced") is OrderPlaced
    assert registry.names() == sorted([f"{__name__}.PlaceOrder", "orders.OrderPlaced"])


def test_register_works_as_a_class_decorator():
    registry = MessageRegistry()

    @registry.register
    class Shipped(BaseEvent):
        __message_type__ = "orders.Shipped"

    assert registry.resolve("orders.Shipped") is Shipped


def test_registering_the_same_class_twice_is_harmless():
    registry = MessageRegistry([OrderPlaced])
    registry.register(OrderPlaced)
    assert len(registry) == 1


def test_two_classes_with_one_name_collide_when_the_second_is_registered():
    class Impostor(BaseEvent):
        __message_type__ = "orders.OrderPlaced"

    registry = MessageRegistry([OrderPlaced])
    with pytest.raises(MessageTypeCollisionError, match=r"orders\.OrderPlaced") as exc_info:
        registry.register(Impostor)
    assert "Impostor" in str(exc_info.value) and "__message_type__" in str(exc_info.value)
    assert registry.resolve("orders.OrderPlaced") is OrderPlaced
    assert isinstance(exc_info.value, CQRSError | ValueError)


def test_a_collision_inside_one_call_registers_nothing():
    class Impostor(BaseEvent):
        __message_type__ = "orders.OrderPlaced"

    registry = MessageRegistry()
    with pytest.raises(MessageTypeCollisionError):
        registry.register(PlaceOrder, OrderPlaced, Impostor)
    assert len(registry) == 0


def test_an_unknown_name_is_a_clear_error_listing_what_is_known():
    registry = MessageRegistry([OrderPlaced])
    with pytest.raises(UnknownMessageTypeError) as exc_info:
        registry.resolve("orders.Cancelled")
    text = str(exc_info.value)
    assert "'orders.Cancelled'" in text and "orders.OrderPlaced" in text
    assert exc_info.value.type_name == "orders.Cancelled"
    assert isinstance(exc_info.value, LookupError)
    assert registry.get("orders.Cancelled") is None


def test_discover_registers_the_subclasses_of_a_base():
    registry = MessageRegistry()
    found = registry.discover(OrderPlaced)
    assert found == [OrderPlaced, ExpressOrderPlaced]
    assert registry.resolve(message_type_name(ExpressOrderPlaced)) is ExpressOrderPlaced


@pytest.mark.parametrize("bad", [int, BaseMessage, object()])
def test_only_commands_queries_and_events_can_be_registered(bad):
    with pytest.raises(TypeError):
        MessageRegistry().register(bad)


def test_discover_skips_the_library_bases():
    from python_cqrs_core import PaginatedQuery

    class ListOrders(PaginatedQuery):  # its bases are the library's: not registered
        pass

    registry = MessageRegistry()
    found = registry.discover(PaginatedQuery)
    assert ListOrders in found  # (other tests' PaginatedQuery subclasses may be found too)
    assert not {BaseCommand, PaginatedQuery} & set(registry)
    assert all(cls.__module__ != "python_cqrs_core.messages" for cls in found)
