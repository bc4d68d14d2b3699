"""``cqrs dlq list | show | replay``, on the memory transport and on Redis Streams: dead
letters listed and shown escaped, replayed with their ids, and the replay recorded in
the message's chain, where ``cqrs trace`` shows it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_testing import cqrs

from python_cqrs_core import BaseEvent, Mediator, MessageRegistry
from python_cqrs_core.apps.cli import dlq
from python_cqrs_core.codec import EnvelopeCodec
from python_cqrs_core.store import MessageRecorder, open_store
from python_cqrs_core.transports import Backoff, Consumer, MemoryTransport, Transport
from python_cqrs_core.transports.redis import RedisTransport
from service_testing import REDIS_URL, delete_keys, new_prefix

DESTINATION = "orders.events"
ESC = "\x1b"


class OrderPlaced(BaseEvent):
    __message_type__ = "tests.cli.dlq.OrderPlaced"
    order_id: int


CODEC = EnvelopeCodec(MessageRegistry([OrderPlaced]))


@dataclass
class DeadLetters:
    """A destination with dead letters: ``order`` (recorded in ``store_url`` by the
    service ``shop``, dead-lettered by the groups ``groups``) and a hostile message
    that did not decode; ``options`` are the CLI options that reach the transport, and
    ``open()`` opens it (in the running event loop)."""

    open: Callable[[], Transport]
    options: list[str]
    store_url: str
    order: OrderPlaced


async def dead_letter(transport: Transport, store_url: str, groups: tuple[str, ...]) -> OrderPlaced:
    async with await open_store(store_url) as store:
        shop = Mediator()
        recorder = MessageRecorder(store, service="shop").install(shop)
        order = OrderPlaced(order_id=7, correlation_id="checkout-7", requested_by="ada")
        await shop.publish(order)
        await recorder.close()
    for group in groups:
        await transport.ensure_group(DESTINATION, group)
    headers, body = CODEC.encode(order)
    await transport.publish(DESTINATION, headers, body)
    hostile = {
        **headers,
        "cqrs-message-id": "not-a-uuid",
        "x-note": f"{ESC}]8;;http://evil{ESC}\\click{ESC}[2J",
    }
    await transport.publish(DESTINATION, hostile, b'{"order_id": "\\u001b[2J\\u202e"}')
    for group in groups:
        bus = Mediator()

        @bus.handler(OrderPlaced)
        async def fail(event: OrderPlaced) -> None:
            raise RuntimeError(f"stock service down{ESC}[2J\nretry later")

        consumer = Consumer(
            bus, transport, CODEC, DESTINATION, group, max_attempts=1,
            backoff=Backoff(initial=0.01), wait=0.05,
        )  # fmt: skip
        await consumer.process_batch()
    await transport.close()
    return order


@pytest.fixture(params=["memory", "redis"])
def letters(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """``letters(groups=("stock",))``: dead letters on the test's transport."""
    made: list[DeadLetters] = []
    prefix = new_prefix("cqrs-cli-dlq")

    def make(groups: tuple[str, ...] = ("stock",)) -> DeadLetters:
        store_url = f"sqlite:///{tmp_path / f'cqrs-{len(made)}.db'}"
        opener: Callable[[], Transport]
        if request.param == "memory":
            memory = MemoryTransport()

            async def keep_open() -> None:  # each command closes what it opened
                pass

            monkeypatch.setattr(memory, "close", keep_open)
            monkeypatch.setattr(dlq, "open_transport", lambda url, prefix="": memory)
            opener = lambda: memory  # noqa: E731
            options = ["--transport", "memory://"]
        else:
            opener = lambda: RedisTransport.from_url(REDIS_URL, prefix=prefix)  # noqa: E731
            options = ["--transport", REDIS_URL, "--transport-prefix", prefix]
        order = asyncio.run(dead_letter(opener(), store_url, groups))
        made.append(DeadLetters(opener, options, store_url, order))
        return made[-1]

    yield make
    if request.param == "redis":
        asyncio.run(delete_keys(prefix))


def listed(found: DeadLetters, *options: str) -> list[dict[str, Any]]:
    result = cqrs("dlq", "list", "-d", DESTINATION, *found.options, "--json", *options)
    assert result.exit_code == 0, result.output
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


