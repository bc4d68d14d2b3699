"""One HTTP request traced end to end: header -> command -> event -> logs -> spans -> metrics.

Run it (from the repository root, with the ``dev`` extras installed)::

    uvicorn examples.fastapi_app:app --host 127.0.0.1

then::

    curl -si -X POST localhost:8000/orders -H 'X-Correlation-ID: req-abc-123' \\
         -H 'X-User: jane@example.com' -H 'content-type: application/json' \\
         -d '{"sku": "BOOK-1", "quantity": 2}'
    curl -s localhost:8000/trace/req-abc-123      # the causation tree, as JSON
    curl -s localhost:8000/metrics | grep cqrs_   # counts, durations, queue delay

What is wired, in the order a request meets it:

- :class:`~python_cqrs_core.integrations.asgi.CorrelationIdMiddleware`: ``X-Correlation-ID`` (or
  ``X-Request-ID``, or a fresh UUID) becomes the correlation id of every message the
  request dispatches, and comes back in the response; ``X-User`` is ``requested_by``;
- the mediator's middleware, outermost first: tracing (a span per message and per handler,
  :mod:`python_cqrs_core.integrations.otel`), Prometheus metrics, Sentry (only when
  ``SENTRY_DSN`` is set), the audit trail, and the message recorder (SQLite), which
  serves ``GET /trace/{correlation_id}``;
- correlated logs (:func:`python_cqrs_core.integrations.logging.configure_logging`): every line
  carries ``request_id``, ``correlation_id``, ``causation_id`` and the trace ids.

Environment: ``CQRS_STORE_URL`` (default ``sqlite:///cqrs-example.db``),
``SENTRY_DSN`` (off when unset), ``EXAMPLE_CONSOLE_SPANS=1`` to print finished spans
(needs ``opentelemetry-sdk``; otherwise spans go wherever the global OpenTelemetry
tracer provider sends them), ``EXAMPLE_JSON_LOGS=0`` for text logs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, Any

from fastapi import FastAPI, HTTPException, Request, Response
from opentelemetry import trace
from opentelemetry.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field

from python_cqrs_core import BaseCommand, BaseEvent, BaseQuery, Mediator, current_correlation_id
from python_cqrs_core.integrations.asgi import CorrelationIdMiddleware
from python_cqrs_core.integrations.audit import AuditMiddleware
from python_cqrs_core.integrations.logging import configure_logging
from python_cqrs_core.integrations.otel import instrument
from python_cqrs_core.integrations.prometheus import PrometheusMiddleware
from python_cqrs_core.integrations.sentry import SentryMiddleware
from python_cqrs_core.store import MessageRecorder, open_store

logger = logging.getLogger("shop")

# -- the domain: one command, one event, one query ---------------------------------------


# Each class names its stable type: what the store records, metrics and logs show, and
# what other services use to decode it; it does not change when the module moves.
class PlaceOrder(BaseCommand[int]):
    __message_type__ = "shop.PlaceOrder"
    sku: str
    quantity: int


class OrderPlaced(BaseEvent):
    __message_type__ = "shop.OrderPlaced"
    order_id: int
    sku: str
    quantity: int


class GetOrder(BaseQuery[dict[str, Any] | None]):
    __message_type__ = "shop.GetOrder"
    order_id: int


class Orders:
    """An in-memory order book, and the handlers that use it."""

    def __init__(self, bus: Mediator) -> None:
        self.bus = bus
        self.orders: dict[int, dict[str, Any]] = {}
        self.reserved: dict[str, int] = {}

    async def place(self, command: PlaceOrder) -> int:
        order_id = len(self.orders) + 1
        self.orders[order_id] = {"id": order_id, "sku": command.sku, "qty": command.quantity}
        logger.info("order %s placed", order_id)  # the filter adds every id
        await self.bus.publish(
            OrderPlaced(order_id=order_id, sku=command.sku, quantity=command.quantity)
        )
        return order_id

    async def reserve_stock(self, event: OrderPlaced) -> None:
        self.reserved[event.sku] = self.reserved.get(event.sku, 0) + event.quantity
        logger.info("reserved %d x %s", event.quantity, event.sku)

    async def get(self, query: GetOrder) -> dict[str, Any] | None:
        return self.orders.get(query.order_id)


# -- the application ---------------------------------------------------------------------


class PlaceOrderBody(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=1000)


def _requested_by(scope: Any) -> str | None:
    """``requested_by`` from the ``X-User`` header (a real app: the authenticated user)."""
    for name, value in scope.get("headers", ()):
        if name == b"x-user":
            return str(value.decode("latin-1"))
    return None


def _default_tracer_provider() -> TracerProvider | None:
    if os.environ.get("EXAMPLE_CONSOLE_SPANS") != "1":
        return None  # the global provider: a no-op until the application configures one
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = SDKTracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    return provider


def create_app(
    *,
    tracer_provider: TracerProvider | None = None,
    registry: CollectorRegistry | None = None,
    store_url: str | None = None,
    json_logs: bool | None = None,
    log_stream: IO[str] | None = None,
) -> FastAPI:
    """Build the example application; the arguments exist for tests."""
    registry = CollectorRegistry() if registry is None else registry
    tracer_provider = tracer_provider or _default_tracer_provider()
    store_url = store_url or os.environ.get("CQRS_STORE_URL") or "sqlite:///cqrs-example.db"
    if json_logs is None:
        json_logs = os.environ.get("EXAMPLE_JSON_LOGS", "1") != "0"
    log_handler = configure_logging(json=json_logs, stream=log_stream)

    bus = Mediator()
    instrument(bus, tracer_provider)  # first: everything below runs inside the span
    bus.add_middleware(PrometheusMiddleware(registry))
    if os.environ.get("SENTRY_DSN"):
        import sentry_sdk

        sentry_sdk.init(dsn=os.environ["SENTRY_DSN"])
        bus.add_middleware(SentryMiddleware())
    bus.add_middleware(
        AuditMiddleware(
            {PlaceOrder: "PLACE_ORDER"},
            resource_type="order",
            resource_id=lambda message, order_id: order_id,
        )
    )
    orders = Orders(bus)
    bus.register(PlaceOrder, orders.place)
    bus.subscribe(OrderPlaced, orders.reserve_stock)
    bus.register(GetOrder, orders.get)
    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("shop.http")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store(store_url)
        recorder = MessageRecorder(store).install(bus)  # last: after the tracing span
        app.state.store = store
        try:
            yield
        finally:
            await recorder.close()
            await store.close()
            logging.getLogger().removeHandler(log_handler)

    app = FastAPI(title="python-cqrs-core example", lifespan=lifespan)
    app.add_middleware(CorrelationIdMiddleware, requested_by=_requested_by)

    @app.post("/orders", status_code=201)
    async def place_order(body: PlaceOrderBody) -> dict[str, Any]:
        with tracer.start_as_current_span("POST /orders", kind=trace.SpanKind.SERVER):
            order_id = await bus.send(PlaceOrder(sku=body.sku, quantity=body.quantity))
        return {"order_id": order_id, "correlation_id": str(current_correlation_id())}

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, Any]:
        order: dict[str, Any] | None = await bus.query(GetOrder(order_id=order_id))
        if order is None:
            raise HTTPException(status_code=404, detail="no such order")
        return order

    @app.get("/trace/{correlation_id}")
    async def causation_tree(correlation_id: str, request: Request) -> list[dict[str, Any]]:
        try:
            trees = await request.app.state.store.build_causation_tree(correlation_id)
        except ValueError as exc:  # not a valid correlation id
            raise HTTPException(status_code=422, detail="invalid correlation id") from exc
        if not trees:
            raise HTTPException(status_code=404, detail="no message with this correlation id")
        return [tree.to_dict() for tree in trees]

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


app = create_app()
