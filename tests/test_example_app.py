"""examples/fastapi_app.py: one request followed from its header to logs, spans, metrics
and the stored causation tree."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_fastapi_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    spec.loader.exec_module(module)  # builds the module-level app (logging to stderr)
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    return module


class Harness:
    def __init__(self, client: httpx.AsyncClient, **parts: Any) -> None:
        self.client = client
        self.exporter: InMemorySpanExporter = parts["exporter"]
        self.registry: CollectorRegistry = parts["registry"]
        self.logs: io.StringIO = parts["logs"]

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.logs.getvalue().splitlines() if line]


@pytest.fixture
async def harness(example: ModuleType, tmp_path: Path) -> AsyncIterator[Harness]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    logs = io.StringIO()
    root_level = logging.getLogger().level
    app = example.create_app(
        tracer_provider=provider,
        registry=registry,
        store_url=f"sqlite:///{tmp_path / 'cqrs.db'}",
        json_logs=True,
        log_stream=logs,
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with app.router.lifespan_context(app):  # httpx does not run the lifespan
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Harness(client, exporter=exporter, registry=registry, logs=logs)
    provider.shutdown()
    logging.getLogger().setLevel(root_level)


async def place(harness: Harness, correlation_id: str, **headers: str) -> httpx.Response:
    return await harness.client.post(
        "/orders",
        json={"sku": "BOOK-1", "quantity": 2},
        headers={"X-Correlation-ID": correlation_id, **headers},
    )


async def test_the_response_echoes_the_correlation_id_of_the_request(harness: Harness) -> None:
    response = await place(harness, "req-abc-123")

    assert response.status_code == 201
    assert response.headers["X-Correlation-ID"] == "req-abc-123"
    assert response.json() == {"order_id": 1, "correlation_id": "req-abc-123"}


async def test_metrics_show_the_command_and_the_event(harness: Harness) -> None:
    await place(harness, "req-metrics")

    response = await harness.client.get("/metrics")

    assert response.status_code == 200
    text = response.text
    counter = 'cqrs_messages_total{{kind="{}",outcome="success",type="shop.{}"}} 1.0'
    assert counter.format("command", "PlaceOrder") in text
    assert counter.format("event", "OrderPlaced") in text
    assert "req-metrics" not in text  # ids are never labels


async def test_spans_share_one_trace_and_carry_the_correlation_id(harness: Harness) -> None:
    await place(harness, "req-spans")

    spans = {span.name: span for span in harness.exporter.get_finished_spans()}
    http, command, event = (
        spans["POST /orders"],
        spans["process PlaceOrder"],
        spans["process OrderPlaced"],
    )
    assert {s.context.trace_id for s in (http, command, event)} == {http.context.trace_id}
    assert command.parent is not None and command.parent.span_id == http.context.span_id
    handler = spans["handle Orders.place"]  # the command's handler span is in between
    assert handler.parent is not None and handler.parent.span_id == command.context.span_id
    assert event.parent is not None and event.parent.span_id == handler.context.span_id
    for span in (command, event):
        assert dict(span.attributes or {})["business.correlation_id"] == "req-spans"
    audit_events = [e for e in command.events if e.name == "audit"]
    assert [dict(e.attributes or {})["audit.action"] for e in audit_events] == ["PLACE_ORDER"]


async def test_log_lines_carry_the_ids_of_the_message_being_handled(harness: Harness) -> None:
    await place(harness, "req-logs", **{"X-User": "jane@example.com"})

    lines = {line["message"]: line for line in harness.log_lines() if "message" in line}
    placed, reserved = lines["order 1 placed"], lines["reserved 2 x BOOK-1"]
    assert placed["correlation_id"] == reserved["correlation_id"] == "req-logs"
    assert reserved["causation_id"] == placed["request_id"]  # the event was caused by it
    assert placed["requested_by"] == "jane@example.com"
    assert placed["trace_id"] == reserved["trace_id"] != ""


async def test_the_trace_endpoint_returns_the_causation_tree(harness: Harness) -> None:
    await place(harness, "req-tree")

    response = await harness.client.get("/trace/req-tree")

    assert response.status_code == 200
    [root] = response.json()
    assert root["message_type"] == "shop.PlaceOrder"  # the stable type name it declares
    assert [child["message_type"] for child in root["children"]] == ["shop.OrderPlaced"]
    assert root["children"][0]["causation_id"] == root["message_id"]


async def test_the_trace_endpoint_answers_404_for_an_unknown_correlation(
    harness: Harness,
) -> None:
    response = await harness.client.get("/trace/never-seen")

    assert response.status_code == 404


async def test_a_request_without_header_gets_a_generated_id_it_can_trace(
    harness: Harness,
) -> None:
    response = await harness.client.post("/orders", json={"sku": "PEN", "quantity": 1})
    correlation_id = response.headers["X-Correlation-ID"]

    tree = await harness.client.get(f"/trace/{correlation_id}")

    assert tree.json()[0]["correlation_id"] == correlation_id