def test_list_prints_one_escaped_line_per_dead_letter(letters):
    found = letters()
    result = cqrs("dlq", "list", "-d", DESTINATION, *found.options)
    assert result.exit_code == 0, result.output
    assert ESC not in result.stdout
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[:5] == ["dead", "letter", "group", "type", "message"]
    [order_line] = [line for line in lines if found.order.request_id.hex[:8] in line]
    assert "OrderPlaced" in order_line and "checkout-7" in order_line and "stock" in order_line
    # the consumer made the reason safe when it dead-lettered the message
    assert "failed once; last error: RuntimeError: stock service down?[2J?retry later" in (
        order_line
    )
    [junk_line] = [line for line in lines if "undecodable" in line]
    assert " ? " in junk_line  # no valid type nor message id to show

    data = listed(found)
    assert [letter["message_id"] for letter in data].count(str(found.order.request_id)) == 1
    order = next(d for d in data if d["message_id"] == str(found.order.request_id))
    assert order["correlation_id"] == "checkout-7"
    assert order["requested_by"] == "ada"
    assert order["attempts"] == 1
    assert order["reason"].startswith("failed once; last error: RuntimeError: stock service")


def test_show_prints_the_headers_and_the_body_escaped(letters):
    found = letters()
    junk = next(letter for letter in listed(found) if letter["message_id"] is None)
    result = cqrs("dlq", "show", junk["dead_letter_id"], "-d", DESTINATION, *found.options)
    assert result.exit_code == 0, result.output
    assert ESC not in result.stdout
    assert "x-note: \\x1b]8;;http://evil\\x1b\\click\\x1b[2J" in result.stdout
    assert "body (31 bytes, JSON)" in result.stdout
    assert '"order_id": "\\u001b[2J\\u202e"' in result.stdout
    assert "undecodable: header cqrs-message-id: must be a UUID" in result.stdout

    by_message = cqrs(
        "dlq", "show", found.order.request_id.hex[:8], "-d", DESTINATION, *found.options, "--json"
    )
    assert by_message.exit_code == 0, by_message.output
    shown = json.loads(by_message.stdout)
    assert shown["body"] == {"order_id": 7}
    assert shown["headers"]["cqrs-message-id"] == str(found.order.request_id)
    assert shown["group"] == "stock"


