"""The messages the two services exchange: the contract between orders and inventory.

Each class names its stable type (``__message_type__``): what travels in the
``cqrs-message-type`` header, what the shared store records, and what the other
service decodes.  Both services import this module; in a real system it would be a
small package of its own, or each service would declare the classes it consumes.

The chain one order makes, across the two processes::

    orders      PlaceOrder -> OrderPlaced ---------------------------+  (orders.events)
    inventory                       ReserveInventory -> InventoryReserved --+  (inventory.events)
    orders                                     ConfirmOrder -> OrderConfirmed
"""

from __future__ import annotations

from python_cqrs_core import BaseCommand, BaseEvent, MessageRegistry

ORDER_EVENTS = "orders.events"
"""The stream orders publishes ``OrderPlaced`` to; inventory consumes it."""
INVENTORY_EVENTS = "inventory.events"
"""The stream inventory publishes ``InventoryReserved`` to; orders consumes it."""


class PlaceOrder(BaseCommand):
    __message_type__ = "orders.PlaceOrder"
    order_id: str
    sku: str
    quantity: int


class OrderPlaced(BaseEvent):
    __message_type__ = "orders.OrderPlaced"
    order_id: str
    sku: str
    quantity: int


class ReserveInventory(BaseCommand):
    __message_type__ = "inventory.ReserveInventory"
    order_id: str
    sku: str
    quantity: int


class InventoryReserved(BaseEvent):
    __message_type__ = "inventory.InventoryReserved"
    order_id: str
    sku: str
    quantity: int
    left: int


class ConfirmOrder(BaseCommand):
    __message_type__ = "orders.ConfirmOrder"
    order_id: str


class OrderConfirmed(BaseEvent):
    __message_type__ = "orders.OrderConfirmed"
    order_id: str


REGISTRY = MessageRegistry(
    [PlaceOrder, OrderPlaced, ReserveInventory, InventoryReserved, ConfirmOrder, OrderConfirmed]
)
