"""The runnable demo: two concurrent order requests, recorded and traced.

``cqrs demo`` (and ``make demo``) runs :func:`run_demo`: a small shop whose whole flow
is built with the public API only, and recorded in a message store::

    result = await run_demo("sqlite:///cqrs.db")
    for request in result.requests:
        print(request.correlation_id, request.error)

Two HTTP requests arrive at the same time.  Each runs under its own
:class:`~python_cqrs_core.correlation_scope`, as the HTTP middleware sets it from the
``X-Correlation-ID`` header, with ``requested_by`` naming the user:

- Alice orders two keyboards and wants an e-mail;
- Bob orders a monitor and wants a text message, but the SMS gateway answers
  ``503``: :class:`SmsGatewayError` propagates out of the handlers, fails Bob's
  request, and reaches the top of the demo (it is reported, not swallowed).

Each request makes this causation tree (Bob's stops at the failed command)::

    PlaceOrder                       command  -> PlaceOrderHandler
    └── OrderPlaced                  event    -> ReserveInventoryWhenOrderPlaced,
        │                                        NotifyCustomerWhenOrderPlaced
        ├── ReserveInventory         command  -> ReserveInventoryHandler
        │   └── InventoryReserved    event    -> OrderTimelineProjection
        └── NotifyCustomer           command  -> NotifyCustomerHandler
            └── CustomerNotified     event    -> OrderTimelineProjection

The trees are read back from the store, not from memory: what the demo shows is what
``cqrs trace <correlation id>`` shows later.  The structure is the same on every run;
the ids are fresh on every run, so running the demo twice on one store adds two more
trees instead of mixing them with the first ones.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from ... import (
    BaseCommand,
    BaseEvent,
    ICommandHandler,
    IEventHandler,
    Mediator,
    correlation_scope,
    uuid4,
)
from ...store import CausationNode, MessageRecorder, MessageStore, open_store

__all__ = [
    "DB_LATENCY_S",
    "GATEWAY_LATENCY_S",
    "CustomerNotified",
    "DemoRequest",
    "DemoResult",
    "InventoryReserved",
    "NotifyCustomer",
    "OrderPlaced",
    "OutOfStockError",
    "PlaceOrder",
    "ReserveInventory",
    "SmsGatewayError",
    "build_shop",
    "run_demo",
    "run_demo_on",
]

Channel = Literal["email", "sms"]

DB_LATENCY_S = 0.004
"""Simulated latency of a repository call, so durations are visible in the tree."""
GATEWAY_LATENCY_S = 0.012
"""Simulated latency of an e-mail or SMS gateway call."""


# -- messages ---------------------------------------------------------------------------


class PlaceOrder(BaseCommand):
    """A customer checks out one line of their basket."""

    __message_type__ = "demo_shop.PlaceOrder"

    order_id: str
    customer_id: str
    sku: str
    quantity: int = Field(gt=0)
    unit_price_cents: int = Field(ge=0)
    notify_by: Channel


class OrderPlaced(BaseEvent):
    """The order was accepted and saved."""

    __message_type__ = "demo_shop.OrderPlaced"

    order_id: str
    customer_id: str
    sku: str
    quantity: int
    total_cents: int
    notify_by: Channel


class ReserveInventory(BaseCommand):
    """Set stock aside for an order."""

    __message_type__ = "demo_shop.ReserveInventory"

    order_id: str
    sku: str
    quantity: int = Field(gt=0)


class InventoryReserved(BaseEvent):
    """Stock was set aside; ``remaining`` is what is left on the shelf."""

    __message_type__ = "demo_shop.InventoryReserved"

    order_id: str
    sku: str
    quantity: int
    remaining: int


class NotifyCustomer(BaseCommand):
    """Tell the customer their order was placed, on the channel they chose."""

    __message_type__ = "demo_shop.NotifyCustomer"

    order_id: str
    customer_id: str
    channel: Channel


class CustomerNotified(BaseEvent):
    """The confirmation left through ``channel``."""

    __message_type__ = "demo_shop.CustomerNotified"

    order_id: str
    customer_id: str
    channel: Channel


# -- collaborators ----------------------------------------------------------------------


class OutOfStockError(Exception):
    """Fewer items on the shelf than the order asks for."""


class SmsGatewayError(Exception):
    """The SMS provider refused the message (the demo's failing dependency)."""


@dataclass
class OrderRepository:
    """Orders by id, in memory."""

    orders: dict[str, PlaceOrder] = field(default_factory=dict)

    async def save(self, order: PlaceOrder) -> None:
        await asyncio.sleep(DB_LATENCY_S)
        self.orders[order.order_id] = order


@dataclass
class InventoryRepository:
    """Units on the shelf by SKU, in memory."""

    stock: dict[str, int] = field(default_factory=dict)

    async def reserve(self, sku: str, quantity: int) -> int:
        """Take ``quantity`` units of ``sku`` off the shelf and return what is left."""
        await asyncio.sleep(DB_LATENCY_S)
        available = self.stock.get(sku, 0)
        if available < quantity:
            raise OutOfStockError(f"{sku}: {quantity} requested, {available} on the shelf")
        self.stock[sku] = available - quantity
        return self.stock[sku]


@dataclass
class EmailGateway:
    """Sends e-mail (here: remembers what it sent)."""

    sent: list[str] = field(default_factory=list)

    async def send(self, customer_id: str, text: str) -> None:
        await asyncio.sleep(GATEWAY_LATENCY_S)
        self.sent.append(f"{customer_id}: {text}")


class SmsGateway:
    """An SMS provider that is down: every send fails after a network round trip."""

    async def send(self, customer_id: str, text: str) -> None:
        await asyncio.sleep(GATEWAY_LATENCY_S)
        raise SmsGatewayError(
            "sms-gateway.internal answered 503 Service Unavailable (retry after 30 s)"
        )


@dataclass
class Shop:
    """The demo's application: a mediator wired to its repositories and gateways."""

    bus: Mediator
    orders: OrderRepository
    inventory: InventoryRepository
    email: EmailGateway
    timeline: dict[str, list[str]]


# -- handlers ---------------------------------------------------------------------------


class PlaceOrderHandler(ICommandHandler[PlaceOrder, str]):
    def __init__(self, shop: Shop) -> None:
        self._shop = shop

    async def handle(self, command: PlaceOrder) -> str:
        await self._shop.orders.save(command)
        await self._shop.bus.publish(
            OrderPlaced(
                order_id=command.order_id,
                customer_id=command.customer_id,
                sku=command.sku,
                quantity=command.quantity,
                total_cents=command.quantity * command.unit_price_cents,
                notify_by=command.notify_by,
            )
        )
        return command.order_id


class ReserveInventoryWhenOrderPlaced(IEventHandler[OrderPlaced]):
    def __init__(self, shop: Shop) -> None:
        self._shop = shop

    async def handle(self, event: OrderPlaced) -> None:
        await self._shop.bus.send(
            ReserveInventory(order_id=event.order_id, sku=event.sku, quantity=event.quantity)
        )


class NotifyCustomerWhenOrderPlaced(IEventHandler[OrderPlaced]):
    def __init__(self, shop: Shop) -> None:
        self._shop = shop

    async def handle(self, event: OrderPlaced) -> None:
        await self._shop.bus.send(
            NotifyCustomer(
                order_id=event.order_id, customer_id=event.customer_id, channel=event.notify_by
            )
        )


class ReserveInventoryHandler(ICommandHandler[ReserveInventory, int]):
    def __init__(self, shop: Shop) -> None:
        self._shop = shop

    async def handle(self, command: ReserveInventory) -> int:
        remaining = await self._shop.inventory.reserve(command.sku, command.quantity)
        await self._shop.bus.publish(
            InventoryReserved(
                order_id=command.order_id,
                sku=command.sku,
                quantity=command.quantity,
                remaining=remaining,
            )
        )
        return remaining


class NotifyCustomerHandler(ICommandHandler[NotifyCustomer, None]):
    def __init__(self, shop: Shop, sms: SmsGateway) -> None:
        self._shop = shop
        self._sms = sms

    async def handle(self, command: NotifyCustomer) -> None:
        text = f"Thank you! Order {command.order_id} is confirmed."
        if command.channel == "sms":
            await self._sms.send(command.customer_id, text)
        else:
            await self._shop.email.send(command.customer_id, text)
        await self._shop.bus.publish(
            CustomerNotified(
                order_id=command.order_id,
                customer_id=command.customer_id,
                channel=command.channel,
            )
        )


class OrderTimelineProjection:
    """A read model: what happened to each order, in order (subscribed to two events)."""

    def __init__(self, timeline: dict[str, list[str]]) -> None:
        self._timeline = timeline

    async def handle(self, event: InventoryReserved | CustomerNotified) -> None:
        self._timeline.setdefault(event.order_id, []).append(type(event).__name__)


def build_shop() -> Shop:
    """Wire the demo's handlers to a fresh :class:`~python_cqrs_core.Mediator`."""
    shop = Shop(
        bus=Mediator(),
        orders=OrderRepository(),
        inventory=InventoryRepository({"SKU-KEYBOARD": 25, "SKU-MONITOR": 4}),
        email=EmailGateway(),
        timeline={},
    )
    bus = shop.bus
    bus.register(PlaceOrder, PlaceOrderHandler(shop))
    bus.subscribe(OrderPlaced, ReserveInventoryWhenOrderPlaced(shop))
    bus.subscribe(OrderPlaced, NotifyCustomerWhenOrderPlaced(shop))
    bus.register(ReserveInventory, ReserveInventoryHandler(shop))
    bus.register(NotifyCustomer, NotifyCustomerHandler(shop, SmsGateway()))
    projection = OrderTimelineProjection(shop.timeline)
    bus.subscribe(InventoryReserved, projection)
    bus.subscribe(CustomerNotified, projection)
    return shop


# -- the flow ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoRequest:
    """One simulated HTTP request: who sent it, what became of it, and its trees."""

    correlation_id: str
    requested_by: str
    summary: str
    order_id: str
    error: Exception | None
    """The exception the request ended with, as the caller received it (or ``None``)."""
    trees: list[CausationNode]
    """The request's causation trees, read back from the store (one root here)."""


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What :func:`run_demo` did: the store it wrote to and the two requests."""

    store_url: str
    requests: tuple[DemoRequest, ...]
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class _Order:
    user: str
    customer_id: str
    sku: str
    quantity: int
    unit_price_cents: int
    notify_by: Channel

    @property
    def summary(self) -> str:
        return f"{self.user} orders {self.quantity} x {self.sku}, confirmation by {self.notify_by}"


_ORDERS = (
    _Order("user:alice", "cus-alice", "SKU-KEYBOARD", 2, 8900, "email"),
    _Order("user:bob", "cus-bob", "SKU-MONITOR", 1, 23900, "sms"),
)


async def _handle_request(shop: Shop, correlation_id: str, order: _Order, order_id: str) -> str:
    """What an HTTP endpoint does: open the request's scope and send one command."""
    async with correlation_scope(correlation_id, requested_by=order.user):
        result: str = await shop.bus.send(
            PlaceOrder(
                order_id=order_id,
                customer_id=order.customer_id,
                sku=order.sku,
                quantity=order.quantity,
                unit_price_cents=order.unit_price_cents,
                notify_by=order.notify_by,
            )
        )
        return result


async def run_demo(store_url: str) -> DemoResult:
    """Open the store at ``store_url`` (creating it if needed), run the demo on it with
    :func:`run_demo_on`, and close it."""
    store = await open_store(store_url)
    try:
        return await run_demo_on(store)
    finally:
        await store.close()


async def run_demo_on(store: MessageStore) -> DemoResult:
    """Run the two concurrent requests, record them in ``store``, read them back.

    A request that fails does not stop the demo: its exception is kept, unchanged, in
    :attr:`DemoRequest.error`.  Errors of the store itself (a record cannot be
    written) and cancellation do propagate.  The store stays open.
    """
    started = time.perf_counter()
    correlation_ids = [f"req-{uuid4().hex[:12]}" for _ in _ORDERS]
    order_ids = [f"ord-{uuid4().hex[:8]}" for _ in _ORDERS]
    shop = build_shop()
    recorder = MessageRecorder(store).install(shop.bus)
    try:
        outcomes = await asyncio.gather(
            *(
                _handle_request(shop, cid, order, oid)
                for cid, order, oid in zip(correlation_ids, _ORDERS, order_ids, strict=True)
            ),
            return_exceptions=True,
        )
        await recorder.flush()
    finally:
        await recorder.close()
    requests = []
    for cid, order, oid, outcome in zip(correlation_ids, _ORDERS, order_ids, outcomes, strict=True):
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome  # cancellation, KeyboardInterrupt: not a request's failure
        requests.append(
            DemoRequest(
                correlation_id=cid,
                requested_by=order.user,
                summary=order.summary,
                order_id=oid,
                error=outcome if isinstance(outcome, Exception) else None,
                trees=await store.build_causation_tree(cid),
            )
        )
    return DemoResult(store.url, tuple(requests), time.perf_counter() - started)
