"""The worker's metrics, as Prometheus scrapes them."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest
from worker_testing import CODEC, OrderPlaced, StockService, eventually

from python_cqrs_core.apps.worker import Subscription, Worker
from python_cqrs_core.apps.worker.metrics import WorkerCollector, serve_metrics
from python_cqrs_core.outbox import OutboxRelay, SQLiteOutbox
from python_cqrs_core.store import open_store
from python_cqrs_core.transports import Backoff, MemoryInbox, MemoryTransport

LABELS = 'destination="orders.events",group="stock",worker="stock"'


async def handled_worker(tmp_path) -> tuple[Worker, list]:
    """A worker that will handle orders 1-3 (order 2 delivered twice: a duplicate) and
    dead-letter order 4, with an empty outbox."""
    transport = MemoryTransport()
    await transport.ensure_group("orders.events", "stock")
    for order_id in (1, 2, 3, 4):
        headers, body = CODEC.encode(OrderPlaced(order_id=order_id))
        for _ in range(2 if order_id == 2 else 1):
            await transport.publish("orders.events", headers, body)
    store = await open_store(f"sqlite:///{tmp_path / 'cqrs.db'}")
    outbox = await SQLiteOutbox.open(store)

    worker = Worker(
        name="stock",
        bus=StockService(poisoned=frozenset({4})).bus,
        transport=transport,
        codec=CODEC,
        consumers=[
            Subscription(
                "orders.events",
                "stock",
                inbox=MemoryInbox(),
                max_attempts=2,
                backoff=Backoff(initial=0.01),
                wait=0.05,
            )
        ],
        relay=OutboxRelay(outbox, transport, poll_interval=0.05),
        status_interval=0.05,
    )
    return worker, [outbox.close, store.close]


async def test_counters_lag_and_backlog_are_exposed_per_destination_and_group(tmp_path):
    worker, closing = await handled_worker(tmp_path)
    await worker.start()
    consumer = worker.consumers[0]
    await eventually(lambda: consumer.acked == 4 and consumer.dead_lettered == 1)
    await worker.status()
    registry = CollectorRegistry()
    registry.register(WorkerCollector(worker))
    text = generate_latest(registry).decode()
    assert await worker.stop() is True
    for close in closing:
        await close()

    lines = set(text.splitlines())
    assert f"cqrs_consumer_acked_total{{{LABELS}}} 4.0" in lines
    assert f"cqrs_consumer_duplicates_total{{{LABELS}}} 1.0" in lines
    assert f"cqrs_consumer_retries_total{{{LABELS}}} 1.0" in lines
    assert f"cqrs_consumer_dead_letters_total{{{LABELS}}} 1.0" in lines
    assert f"cqrs_consumer_lag{{{LABELS}}} 0.0" in lines
    assert 'cqrs_outbox_backlog{worker="stock"} 0.0' in lines
    assert 'cqrs_outbox_published_total{worker="stock"} 0.0' in lines
    assert 'cqrs_outbox_failed_total{worker="stock"} 0.0' in lines
    assert "# TYPE cqrs_consumer_lag gauge" in lines
    assert "# TYPE cqrs_consumer_acked_total counter" in lines


async def test_serve_metrics_answers_over_http(tmp_path):
    worker, closing = await handled_worker(tmp_path)
    server = serve_metrics(worker, port=0)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
    finally:
        server.close()
    for close in closing:
        await close()
    text = body.decode()
    assert f"cqrs_consumer_acked_total{{{LABELS}}} 0.0" in text
    assert "cqrs_consumer_lag{" not in text  # not measured yet: absent, not a made-up 0
