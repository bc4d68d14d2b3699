"""The worker: consumers and relay started together, stopped gracefully (in-flight
deliveries finished and acknowledged), its status and its correlated logs."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from worker_testing import CODEC, OrderPlaced, ReserveStock, StockService, eventually

from python_cqrs_core import Mediator
from python_cqrs_core.apps.worker import Subscription, Worker
from python_cqrs_core.names import WORKER_LOGGER
from python_cqrs_core.outbox import OutboxRelay, OutboxWriter, SQLiteOutbox
from python_cqrs_core.store import MessageRecorder, open_store
from python_cqrs_core.transports import (
    Backoff,
    Consumer,
    MemoryInbox,
    MemoryTransport,
    Routes,
    TransportError,
)

DESTINATION, GROUP = "orders.events", "stock"


async def publish_orders(transport: MemoryTransport | object, ids: range) -> None:
    for order_id in ids:
        headers, body = CODEC.encode(OrderPlaced(order_id=order_id, correlation_id=f"c-{order_id}"))
        await transport.publish(DESTINATION, headers, body)  # type: ignore[attr-defined]


def stock_worker(transport: object, service: StockService, **subscription: object) -> Worker:
    return Worker(
        name="stock",
        bus=service.bus,
        transport=transport,  # type: ignore[arg-type]
        codec=CODEC,
        consumers=[Subscription(DESTINATION, GROUP, **subscription)],  # type: ignore[arg-type]
        status_interval=0.05,
    )


async def test_a_stop_finishes_and_acknowledges_the_deliveries_in_flight(make_transport):
    transport = make_transport()
    await transport.ensure_group(DESTINATION, GROUP)
    await publish_orders(transport, range(40))
    service = StockService(delay=0.2)
    worker = stock_worker(transport, service, inbox=MemoryInbox(), batch_size=8, wait=0.05)

    await worker.start()
    await asyncio.wait_for(service.started.wait(), 10)  # a batch is in the handlers
    assert sum(service.reserved.values()) < 8
    started = time.monotonic()
    assert await worker.stop(grace=10) is True
    assert time.monotonic() - started < 5

    handled = sum(service.reserved.values())
    assert handled >= 8  # the batch in flight was finished...
    assert set(service.reserved.values()) == {1}
    # ...and acknowledged: what is left for the group is exactly what was not handled
    assert await transport.lag(DESTINATION, GROUP) == 40 - handled

    again = stock_worker(transport, service, inbox=MemoryInbox(), batch_size=8, wait=0.05)
    await again.start()
    await eventually(lambda: sum(service.reserved.values()) == 40, what="the rest handled")
    assert await again.stop(grace=10) is True
    assert sorted(service.reserved) == list(range(40))
    assert set(service.reserved.values()) == {1}  # nothing lost, nothing handled twice


async def test_work_still_running_when_the_grace_ends_is_cancelled_and_delivered_again():
    transport = MemoryTransport(claim_idle=0.3)
    await transport.ensure_group(DESTINATION, GROUP)
    await publish_orders(transport, range(1))
    slow = StockService(delay=30)
    worker = stock_worker(transport, slow, wait=0.05)
    await worker.start()
    await asyncio.wait_for(slow.started.wait(), 10)

    started = time.monotonic()
    assert await worker.stop(grace=0.2) is False
    assert time.monotonic() - started < 2
    assert await transport.lag(DESTINATION, GROUP) == 1  # not acknowledged

    quick = StockService()
    again = stock_worker(transport, quick, wait=0.05)
    await again.start()
    await eventually(lambda: quick.reserved == {0: 1}, what="the redelivery handled")
    assert await again.stop() is True


async def test_run_returns_true_after_a_requested_stop_and_runs_the_cleanup_in_order():
    transport = MemoryTransport()
    closed: list[str] = []

    async def close(what: str) -> None:
        closed.append(what)

    worker = Worker(
        name="stock",
        bus=StockService().bus,
        transport=transport,
        codec=CODEC,
        consumers=[Subscription(DESTINATION, GROUP, wait=0.05, concurrency=2)],
        cleanup=[lambda: close("transport"), lambda: close("store")],
    )
    running = asyncio.create_task(worker.run(handle_signals=False))
    await eventually(lambda: all(c.transport is transport for c in worker.consumers))
    await asyncio.sleep(0.1)
    worker.request_stop()
    assert await asyncio.wait_for(running, 5) is True
    assert closed == ["transport", "store"]
    assert len({consumer.name for consumer in worker.consumers}) == 2
    assert await worker.stop() is True  # again: the same answer, nothing done twice
    assert closed == ["transport", "store"]


async def test_the_relay_publishes_the_outbox_while_the_worker_runs_and_stops_with_it(
    tmp_path: Path,
):
    store = await open_store(f"sqlite:///{tmp_path / 'cqrs.db'}")
    bus = Mediator()
    recorder = MessageRecorder(store, service="shop").install(bus)
    outbox = await SQLiteOutbox.open(recorder)
    OutboxWriter(Routes({OrderPlaced: DESTINATION}), CODEC, chains=outbox).install(bus)
    transport = MemoryTransport()
    await transport.ensure_group(DESTINATION, GROUP)
    for order_id in range(3):
        await bus.publish(OrderPlaced(order_id=order_id))
    assert await outbox.backlog() == 3

    service = StockService()
    worker = Worker(
        name="stock",
        bus=service.bus,
        transport=transport,
        codec=CODEC,
        consumers=[Subscription(DESTINATION, GROUP, wait=0.05)],
        relay=OutboxRelay(outbox, transport, poll_interval=0.05),
        status_interval=0.05,
    )
    await worker.start()
    await eventually(lambda: sum(service.reserved.values()) == 3, what="the events consumed")
    await eventually(
        lambda: (
            (s := worker.last_status) is not None
            and s.relay is not None
            and s.relay.backlog == 0
            and s.consumers[0].lag == 0
        ),
        what="a status with the backlog and lag measured",
    )
    status = await worker.status()
    assert await worker.stop() is True
    assert status.relay is not None and status.relay.published == 3
    assert [(c.destination, c.group, c.acked, c.lag) for c in status.consumers] == [
        (DESTINATION, GROUP, 3, 0)
    ]
    assert "outbox: backlog 0, 3 published" in status.summary()
    assert status.to_dict()["relay"]["published"] == 3
    await recorder.close()
    await outbox.close()
    await store.close()


async def test_a_consumer_loop_that_dies_stops_the_worker_and_its_run_is_not_clean():
    class Broken(MemoryTransport):
        async def receive(self, *args: object, **options: object) -> list:  # type: ignore[override]
            raise RuntimeError("a bug in a transport")

    worker = stock_worker(Broken(), StockService(), wait=0.05)
    assert await asyncio.wait_for(worker.run(handle_signals=False), 5) is False


async def test_broker_failures_are_waited_out_and_the_lag_is_unknown_meanwhile():
    class Down(MemoryTransport):
        async def lag(self, destination: str, group: str) -> int:
            raise TransportError("the broker is down")

    worker = stock_worker(Down(), StockService(), wait=0.05)
    await worker.start()
    status = await worker.status()
    assert status.consumers[0].lag is None
    assert "lag ?" in status.summary()
    assert await worker.stop() is True


async def test_each_delivery_outcome_is_logged_with_the_ids_of_its_message(caplog):
    transport = MemoryTransport()
    await transport.ensure_group(DESTINATION, GROUP)
    event = OrderPlaced(order_id=7, correlation_id="checkout-7", requested_by="ada")
    headers, body = CODEC.encode(event)
    await transport.publish(DESTINATION, headers, body)
    service = StockService(poisoned=frozenset({7}))
    worker = stock_worker(transport, service, max_attempts=2, backoff=Backoff(initial=0.01))
    caplog.set_level(logging.INFO, logger=WORKER_LOGGER)

    await worker.start()
    await eventually(lambda: worker.consumers[0].dead_lettered == 1, what="a dead letter")
    assert await worker.stop() is True

    outcomes = [
        r
        for r in caplog.records
        if r.name == WORKER_LOGGER and r.getMessage().startswith("orders.events/stock ")
    ]
    assert [(r.levelname, r.getMessage().split(" ")[1]) for r in outcomes] == [
        ("INFO", "retrying"),
        ("WARNING", "dead-lettered"),
    ]
    for record in outcomes:
        assert record.correlation_id == "checkout-7"  # type: ignore[attr-defined]
        assert record.request_id == str(event.request_id)  # type: ignore[attr-defined]
        assert record.message_type == "tests.worker.OrderPlaced"  # type: ignore[attr-defined]
    messages = [r.getMessage() for r in caplog.records if r.name == WORKER_LOGGER]
    assert messages[0].startswith("worker stock started: 1 consumer loop(s) on orders.events/stock")
    assert messages[-1].startswith("worker stock stopped cleanly: orders.events/stock")


def test_a_subscription_is_consumed_on_the_workers_bus_transport_and_codec():
    with pytest.raises(ValueError, match="give the worker transport and codec="):
        Worker(name="stock", bus=Mediator(), consumers=[Subscription(DESTINATION, GROUP)])
    built = Consumer(Mediator(), MemoryTransport(), CODEC, DESTINATION, GROUP)
    assert Worker(name="stock", consumers=[built]).consumers == (built,)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"name": "two words"}, "name: "),
        ({"name": "stock"}, "at least one consumer or an outbox relay"),
        ({"name": "stock", "status_interval": 0}, "status_interval must be a positive"),
    ],
)
def test_a_worker_refuses_settings_it_cannot_run(options, problem):
    if "status_interval" in options:
        options["consumers"] = [Consumer(Mediator(), MemoryTransport(), CODEC, "d", "g")]
    with pytest.raises(ValueError, match=problem):
        Worker(**options)


async def test_a_worker_runs_once():
    worker = stock_worker(MemoryTransport(), StockService(), wait=0.05)
    await worker.start()
    with pytest.raises(RuntimeError, match="runs once"):
        await worker.start()
    assert await worker.stop() is True


def test_reserve_stock_is_what_the_service_sends():
    # the test service's own contract, which the tests above rely on
    service = StockService()
    asyncio.run(service.bus.publish(OrderPlaced(order_id=3)))
    [command] = service.commands
    assert isinstance(command, ReserveStock) and command.order_id == 3