def test_a_replay_keeps_the_ids_and_is_recorded_under_the_message(letters):
    found = letters()
    result = cqrs(
        "dlq", "replay", found.order.request_id.hex[:8], "-d", DESTINATION, *found.options,
        "--store", found.store_url, "--requested-by", "operator:bob",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("replayed ")
    assert f"OrderPlaced {found.order.request_id.hex[:8]}  checkout-7  -> stock" in result.stdout
    assert f"1 replay recorded in {found.store_url} by operator:bob" in result.stdout
    remaining = listed(found)
    assert [letter["message_id"] for letter in remaining] == [None]  # the junk stays

    trace = cqrs("trace", "checkout-7", "--store", found.store_url)
    assert trace.exit_code == 0, trace.output
    # the messages, and under OrderPlaced what became of it in the consuming groups
    deliveries = [line for line in trace.stdout.splitlines() if "⇢" in line]
    lines = [line for line in trace.stdout.splitlines() if "⇢" not in line]
    assert "OrderPlaced" in lines[1] and "[shop]" in lines[1]
    assert "DeadLetterReplayed" in lines[2] and "[cqrs-cli]" in lines[2]
    assert "by operator:bob" in lines[2] and lines[2].startswith("└── ")
    assert any("replayed by operator:bob" in line for line in deliveries)
    [tree] = json.loads(cqrs("trace", "checkout-7", "--store", found.store_url, "--json").stdout)
    [replayed] = tree["children"]
    assert replayed["message_type"] == "python_cqrs_core.DeadLetterReplayed"
    assert replayed["service"] == "cqrs-cli"
    assert replayed["causation_id"] == str(found.order.request_id)
    assert replayed["payload"]["replayed_message_id"] == str(found.order.request_id)
    assert [(d["outcome"], d["requested_by"]) for d in tree["deliveries"]] == [
        ("replayed", "operator:bob")
    ]

    # the message itself went back to its group, unchanged
    async def redeliver() -> Any:
        transport = found.open()
        try:
            for _ in range(50):
                deliveries = await transport.receive(DESTINATION, "stock", "c-2", wait=0.1)
                if deliveries:
                    return deliveries
            return []
        finally:
            await transport.close()

    [delivery] = asyncio.run(redeliver())
    message = CODEC.decode(delivery.headers, delivery.body).message
    assert message.request_id == found.order.request_id
    assert message.correlation_id == "checkout-7"


def test_replay_all_needs_a_confirmation_and_without_a_store_records_nothing(letters, monkeypatch):
    found = letters(groups=("stock", "billing"))
    monkeypatch.delenv("CQRS_STORE_URL", raising=False)
    refused = cqrs("dlq", "replay", "--all", "-d", DESTINATION, *found.options, "-g", "billing")
    assert refused.exit_code == 2
    assert refused.output.startswith(
        f"error: --all replays every dead letter of {DESTINATION} of group billing: add --yes"
    )
    assert len(listed(found)) == 4

    done = cqrs(
        "dlq", "replay", "--all", "--yes", "-d", DESTINATION, *found.options, "-g", "billing"
    )
    assert done.exit_code == 0, done.output
    assert done.stdout.count("replayed ") == 2
    assert "not recorded: no --store, no $CQRS_STORE_URL" in done.stdout
    assert {letter["group"] for letter in listed(found)} == {"stock"}


def test_an_ambiguous_or_unknown_dead_letter_is_one_error_line(letters):
    found = letters(groups=("stock", "billing"))
    prefix = found.order.request_id.hex[:8]
    ambiguous = cqrs("dlq", "show", prefix, "-d", DESTINATION, *found.options)
    assert ambiguous.exit_code == 2
    first, *candidates = ambiguous.output.splitlines()
    assert first.startswith(f"error: 2 dead letters of '{DESTINATION}' hold a message whose id")
    assert sorted(line.split()[2] for line in candidates) == ["billing", "stock"]

    unknown = cqrs("dlq", "replay", "ffffffff", "-d", DESTINATION, *found.options)
    assert unknown.exit_code == 1
    assert unknown.output == (
        f"error: '{DESTINATION}' has no dead letter 'ffffffff', nor one whose message id "
        "starts with it\n"
    )


def test_an_empty_destination_says_so(letters):
    found = letters()
    result = cqrs("dlq", "list", "-d", "billing.events", *found.options)
    assert (result.exit_code, result.stdout) == (0, "no dead letters in billing.events\n")


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        ([], 2, "error: no transport: give --transport redis://host:6379/0, or set $CQRS_"),
        (
            ["--transport", "http://app:s3cret@broker/0"],
            2,
            "error: --transport http://app:***@broker/0: the transport URL must be a Redis",
        ),
        (
            ["--transport", "redis://app:s3cret@127.0.0.1:1/0"],
            1,
            "error: could not read the dead letters of 'orders.events' on "
            "redis://app:***@127.0.0.1:1/0: ConnectionError",
        ),
        (["--transport", REDIS_URL, "-d", "two words"], 2, "error: --destination: "),
    ],
)
def test_transport_problems_are_one_error_line_without_the_password(args, code, error):
    destination = [] if "-d" in args else ["-d", DESTINATION]
    result = cqrs("dlq", "list", *destination, *args, env={"CQRS_TRANSPORT_URL": None})
    assert result.exit_code == code
    assert result.output.startswith(error), result.output
    assert len(result.output.splitlines()) == 1
    assert "s3cret" not in result.output


def test_naming_a_dead_letter_and_all_is_refused():
    for args in (["1-0", "--all", "--yes"], []):
        result = cqrs("dlq", "replay", *args, "-d", DESTINATION, "--transport", REDIS_URL)
        assert result.exit_code == 2
        assert result.output.startswith("error: name one dead letter to replay, or give --all")


def test_the_list_fits_the_terminal_by_cutting_the_reasons(letters):
    found = letters()
    result = cqrs("dlq", "list", "-d", DESTINATION, *found.options, env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert all(line.rstrip().endswith("…") for line in lines[2:])  # the reasons are long
    assert "stock  OrderPlaced" in result.stdout  # the other columns are whole
