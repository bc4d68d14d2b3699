"""The inventory service: a worker only, ``cqrs worker inventory:worker``.

It consumes ``orders.events`` in the group ``inventory``: each ``OrderPlaced`` makes
it send ``ReserveInventory``, whose handler takes the quantity off the stock and
publishes ``InventoryReserved``, routed to ``inventory.events``.  Each delivery is
handled in one transaction of the inventory database: the stock update, the outbox
entry of ``InventoryReserved`` and the inbox mark of the delivered message commit
together, or not at all (and the delivery is retried).  The same worker runs the
relay that publishes the entries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from messages import (
    INVENTORY_EVENTS,
    ORDER_EVENTS,
    InventoryReserved,
    OrderPlaced,
    ReserveInventory,
)
from service import Service, open_service

from python_cqrs_core.apps.worker import Subscription, Worker
from python_cqrs_core.outbox import OutboxRelay, TransactionalInbox
from python_cqrs_core.outbox.postgres import ConnectionUnitOfWork, current_connection
from python_cqrs_core.store import DeliveryRecorder
from python_cqrs_core.transports import Routes

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (sku text PRIMARY KEY, available integer NOT NULL);
INSERT INTO stock (sku, available) VALUES ('BOOK-1', 100), ('PEN-2', 500)
ON CONFLICT (sku) DO NOTHING;
"""


class OutOfStockError(Exception):
    """Not enough of a SKU left: the delivery is retried, then dead-lettered."""


def handle_inventory(service: Service) -> None:
    """The inventory service's handlers, on its bus."""
    bus = service.bus

    @bus.handler(OrderPlaced)
    async def reserve_when_placed(event: OrderPlaced) -> None:
        await bus.send(
            ReserveInventory(order_id=event.order_id, sku=event.sku, quantity=event.quantity)
        )

    @bus.handler(ReserveInventory)
    async def reserve_inventory(command: ReserveInventory) -> None:
        left = await current_connection().fetchval(
            "UPDATE stock SET available = available - $2 WHERE sku = $1 AND available >= $2 "
            "RETURNING available",
            command.sku,
            command.quantity,
        )
        if left is None:
            raise OutOfStockError(f"not {command.quantity} of {command.sku} left")
        await bus.publish(
            InventoryReserved(
                order_id=command.order_id, sku=command.sku, quantity=command.quantity, left=left
            )
        )


ROUTES = Routes({InventoryReserved: INVENTORY_EVENTS})


@asynccontextmanager
async def worker() -> AsyncIterator[Worker]:
    """The inventory worker: the consumer of orders' events, and the outbox relay."""
    async with open_service("inventory", ROUTES, SCHEMA) as service:
        handle_inventory(service)
        await service.transport.ensure_group(ORDER_EVENTS, "inventory")
        dead_letters = DeliveryRecorder(service.store, service="inventory")
        yield Worker(
            name="inventory",
            bus=service.bus,
            transport=service.transport,
            codec=service.codec,
            consumers=[
                Subscription(
                    ORDER_EVENTS,
                    "inventory",
                    inbox=TransactionalInbox(),
                    unit_of_work=ConnectionUnitOfWork(service.pool),
                    listeners=(dead_letters,),
                )
            ],
            relay=OutboxRelay(service.outbox, service.transport, poll_interval=0.05),
            cleanup=[dead_letters.close],
        )
