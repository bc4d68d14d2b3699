"""One tree across services: two services recording into one PostgreSQL store, each on
its own connections, the chain crossing from one to the other through a broker;
``cqrs trace`` shows one tree naming each node's service, in every format."""

from __future__ import annotations

import json

from cli_testing import cqrs, postgres_url, run

from python_cqrs_core import BaseCommand, BaseEvent, Mediator, MessageRegistry
from python_cqrs_core.codec import EnvelopeCodec
from python_cqrs_core.store import MessageRecorder, open_store
from python_cqrs_core.transports import Consumer, DirectPublisher, MemoryTransport, Routes


class PlaceOrder(BaseCommand):
    __message_type__ = "tests.cli.services.PlaceOrder"
    order_id: int


class OrderPlaced(BaseEvent):
    __message_type__ = "tests.cli.services.OrderPlaced"
    order_id: int


class ReserveInventory(BaseCommand):
    __message_type__ = "tests.cli.services.ReserveInventory"
    order_id: int


class InventoryReserved(BaseEvent):
    __message_type__ = "tests.cli.services.InventoryReserved"
    order_id: int


CODEC = EnvelopeCodec(MessageRegistry([OrderPlaced]))


async def record_two_services(url: str) -> None:
    """orders: PlaceOrder -> OrderPlaced (published); inventory consumes it ->
    ReserveInventory -> InventoryReserved.  Each service has a store of its own on
    the shared database, as two processes would."""
    broker = MemoryTransport()
    await broker.ensure_group("orders.events", "inventory")
    async with await open_store(url) as orders_store, await open_store(url) as inventory_store:
        orders = Mediator()
        orders_recorder = MessageRecorder(orders_store, service="orders").install(orders)
        DirectPublisher(broker, CODEC, Routes({OrderPlaced: "orders.events"})).install(orders)

        @orders.handler(PlaceOrder)
        async def place(command: PlaceOrder) -> None:
            await orders.publish(OrderPlaced(order_id=command.order_id))

        inventory = Mediator()
        inventory_recorder = MessageRecorder(inventory_store, service="inventory").install(
            inventory
        )

        @inventory.handler(OrderPlaced)
        async def on_order_placed(event: OrderPlaced) -> None:
            await inventory.send(ReserveInventory(order_id=event.order_id))

        @inventory.handler(ReserveInventory)
        async def reserve(command: ReserveInventory) -> None:
            await inventory.publish(InventoryReserved(order_id=command.order_id))

        await orders.send(PlaceOrder(order_id=7, correlation_id="checkout-7", requested_by="ada"))
        # OrderPlaced was recorded by orders; inventory records its delivery, and what
        # its handlers dispatch
        consumer = Consumer(inventory, broker, CODEC, "orders.events", "inventory", wait=0)
        assert await consumer.process_batch() == 1
        await orders_recorder.close()
        await inventory_recorder.close()


def test_one_tree_across_two_services_names_the_service_of_each_node(postgres_database):
    url = postgres_url(postgres_database)
    run(record_two_services(url))

    tree = cqrs("trace", "checkout-7", "--store", url)
    assert tree.exit_code == 0, tree.output
    heading, *all_lines = tree.stdout.splitlines()
    assert heading.startswith("correlation checkout-7  4 messages, 0 failed, 1 root, by ada")
    # under OrderPlaced, its delivery to the inventory group (a line of its own)
    [delivery] = [line for line in all_lines if "⇢" in line]
    assert "inventory (group inventory, memory orders.events) attempt 1: handled" in delivery
    lines = [line for line in all_lines if "⇢" not in line]
    # (depth of the outcome mark, type, service) of each line of the tree
    shape = [
        (line.index("✓"), line.split("✓ ")[1].split()[1], line.split("[")[1].split("]")[0])
        for line in lines
    ]
    assert shape == [
        (0, "PlaceOrder", "orders"),
        (4, "OrderPlaced", "orders"),
        (8, "ReserveInventory", "inventory"),
        (12, "InventoryReserved", "inventory"),
    ]

    [root] = json.loads(cqrs("trace", "checkout-7", "--store", url, "--json").stdout)
    services, node = [], root
    while True:
        delivered = [(d["service"], d["group"], d["outcome"]) for d in node["deliveries"]]
        services.append((node["message_type"].rpartition(".")[2], node["service"], delivered))
        if not node["children"]:
            break
        [node] = node["children"]
    assert services == [
        ("PlaceOrder", "orders", []),
        ("OrderPlaced", "orders", [("inventory", "inventory", "succeeded")]),
        ("ReserveInventory", "inventory", []),
        ("InventoryReserved", "inventory", []),
    ]

    flat = cqrs("trace", "checkout-7", "--store", url, "--flat")
    assert flat.exit_code == 0, flat.output
    header, _, *rows = flat.stdout.splitlines()[1:]
    assert header.split()[5:7] == ["cause", "service"]
    assert [row.split()[6] for row in rows] == ["orders", "orders", "inventory", "inventory"]
