"""Dead letters an operator acts on: found by id or message id, replayed with their
ids, and the replay recorded in the message's chain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from worker_testing import CODEC, OrderPlaced, ReserveStock, StockService

from python_cqrs_core import Mediator
from python_cqrs_core.apps.worker import (
    REPLAY_SERVICE,
    AmbiguousDeadLetterError,
    DeadLetterReplayed,
    all_dead_letters,
    find_dead_letter,
    identity_of,
    replay_dead_letter,
)
from python_cqrs_core.store import MemoryStore, MessageRecorder
from python_cqrs_core.transports import Backoff, Consumer, DeadLetter

DESTINATION = "orders.events"


async def dead_lettered(transport, store, groups=("stock",)):
    """Order 7 (recorded by the producer, ``shop``) dead-lettered by every group of
    ``groups``, plus a message that does not decode; returns the order event."""
    shop = Mediator()
    MessageRecorder(store, service="shop").install(shop)
    event = OrderPlaced(order_id=7, correlation_id="checkout-7", requested_by="ada")
    await shop.publish(event)
    for group in groups:
        await transport.ensure_group(DESTINATION, group)
    headers, body = CODEC.encode(event)
    await transport.publish(DESTINATION, headers, body)
    await transport.publish(DESTINATION, {"cqrs-message-id": "x\x1b[2J"}, b"\xff not json")
    for group in groups:
        consumer = Consumer(
            StockService(poisoned=frozenset({7})).bus, transport, CODEC, DESTINATION, group,
            max_attempts=1, backoff=Backoff(initial=0.01), wait=0.05,
        )  # fmt: skip
        await consumer.process_batch()
    return event


async def split(transport):
    """The dead letters of ``DESTINATION``: (the order's, the undecodable message's)."""
    letters = await all_dead_letters(transport, DESTINATION)
    [order] = [letter for letter in letters if identity_of(letter).message_id is not None]
    [junk] = [letter for letter in letters if letter is not order]
    return order, junk


async def test_a_dead_letter_is_found_by_its_id_or_its_messages_id(make_transport):
    transport = make_transport()
    event = await dead_lettered(transport, MemoryStore())
    order, junk = await split(transport)

    assert await find_dead_letter(transport, DESTINATION, order.dead_letter_id) == order
    assert await find_dead_letter(transport, DESTINATION, junk.dead_letter_id) == junk
    for ref in (str(event.request_id), event.request_id.hex[:8], str(event.request_id)[:13]):
        assert await find_dead_letter(transport, DESTINATION, ref) == order
    for ref in ("ffffffff", "nope", "1-2-3"):
        with pytest.raises(LookupError, match="has no dead letter"):
            await find_dead_letter(transport, DESTINATION, ref)


async def test_a_message_dead_lettered_by_two_groups_is_named_by_its_dead_letter_id(
    make_transport,
):
    transport = make_transport()
    event = await dead_lettered(transport, MemoryStore(), groups=("stock", "billing"))
    with pytest.raises(AmbiguousDeadLetterError) as raised:
        await find_dead_letter(transport, DESTINATION, event.request_id.hex[:8])
    assert {letter.group for letter in raised.value.candidates} == {"stock", "billing"}
    stock = await all_dead_letters(transport, DESTINATION, group="stock")
    assert [letter.group for letter in stock] == ["stock", "stock"]
    assert len(await all_dead_letters(transport, DESTINATION, limit=3)) == 3


async def test_identity_reads_only_valid_ids_from_the_headers():
    letter = DeadLetter(
        "1", DESTINATION, "stock",
        {"cqrs-message-id": "x\x1b[2J", "cqrs-correlation-id": "checkout-7",
         "cqrs-message-type": "a type", "cqrs-requested-by": "Zo%C3%AB", "cqrs-message-kind": "x"},
        b"", "undecodable", 1, datetime.now(UTC),
    )  # fmt: skip
    found = identity_of(letter)
    assert (found.message_id, found.message_type, found.kind) == (None, None, None)
    assert (found.correlation_id, found.requested_by) == ("checkout-7", "Zoë")


async def test_a_replay_keeps_the_ids_and_is_recorded_under_the_message(make_transport):
    transport = make_transport()
    store = MemoryStore()
    event = await dead_lettered(transport, store)
    letter = await find_dead_letter(transport, DESTINATION, event.request_id.hex[:8])

    replay = await replay_dead_letter(transport, letter, store=store, requested_by="operator:bob")

    assert await all_dead_letters(transport, DESTINATION) != []  # the junk one is still there
    assert letter not in await all_dead_letters(transport, DESTINATION)
    recorded = replay.recorded
    assert isinstance(recorded, DeadLetterReplayed)
    assert (recorded.destination, recorded.group) == (DESTINATION, "stock")
    assert recorded.replayed_message_id == str(event.request_id)
    assert recorded.replayed_as == replay.replayed_as
    assert recorded.reason.startswith("failed once; last error: RuntimeError: order 7")
    [tree] = await store.build_causation_tree("checkout-7")
    walked = [(depth, node.record) for depth, node in tree.walk()]
    assert [(depth, r.message_type, r.service) for depth, r in walked] == [
        (0, "tests.worker.OrderPlaced", "shop"),
        (1, "python_cqrs_core.DeadLetterReplayed", REPLAY_SERVICE),
    ]
    record = walked[1][1]
    assert record.causation_id == str(event.request_id)
    assert record.requested_by == "operator:bob"
    assert record.payload["dead_letter_id"] == letter.dead_letter_id
    # the group's latest word on the message is now the replay, not the dead letter
    [delivery] = await store.deliveries_of([event.request_id])
    assert (delivery.outcome, delivery.group, delivery.service) == ("replayed", "stock", "cqrs-cli")
    assert (delivery.requested_by, delivery.delivery_id) == ("operator:bob", replay.replayed_as)
    assert delivery.correlation_id == "checkout-7"
    assert delivery.error_message == letter.reason

    # the group gets the very message again, and this time handles it
    service = StockService()
    consumer = Consumer(service.bus, transport, CODEC, DESTINATION, "stock", wait=0.05)
    for _ in range(20):
        if await consumer.process_batch():
            break
    [command] = service.commands
    assert isinstance(command, ReserveStock)
    assert command.correlation_id == "checkout-7"
    assert command.causation_id == event.request_id  # the same message id as before
    assert command.requested_by == "ada"


async def test_a_replay_without_a_store_records_nothing_and_a_second_replay_finds_nothing(
    make_transport,
):
    transport = make_transport()
    store = MemoryStore()
    await dead_lettered(transport, store)
    order, _ = await split(transport)
    replay = await replay_dead_letter(transport, order)
    assert replay.recorded is None
    with pytest.raises(LookupError):
        await replay_dead_letter(transport, order, store=store)
    assert len(await store.by_correlation("checkout-7")) == 1  # nothing recorded


async def test_replaying_an_undecodable_message_records_a_chain_of_its_own(make_transport):
    transport = make_transport()
    store = MemoryStore()
    await dead_lettered(transport, store)
    _, junk = await split(transport)
    replay = await replay_dead_letter(transport, junk, store=store, requested_by="bob")
    assert replay.recorded is not None
    assert replay.recorded.causation_id is None  # its message had no valid id
    [record] = await store.by_correlation(str(replay.recorded.request_id))
    assert record.message_type == "python_cqrs_core.DeadLetterReplayed"
    assert record.payload["replayed_message_id"] is None
    assert await store.deliveries_by_correlation(str(replay.recorded.request_id)) == []
