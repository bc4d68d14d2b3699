"""The orders service: a FastAPI application, and its worker.

- ``app``: ``POST /orders`` handles ``PlaceOrder`` in a transaction of the orders
  database: the order row and the ``OrderPlaced`` entry of the outbox commit together.
  ``X-Correlation-ID`` (else a fresh id) becomes the correlation id of the chain, and
  ``X-User`` its ``requested_by``.  ``GET /orders/{order_id}`` shows the order.
- ``worker``: what ``cqrs worker orders:worker`` runs: the outbox relay (publishes
  ``OrderPlaced`` to ``orders.events``), and a consumer of ``inventory.events``
  (group ``orders``) whose ``InventoryReserved`` handler sends ``ConfirmOrder``.  Each
  delivery is handled in a transaction of the orders database with the transactional
  inbox: a redelivered message is handled once.

Run from this directory (``run.sh`` does it all)::

    uvicorn orders:app --host 127.0.0.1 --port 8000
    cqrs worker orders:worker
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from messages import (
    INVENTORY_EVENTS,
    ORDER_EVENTS,
    ConfirmOrder,
    InventoryReserved,
    OrderConfirmed,
    OrderPlaced,
    PlaceOrder,
)
from pydantic import BaseModel, Field
from service import Service, open_service

from python_cqrs_core import current_correlation_id, uuid4
from python_cqrs_core.apps.worker import Subscription, Worker
from python_cqrs_core.integrations.asgi import CorrelationIdMiddleware
from python_cqrs_core.outbox import OutboxRelay, TransactionalInbox
from python_cqrs_core.outbox.postgres import (
    ConnectionUnitOfWork,
    connection_transaction,
    current_connection,
)
from python_cqrs_core.store import DeliveryRecorder
from python_cqrs_core.transports import Routes

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id text PRIMARY KEY,
    sku text NOT NULL,
    quantity integer NOT NULL,
    status text NOT NULL
)
"""


def handle_orders(service: Service) -> None:
    """The orders service's handlers, on its bus."""
    bus = service.bus

    @bus.handler(PlaceOrder)
    async def place_order(command: PlaceOrder) -> None:
        await current_connection().execute(
            "INSERT INTO orders (order_id, sku, quantity, status) VALUES ($1, $2, $3, 'placed')",
            command.order_id,
            command.sku,
            command.quantity,
        )
        # routed to orders.events: written to the outbox in this same transaction
        await bus.publish(
            OrderPlaced(order_id=command.order_id, sku=command.sku, quantity=command.quantity)
        )

    @bus.handler(InventoryReserved)
    async def confirm_when_reserved(event: InventoryReserved) -> None:
        await bus.send(ConfirmOrder(order_id=event.order_id))

    @bus.handler(ConfirmOrder)
    async def confirm_order(command: ConfirmOrder) -> None:
        await current_connection().execute(
            "UPDATE orders SET status = 'confirmed' WHERE order_id = $1", command.order_id
        )
        await bus.publish(OrderConfirmed(order_id=command.order_id))


ROUTES = Routes({OrderPlaced: ORDER_EVENTS})


# -- the web application ------------------------------------------------------------------


class OrderIn(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=1000)


def _requested_by(scope: Any) -> str | None:
    """``requested_by`` from the ``X-User`` header (a real app: the signed-in user)."""
    for name, value in scope.get("headers", ()):
        if name == b"x-user":
            return str(value.decode("latin-1"))
    return None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with open_service("orders", ROUTES, SCHEMA) as service:
        handle_orders(service)
        app.state.service = service
        yield


app = FastAPI(title="orders", lifespan=lifespan)
app.add_middleware(CorrelationIdMiddleware, requested_by=_requested_by)


@app.post("/orders", status_code=201)
async def post_order(body: OrderIn) -> dict[str, str]:
    service: Service = app.state.service
    order_id = f"ord-{uuid4().hex[:12]}"
    async with service.pool.acquire() as connection, connection_transaction(connection):
        await service.bus.send(PlaceOrder(order_id=order_id, sku=body.sku, quantity=body.quantity))
    return {"order_id": order_id, "correlation_id": str(current_correlation_id())}


@app.get("/orders/{order_id}")
async def get_order(order_id: str) -> dict[str, Any]:
    service: Service = app.state.service
    row = await service.pool.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)
    if row is None:
        raise HTTPException(404, "no such order")
    return dict(row)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


# -- the worker ---------------------------------------------------------------------------


@asynccontextmanager
async def worker() -> AsyncIterator[Worker]:
    """The orders worker: the outbox relay, and the consumer of inventory's events."""
    async with open_service("orders", ROUTES, SCHEMA) as service:
        handle_orders(service)
        # a group sees what is published after it exists: create it before any order
        await service.transport.ensure_group(INVENTORY_EVENTS, "orders")
        dead_letters = DeliveryRecorder(service.store, service="orders")
        yield Worker(
            name="orders",
            bus=service.bus,
            transport=service.transport,
            codec=service.codec,
            consumers=[
                Subscription(
                    INVENTORY_EVENTS,
                    "orders",
                    inbox=TransactionalInbox(),
                    unit_of_work=ConnectionUnitOfWork(service.pool),
                    listeners=(dead_letters,),
                )
            ],
            relay=OutboxRelay(service.outbox, service.transport, poll_interval=0.05),
            cleanup=[dead_letters.close],
        )
