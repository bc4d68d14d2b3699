"""PrometheusMiddleware: counts, durations and queue delay per kind, type and outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from python_cqrs_core import BaseCommand, BaseEvent, BaseQuery, Mediator
from python_cqrs_core.integrations.prometheus import PrometheusMiddleware


class PlaceOrder(BaseCommand):
    sku: str


class GetOrder(BaseQuery):
    order_id: int


class OrderPlaced(BaseEvent):
    sku: str


class Boom(BaseCommand):
    pass


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metered(registry: CollectorRegistry) -> Mediator:
    bus = Mediator()
    bus.add_middleware(PrometheusMiddleware(registry))

    async def place(command: PlaceOrder) -> int:
        await bus.publish(OrderPlaced(sku=command.sku))
        return 1

    async def get(query: GetOrder) -> dict[str, int]:
        return {"id": query.order_id}

    async def on_placed(event: OrderPlaced) -> None:
        return None

    async def boom(command: Boom) -> None:
        raise RuntimeError("database down")

    bus.register(PlaceOrder, place)
    bus.register(GetOrder, get)
    bus.subscribe(OrderPlaced, on_placed)
    bus.register(Boom, boom)
    return bus


def count(registry: CollectorRegistry, kind: str, type_: str, outcome: str) -> float | None:
    """The counter of a message class of this module, labelled with its stable name."""
    labels = {"kind": kind, "type": f"{__name__}.{type_}", "outcome": outcome}
    return registry.get_sample_value("cqrs_messages_total", labels)


async def test_counts_each_message_by_kind_type_and_outcome(
    metered: Mediator, registry: CollectorRegistry
) -> None:
    await metered.send(PlaceOrder(sku="a"))
    await metered.send(PlaceOrder(sku="b"))
    await metered.query(GetOrder(order_id=3))

    assert count(registry, "command", "PlaceOrder", "success") == 2
    assert count(registry, "event", "OrderPlaced", "success") == 2
    assert count(registry, "query", "GetOrder", "success") == 1
    assert count(registry, "command", "PlaceOrder", "error") is None


async def test_a_failing_handler_counts_as_error_and_its_exception_propagates(
    metered: Mediator, registry: CollectorRegistry
) -> None:
    with pytest.raises(RuntimeError, match="database down"):
        await metered.send(Boom())

    assert count(registry, "command", "Boom", "error") == 1
    assert count(registry, "command", "Boom", "success") is None
    labels = {"kind": "command", "type": f"{__name__}.Boom", "outcome": "error"}
    assert registry.get_sample_value("cqrs_message_duration_seconds_count", labels) == 1


async def test_duration_is_measured_from_dispatch_not_from_requested_at(
    metered: Mediator, registry: CollectorRegistry
) -> None:
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    await metered.send(PlaceOrder(sku="old", requested_at=an_hour_ago))

    labels = {"kind": "command", "type": f"{__name__}.PlaceOrder", "outcome": "success"}
    duration = registry.get_sample_value("cqrs_message_duration_seconds_sum", labels)
    assert duration is not None and 0 < duration < 5
    delay = registry.get_sample_value(
        "cqrs_message_queue_delay_seconds_sum",
        {"kind": "command", "type": f"{__name__}.PlaceOrder"},
    )
    assert delay is not None and 3599 < delay < 3700


async def test_a_message_from_the_future_has_zero_queue_delay(
    metered: Mediator, registry: CollectorRegistry
) -> None:
    clock_ahead = datetime.now(UTC) + timedelta(minutes=5)
    await metered.query(GetOrder(order_id=1, requested_at=clock_ahead))

    labels = {"kind": "query", "type": f"{__name__}.GetOrder"}
    assert registry.get_sample_value("cqrs_message_queue_delay_seconds_sum", labels) == 0
    assert registry.get_sample_value("cqrs_message_queue_delay_seconds_count", labels) == 1


async def test_ids_and_requested_by_are_not_labels_by_default(
    metered: Mediator, registry: CollectorRegistry
) -> None:
    command = PlaceOrder(sku="a", requested_by="jane@example.com", correlation_id="req-1")
    await metered.send(command)

    exposition = generate_latest(registry).decode()
    assert "jane@example.com" not in exposition
    assert "req-1" not in exposition
    assert str(command.request_id) not in exposition
    assert "requested_by" not in exposition


async def test_requested_by_label_is_opt_in(registry: CollectorRegistry) -> None:
    bus = Mediator()
    bus.add_middleware(PrometheusMiddleware(registry, requested_by_label=True))

    async def get(query: GetOrder) -> int:
        return query.order_id

    bus.register(GetOrder, get)
    await bus.query(GetOrder(order_id=1, requested_by="billing-service"))
    await bus.query(GetOrder(order_id=2))

    def by(who: str) -> float | None:
        labels = {
            "kind": "query",
            "type": f"{__name__}.GetOrder",
            "outcome": "success",
            "requested_by": who,
        }
        return registry.get_sample_value("cqrs_messages_total", labels)

    assert by("billing-service") == 1
    assert by("anonymous") == 1


async def test_creating_the_middleware_twice_on_one_registry_shares_the_metrics(
    registry: CollectorRegistry,
) -> None:
    first, second = PrometheusMiddleware(registry), PrometheusMiddleware(registry)
    bus_a, bus_b = Mediator(middleware=[first]), Mediator(middleware=[second])

    async def get(query: GetOrder) -> int:
        return query.order_id

    bus_a.register(GetOrder, get)
    bus_b.register(GetOrder, get)
    await bus_a.query(GetOrder(order_id=1))
    await bus_b.query(GetOrder(order_id=2))

    assert count(registry, "query", "GetOrder", "success") == 2


def test_the_same_names_with_other_labels_on_one_registry_is_a_clear_error(
    registry: CollectorRegistry,
) -> None:
    PrometheusMiddleware(registry)
    with pytest.raises(ValueError, match="requested_by_label"):
        PrometheusMiddleware(registry, requested_by_label=True)


async def test_namespace_prefixes_every_metric(registry: CollectorRegistry) -> None:
    bus = Mediator(middleware=[PrometheusMiddleware(registry, namespace="shop")])

    async def get(query: GetOrder) -> int:
        return query.order_id

    bus.register(GetOrder, get)
    await bus.query(GetOrder(order_id=1))

    labels = {"kind": "query", "type": f"{__name__}.GetOrder", "outcome": "success"}
    assert registry.get_sample_value("shop_cqrs_messages_total", labels) == 1


async def test_custom_buckets_are_used_for_the_duration(registry: CollectorRegistry) -> None:
    bus = Mediator(middleware=[PrometheusMiddleware(registry, buckets=(0.5, 60.0))])

    async def get(query: GetOrder) -> int:
        return query.order_id

    bus.register(GetOrder, get)
    await bus.query(GetOrder(order_id=1))

    labels = {"kind": "query", "type": f"{__name__}.GetOrder", "outcome": "success", "le": "0.5"}
    assert registry.get_sample_value("cqrs_message_duration_seconds_bucket", labels) == 1
    labels["le"] = "0.1"
    assert registry.get_sample_value("cqrs_message_duration_seconds_bucket", labels) is None


def test_the_default_registry_is_prometheus_global_registry() -> None:
    from prometheus_client import REGISTRY

    PrometheusMiddleware()
    PrometheusMiddleware()  # a second time on the global registry does not raise

    names = {metric.name for metric in REGISTRY.collect()}
    assert {"cqrs_messages", "cqrs_message_duration_seconds"} <= names


def test_the_docstring_examples_run() -> None:
    import doctest

    from python_cqrs_core.integrations import prometheus as module

    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
