"""The behaviour every message store must show, as a test suite any backend can run.

The library runs it for its own three backends (``tests/store/test_store_behaviour.py``);
a package that adds a backend (registered under its URL scheme, see
:mod:`python_cqrs_core.store.backends`) runs it the same way: subclass one of the two
contracts in a ``Test...`` class, say where a new, empty store lives, and pytest
collects every test of the contract for it::

    from python_cqrs_core.testing.store_contract import DurableStoreContract, StoreLocation

    class TestDynamoStore(DurableStoreContract):
        async def new_location(self) -> StoreLocation:
            table = await create_empty_table()          # your fixture code
            return StoreLocation(f"dynamodb://{table}", {"region": "eu-west-1"})

- :class:`MessageStoreContract`: appending, reading back, traversal, the feed
  (``read``, ``last_position``), the summaries (``correlations``), the filters and
  their validation, records turned back into messages, deliveries (received records
  stored once, delivery records read back, on their nodes and in the summaries),
  read-only opening;
- :class:`DurableStoreContract` adds what a store that outlives its object must do:
  keep its records across opens, tolerate concurrent first opens, refuse to open
  read-only where no store exists, and serve a read-only reader while a writer
  appends.  (``memory://`` runs only the first.)

Every test opens the store from :meth:`~MessageStoreContract.new_location` with
``open_store(url, **options)`` (override :meth:`~MessageStoreContract.open` to open
it another way), runs in its own event loop (``asyncio.run``: no pytest-asyncio or
anyio setup is needed, and none gets in the way), and closes every store it opened.
A test that takes longer than :attr:`~MessageStoreContract.timeout` seconds fails.
Fixtures the location needs (a temporary directory, a server) come in through an
autouse fixture method of the subclass::

    class TestFileStore(DurableStoreContract):
        @pytest.fixture(autouse=True)
        def _directory(self, tmp_path):
            self.directory = tmp_path

        async def new_location(self) -> StoreLocation:
            return StoreLocation(f"myfile:///{self.directory / 'store'}")

This module imports no database driver, and pytest only while a test runs.
:func:`sample_record` and :func:`sample_delivery` build the records the tests
append; they are public for a backend's own tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

from .._ids import uuid4
from ..mediator import Mediator
from ..messages import BaseCommand, BaseEvent
from ..registry import MessageRegistry
from ..store import (
    CorrelationSummary,
    DeliveryRecord,
    HandlerOutcome,
    MessageRecord,
    MessageRecorder,
    MessageStore,
    ReadOnlyStoreError,
    RecordNotReconstructibleError,
    Statement,
    StoreOpenError,
    StoreWriteError,
    open_store,
)

__all__ = [
    "DurableStoreContract",
    "MessageStoreContract",
    "StoreLocation",
    "sample_delivery",
    "sample_record",
]

_Contract = TypeVar("_Contract", bound="MessageStoreContract")
Scenario = Callable[[_Contract, MessageStore], Awaitable[None]]

_EPOCH = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class StoreLocation:
    """Where a store lives: the URL and the ``open_store`` options to open it with."""

    url: str
    options: Mapping[str, Any] = field(default_factory=dict)


def sample_record(
    *,
    correlation_id: str | UUID = "op-1",
    parent: MessageRecord | None = None,
    cause: str | None = None,
    message_id: UUID | None = None,
    message_type: str = "tests.Msg",
    kind: str = "command",
    **fields: Any,
) -> MessageRecord:
    """A record as if a message had been dispatched; ``fields`` override any field.

    ``parent`` makes it a child of that record (its causation id); ``cause`` sets a
    raw causation id instead (for orphans and cycles).

    >>> child = sample_record(parent=sample_record(), message_type="orders.Shipped")
    >>> child.correlation_id, child.message_type, child.outcome
    ('op-1', 'orders.Shipped', 'succeeded')
    """
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "message_id": message_id or uuid4(),
        "kind": kind,
        "message_type": message_type,
        "correlation_id": str(correlation_id),
        "causation_id": str(parent.message_id) if parent is not None else cause,
        "requested_by": "alice@example.com",
        "requested_at": now,
        "recorded_at": now,
        "payload": {"n": 1},
        "outcome": "succeeded",
        "handlers": (HandlerOutcome("Handler", "succeeded", 0.25),),
        "error_type": None,
        "error_message": None,
        "duration_ms": 0.5,
        "headers": {},
    }
    values.update(fields)
    return MessageRecord(**values)


def sample_delivery(
    record: MessageRecord,
    *,
    attempt: int = 1,
    outcome: str = "succeeded",
    group: str = "inventory",
    **fields: Any,
) -> DeliveryRecord:
    """A delivery of ``record``'s message to ``group``, as a consuming service's
    recorder writes it; ``fields`` override any field.

    >>> placed = sample_record(message_type="orders.OrderPlaced", kind="event")
    >>> delivery = sample_delivery(placed, attempt=2, outcome="failed")
    >>> delivery.message_id == placed.message_id, delivery.service, delivery.failed
    (True, 'inventory', True)
    """
    values: dict[str, Any] = {
        "message_id": record.message_id,
        "message_type": record.message_type,
        "correlation_id": record.correlation_id,
        "service": "inventory",
        "transport": "memory",
        "destination": "orders.events",
        "group": group,
        "attempt": attempt,
        "delivery_id": f"{attempt}-0",
        "outcome": outcome,
        "handlers": (HandlerOutcome("reserve", "succeeded", 0.25),),
        "error_type": None,
        "error_message": None,
        "duration_ms": 0.5,
        "recorded_at": datetime.now(UTC),
    }
    if outcome == "failed":
        values["handlers"] = (HandlerOutcome("reserve", "failed", 0.25, "KeyError", "'sku'"),)
        values.update(error_type="KeyError", error_message="'sku'")
    values.update(fields)
    return DeliveryRecord(**values)


def _scenario(test: Scenario[_Contract]) -> Callable[[_Contract], None]:
    """Make ``async def test_x(self, store)`` a plain test method that pytest runs in
    its own event loop, with a fresh store from :meth:`MessageStoreContract.new_location`."""

    def run(self: _Contract) -> None:
        asyncio.run(self._play(test))

    run.__name__ = test.__name__
    run.__qualname__ = test.__qualname__
    run.__doc__ = test.__doc__
    return run


def _raises(expected: type[BaseException], match: str | None = None) -> AbstractContextManager[Any]:
    import pytest  # only while a test runs

    return pytest.raises(expected, match=match)


def _ids(records: list[MessageRecord]) -> list[UUID]:
    return [record.message_id for record in records]


async def _position(store: MessageStore, record: MessageRecord) -> int:
    """The position ``store`` gave ``record``."""
    stored = await store.get(record.message_id)
    assert stored is not None and stored.position is not None
    return stored.position


def _as_given(record: MessageRecord) -> MessageRecord:
    """The record as given to append (times compare as instants across offsets)."""
    return dataclasses.replace(record, position=None)


class OpenAccount(BaseCommand):
    """The command the contract dispatches through a recorder and turns back."""

    __message_type__ = "store_contract.OpenAccount"
    holder: str
    limits: dict[str, int]
    opened: datetime


class AccountOpened(BaseEvent):
    """The event :class:`OpenAccount`'s handler publishes."""

    __message_type__ = "store_contract.AccountOpened"
    holder: str


def _order_flow() -> dict[str, MessageRecord]:
    """The guide's example tree, six records in recorded order::

    PlaceOrder
      +-- OrderPlaced
            +-- ReserveInventory
            |     +-- InventoryReserved
            +-- NotifyCustomer
                  +-- NotificationSent
    """
    flow: dict[str, MessageRecord] = {}
    flow["PlaceOrder"] = sample_record(correlation_id="ext-123", message_type="PlaceOrder")
    flow["OrderPlaced"] = sample_record(
        correlation_id="ext-123",
        message_type="OrderPlaced",
        kind="event",
        parent=flow["PlaceOrder"],
    )
    for command, event in (
        ("ReserveInventory", "InventoryReserved"),
        ("NotifyCustomer", "NotificationSent"),
    ):
        flow[command] = sample_record(
            correlation_id="ext-123", message_type=command, parent=flow["OrderPlaced"]
        )
        flow[event] = sample_record(
            correlation_id="ext-123", message_type=event, kind="event", parent=flow[command]
        )
    return flow


def _operations() -> list[list[MessageRecord]]:
    """Four business operations, one append each, recorded a minute apart:

    ====  =========  ===========  =============  ========  ==========================
    op    opened by  root type    root service   outcome   records
    ====  =========  ===========  =============  ========  ==========================
    op-a  ada        shop.Order   shop           succeeded  Order, Placed (event)
    op-b  bob        shop.Order   shop           failed     Order, Placed (event, fails)
    op-c  ada        ops.Import   ops            succeeded  Import (query)
    op-d  bob        shop.Refund  None           failed     Refund (fails)
    ====  =========  ===========  =============  ========  ==========================
    """

    def at(minutes: int) -> datetime:
        return _EPOCH + timedelta(minutes=minutes)

    failed: dict[str, Any] = {"outcome": "failed", "error_type": "IOError", "error_message": "disk"}
    a = sample_record(
        correlation_id="op-a", message_type="shop.Order", requested_by="ada", service="shop",
        recorded_at=at(0),
    )  # fmt: skip
    b = sample_record(
        correlation_id="op-b", message_type="shop.Order", requested_by="bob", service="shop",
        recorded_at=at(1),
    )  # fmt: skip
    c = sample_record(
        correlation_id="op-c", message_type="ops.Import", requested_by="ada", service="ops",
        kind="query", recorded_at=at(2),
    )  # fmt: skip
    d = sample_record(
        correlation_id="op-d", message_type="shop.Refund", requested_by="bob", service=None,
        recorded_at=at(3), **failed,
    )  # fmt: skip
    placed_a = sample_record(
        correlation_id="op-a", parent=a, message_type="shop.Placed", kind="event",
        requested_by="ada", service="shop", recorded_at=at(0) + timedelta(seconds=1),
    )  # fmt: skip
    placed_b = sample_record(
        correlation_id="op-b", parent=b, message_type="shop.Placed", kind="event",
        requested_by="bob", service="shop", recorded_at=at(1) + timedelta(seconds=1), **failed,
    )  # fmt: skip
    return [[a, placed_a], [b, placed_b], [c], [d]]


class MessageStoreContract:
    """The contract of every :class:`~python_cqrs_core.store.MessageStore`.

    Subclass it in a ``Test...`` class and implement :meth:`new_location`; see the
    module documentation.
    """

    timeout: ClassVar[float] = 30.0
    """Seconds a test may take before it fails (traversal must never hang)."""

    async def new_location(self) -> StoreLocation:
        """Where a new, empty store lives (it need not exist yet: the contract opens it
        with ``open_store``, which creates it).  Called once per test."""
        raise NotImplementedError(f"{type(self).__name__} must implement new_location()")

    async def open(self, location: StoreLocation, *, read_only: bool = False) -> MessageStore:
        """Open the store at ``location``; ``open_store`` unless overridden."""
        return await open_store(location.url, read_only=read_only, **location.options)

    async def open_again(self, *, read_only: bool = False) -> MessageStore:
        """Open the running test's store once more (closed after the test)."""
        store = await self.open(self._contract_location, read_only=read_only)
        self._contract_opened.append(store)
        return store

    async def _play(self, test: Scenario[Any]) -> None:
        self._contract_location = await self.new_location()
        self._contract_opened: list[MessageStore] = []
        try:
            store = await self.open_again()
            await asyncio.wait_for(test(self, store), self.timeout)
        finally:
            for opened in reversed(self._contract_opened):
                await opened.close()

    # -- append and get ---------------------------------------------------------------

    @_scenario
    async def test_a_stored_record_reads_back_equal_with_a_position(
        self, store: MessageStore
    ) -> None:
        record = sample_record(service="orders", pii_fields=("email",), payload_redacted=True)
        await store.append([record])
        stored = await store.get(record.message_id)
        assert stored is not None
        assert stored.position is not None and stored.position > 0
        assert _as_given(stored) == _as_given(record)

    @_scenario
    async def test_get_accepts_the_id_as_uuid_or_any_uuid_spelling(
        self, store: MessageStore
    ) -> None:
        record = sample_record()
        await store.append([record])
        for key in (record.message_id, str(record.message_id), record.message_id.hex.upper()):
            found = await store.get(key)
            assert found is not None and found.message_id == record.message_id

    @_scenario
    async def test_get_of_an_unknown_id_is_none(self, store: MessageStore) -> None:
        assert await store.get(uuid4()) is None
        assert await store.get("not-an-id-at-all") is None

    # -- message ids by prefix -----------------------------------------------------------

    @_scenario
    async def test_message_ids_with_a_prefix_come_in_recorded_order_up_to_limit(
        self, store: MessageStore
    ) -> None:
        near, far, neighbour, other = (
            UUID("6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c44"),
            UUID("6c1f0d1e-0000-4000-8000-000000000001"),
            UUID("6c1f0d1f-0000-4000-8000-000000000002"),
            UUID("f0000000-0000-4000-8000-000000000003"),
        )
        # Recorded in an order that is not the order of the ids.
        await store.append([sample_record(message_id=near), sample_record(message_id=other)])
        await store.append([sample_record(message_id=neighbour), sample_record(message_id=far)])
        assert await store.message_ids_with_prefix("6c1f0d1e") == [near, far]
        assert await store.message_ids_with_prefix("6c1f0d1") == [near, neighbour, far]
        assert await store.message_ids_with_prefix("6c1f0d1", limit=2) == [near, neighbour]
        assert await store.message_ids_with_prefix("6c1f0d1e-") == [near, far]
        assert await store.message_ids_with_prefix("6c1f0d1e-8") == [near]
        assert await store.message_ids_with_prefix(str(far)) == [far]
        assert await store.message_ids_with_prefix("f") == [other]
        assert await store.message_ids_with_prefix("0") == []
        assert await store.message_ids_with_prefix("6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c45") == []

    @_scenario
    async def test_a_malformed_message_id_prefix_is_a_value_error_naming_it(
        self, store: MessageStore
    ) -> None:
        await store.append([sample_record(message_id=UUID("6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c44"))])
        for bad in (
            "",
            "6C1F",  # str(uuid) is lower case
            "6c1f0d1e8",  # a digit where the dash goes
            "6c1f-",  # a dash where a digit goes
            "6c1f0d1e-8f5a-4b6e-9d3c-2a7b9e0f1c44a",  # 37 characters
            " 6c1f",
            "6c1f%",
            "6c1f' OR '1'='1",
            None,
            6,
        ):
            with _raises(ValueError, match="prefix"):
                await store.message_ids_with_prefix(bad)  # type: ignore[arg-type]
        for limit in (0, 10_001, "3"):
            with _raises(ValueError, match="limit"):
                await store.message_ids_with_prefix("6c1f", limit=limit)  # type: ignore[arg-type]

    @_scenario
    async def test_positions_follow_the_order_of_appends_and_of_records_in_a_batch(
        self, store: MessageStore
    ) -> None:
        first, second, third = (sample_record(message_type=f"M{n}") for n in range(3))
        await store.append([first, second])
        await store.append([third])
        positions = [await _position(store, record) for record in (first, second, third)]
        assert positions == sorted(positions) and len(set(positions)) == 3

    @_scenario
    async def test_a_large_batch_keeps_its_order_and_opens_each_correlation_once(
        self, store: MessageStore
    ) -> None:
        records = [
            sample_record(correlation_id=f"op-{n % 7}", message_type=f"M{n}") for n in range(600)
        ]
        await store.append(records[:1])
        await store.append(records[1:])
        assert _ids(await store.read(limit=1000)) == _ids(records)
        summaries = await store.correlations(limit=100)
        assert sorted((s.correlation_id, s.message_count) for s in summaries) == [
            (f"op-{n}", len(range(n, 600, 7))) for n in range(7)
        ]

    @_scenario
    async def test_a_batch_with_an_already_stored_message_id_is_rejected_whole(
        self, store: MessageStore
    ) -> None:
        stored = sample_record()
        await store.append([stored])
        fresh = sample_record()
        with _raises(StoreWriteError):
            await store.append([fresh, sample_record(message_id=stored.message_id)])
        assert await store.get(fresh.message_id) is None
        assert len(await store.by_correlation("op-1")) == 1

    @_scenario
    async def test_a_batch_holding_one_message_id_twice_is_rejected(
        self, store: MessageStore
    ) -> None:
        record = sample_record()
        with _raises(StoreWriteError):
            await store.append([record, record])
        assert await store.get(record.message_id) is None

    @_scenario
    async def test_a_rejected_batch_does_not_fail_batches_written_at_the_same_time(
        self, store: MessageStore
    ) -> None:
        stored = sample_record(correlation_id="first")
        await store.append([stored])
        good = [[sample_record(correlation_id=f"good-{n}")] for n in range(20)]
        bad = [sample_record(correlation_id="bad"), sample_record(message_id=stored.message_id)]
        results = await asyncio.gather(
            *(store.append(batch) for batch in [*good[:10], bad, *good[10:]]),
            return_exceptions=True,
        )
        outcomes = [type(result).__name__ for result in results]
        assert outcomes == ["NoneType"] * 10 + ["StoreWriteError"] + ["NoneType"] * 10
        for batch in good:
            assert await store.get(batch[0].message_id) is not None
        assert await store.get(bad[0].message_id) is None

    @_scenario
    async def test_an_append_whose_caller_is_cancelled_is_still_written_whole(
        self, store: MessageStore
    ) -> None:
        """A loop shutting down cancels every task: an append already begun must end
        whole, and raise the cancellation only then."""
        batches = [[sample_record(correlation_id=f"c{n}"), sample_record()] for n in range(5)]
        tasks = [asyncio.ensure_future(store.append(batch)) for batch in batches]
        await asyncio.sleep(0)  # every append has begun
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for batch in batches:
            for record in batch:
                assert await store.get(record.message_id) is not None

    @_scenario
    async def test_an_empty_batch_changes_nothing(self, store: MessageStore) -> None:
        await store.append([])
        assert await store.last_position() == 0
        assert await store.correlations() == []

    @_scenario
    async def test_payload_headers_handlers_and_failure_round_trip(
        self, store: MessageStore
    ) -> None:
        record = sample_record(
            kind="event",
            correlation_id="req-Opaque_id:42/x",
            payload={"name": "Zoë ✓", "items": [1, 2.5, None, {"deep": [True, False]}], "n": 0},
            headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "baggage": "k=v"},
            handlers=(
                HandlerOutcome("ReserveStock", "succeeded", 1.5),
                HandlerOutcome("Notify", "failed", 0.75, "SmtpError", "mail server said 'no'\n"),
            ),
            outcome="failed",
            error_type="SmtpError",
            error_message="mail server said 'no'\n",
            requested_by=None,
            requested_at=datetime(
                2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))
            ),
            duration_ms=None,
        )
        await store.append([record])
        stored = await store.get(record.message_id)
        assert stored is not None
        assert _as_given(stored) == _as_given(record)
        assert stored.handler == "ReserveStock, Notify"
        assert stored.traceparent == record.headers["traceparent"]

    @_scenario
    async def test_text_and_numbers_no_store_can_hold_are_stored_escaped_the_same_way(
        self, store: MessageStore
    ) -> None:
        """NUL characters and lone surrogates (a ``surrogateescape`` file name) in any
        text, and NaN or infinite numbers: stored escaped, flagged, read back the same
        from every backend, and valid strict JSON in any view."""
        name = "caf\udce9.txt"  # os.fsdecode(b"caf\xe9.txt") on a UTF-8 system
        failure = f"cannot open {name}: NUL\x00 in path"
        record = sample_record(
            correlation_id="op-escaped",
            message_type="store_contract.OpenAccount",
            requested_by="ada\udcff",
            payload={
                "file": name,
                "note": "a\x00b",
                "ratio": float("nan"),
                "limits": [float("inf"), -float("inf"), 1.5],
                "key\x00": {"deep": name},
            },
            outcome="failed",
            error_type="OSError",
            error_message=failure,
            handlers=(HandlerOutcome("Upload", "failed", 0.5, "OSError", failure),),
            headers={"baggage": "file=a\x00"},
        )
        fine = sample_record(correlation_id="op-escaped", parent=record, payload={"n": 2.5})
        await store.append([record, fine])
        stored, stored_fine = await store.by_correlation("op-escaped")
        written = "cannot open caf\\udce9.txt: NUL\\u0000 in path"
        assert stored.payload == {
            "file": "caf\\udce9.txt",
            "note": "a\\u0000b",
            "ratio": "NaN",
            "limits": ["Infinity", "-Infinity", 1.5],
            "key\\u0000": {"deep": "caf\\udce9.txt"},
        }
        assert (stored.error_message, stored.handlers[0].error_message) == (written, written)
        assert (stored.requested_by, stored.headers) == ("ada\\udcff", {"baggage": "file=a\\u0000"})
        assert stored.escaped_fields == (
            "error_message", "handlers", "headers", "payload", "requested_by",
        )  # fmt: skip
        # Nothing else changed, and the record that needed nothing is stored as given.
        assert _as_given(stored) == dataclasses.replace(
            record,
            payload=stored.payload,
            error_message=written,
            handlers=stored.handlers,
            requested_by=stored.requested_by,
            headers=stored.headers,
            escaped_fields=stored.escaped_fields,
        )
        assert _as_given(stored_fine) == _as_given(fine) and stored_fine.escaped_fields == ()
        text = json.dumps([r.to_dict() for r in (stored, stored_fine)], allow_nan=False)
        json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8")  # no lone surrogate
        with _raises(RecordNotReconstructibleError, match="escaped"):
            stored.to_message(MessageRegistry([OpenAccount]))
        (tree,) = await store.build_causation_tree("op-escaped")
        assert [n.record.message_id for _, n in tree.walk()] == _ids([record, fine])
        assert _ids(await store.read(requested_by="ada\\udcff")) == [record.message_id]

    @_scenario
    async def test_a_recorded_message_turns_back_into_an_equal_message(
        self, store: MessageStore
    ) -> None:
        bus = Mediator()

        async def open_account(command: OpenAccount) -> None:
            await bus.publish(AccountOpened(holder=command.holder))

        async def opened(event: AccountOpened) -> None:
            return None

        bus.register(OpenAccount, open_account)
        bus.subscribe(AccountOpened, opened)
        recorder = MessageRecorder(store, service="accounts").install(bus)
        command = OpenAccount(
            holder="Zoë", limits={"daily": 500}, opened=_EPOCH, requested_by="teller:7"
        )
        await bus.send(command)
        await recorder.close()

        registry = MessageRegistry([OpenAccount, AccountOpened])
        root, event = await store.by_correlation(command.request_id)
        assert (root.message_type, event.message_type, root.service) == (
            "store_contract.OpenAccount",
            "store_contract.AccountOpened",
            "accounts",
        )
        rebuilt = root.to_message(registry)
        assert isinstance(rebuilt, OpenAccount) and rebuilt == command
        caused = event.to_message(registry)
        assert isinstance(caused, AccountOpened)
        assert (caused.causation_id, caused.correlation_id) == (
            command.request_id,
            command.request_id,
        )

    # -- correlation and traversal ----------------------------------------------------

    @_scenario
    async def test_by_correlation_lists_only_that_correlation_in_recorded_order(
        self, store: MessageStore
    ) -> None:
        a1 = sample_record(correlation_id="op-a")
        b1 = sample_record(correlation_id="op-b")
        a2 = sample_record(correlation_id="op-a", parent=a1)
        a3 = sample_record(correlation_id="op-a", parent=a2)
        await store.append([a1, b1])
        await store.append([a2])
        await store.append([a3])
        assert _ids(await store.by_correlation("op-a")) == _ids([a1, a2, a3])
        assert _ids(await store.by_correlation("op-b")) == _ids([b1])
        assert await store.by_correlation("op-unknown") == []

    @_scenario
    async def test_uuid_correlation_ids_are_found_by_uuid_or_text(
        self, store: MessageStore
    ) -> None:
        correlation = uuid4()
        record = sample_record(correlation_id=correlation)
        await store.append([record])
        assert _ids(await store.by_correlation(correlation)) == [record.message_id]
        assert _ids(await store.by_correlation(str(correlation).upper())) == [record.message_id]

    @_scenario
    async def test_trace_causation_walks_up_from_a_message_to_its_root(
        self, store: MessageStore
    ) -> None:
        flow = _order_flow()
        await store.append(list(flow.values()))
        chain = await store.trace_causation(flow["NotificationSent"].message_id)
        assert [r.message_type for r in chain] == [
            "PlaceOrder",
            "OrderPlaced",
            "NotifyCustomer",
            "NotificationSent",
        ]
        root_only = await store.trace_causation(str(flow["PlaceOrder"].message_id))
        assert _ids(root_only) == [flow["PlaceOrder"].message_id]
        assert await store.trace_causation(uuid4()) == []

    @_scenario
    async def test_trace_causation_starts_at_the_orphan_when_a_parent_is_missing(
        self, store: MessageStore
    ) -> None:
        orphan = sample_record(cause=str(uuid4()), message_type="Orphan")
        child = sample_record(parent=orphan, message_type="Child")
        await store.append([orphan, child])
        chain = await store.trace_causation(child.message_id)
        assert [r.message_type for r in chain] == ["Orphan", "Child"]

    @_scenario
    async def test_trace_effects_lists_all_descendants_in_recorded_order(
        self, store: MessageStore
    ) -> None:
        flow = _order_flow()
        await store.append(list(flow.values()))
        effects = await store.trace_effects(flow["PlaceOrder"].message_id)
        assert [r.message_type for r in effects] == [
            "OrderPlaced",
            "ReserveInventory",
            "InventoryReserved",
            "NotifyCustomer",
            "NotificationSent",
        ]
        branch = await store.trace_effects(flow["NotifyCustomer"].message_id)
        assert [r.message_type for r in branch] == ["NotificationSent"]
        assert await store.trace_effects(flow["InventoryReserved"].message_id) == []
        assert await store.trace_effects(uuid4()) == []

    @_scenario
    async def test_build_causation_tree_mirrors_the_causation_links(
        self, store: MessageStore
    ) -> None:
        await store.append(list(_order_flow().values()))
        (tree,) = await store.build_causation_tree("ext-123")
        assert [(depth, node.record.message_type) for depth, node in tree.walk()] == [
            (0, "PlaceOrder"),
            (1, "OrderPlaced"),
            (2, "ReserveInventory"),
            (3, "InventoryReserved"),
            (2, "NotifyCustomer"),
            (3, "NotificationSent"),
        ]
        assert not any(node.orphan for _, node in tree.walk())
        assert tree.record.handler == "Handler" and tree.record.outcome == "succeeded"
        assert await store.build_causation_tree("never-seen") == []

    @_scenario
    async def test_several_roots_under_one_correlation_id_are_all_returned_in_order(
        self, store: MessageStore
    ) -> None:
        first = sample_record(correlation_id="shared", message_type="First")
        second = sample_record(correlation_id="shared", message_type="Second")
        await store.append([first, sample_record(correlation_id="shared", parent=first)])
        await store.append([second, sample_record(correlation_id="shared", parent=second)])
        trees = await store.build_causation_tree("shared")
        assert [t.record.message_type for t in trees] == ["First", "Second"]
        assert [len(t.children) for t in trees] == [1, 1]

    @_scenario
    async def test_a_record_whose_parent_is_missing_heads_its_own_tree_flagged_orphan(
        self, store: MessageStore
    ) -> None:
        root = sample_record(correlation_id="op-x", message_type="Root")
        orphan = sample_record(correlation_id="op-x", cause=str(uuid4()), message_type="Orphan")
        under_orphan = sample_record(correlation_id="op-x", parent=orphan, message_type="Child")
        await store.append([root, orphan, under_orphan])
        trees = await store.build_causation_tree("op-x")
        assert [(t.record.message_type, t.orphan) for t in trees] == [
            ("Root", False),
            ("Orphan", True),
        ]
        assert [c.record.message_type for c in trees[1].children] == ["Child"]

    @_scenario
    async def test_a_cycle_in_stored_links_neither_hangs_nor_drops_records(
        self, store: MessageStore
    ) -> None:
        # a -> b -> c -> a, plus d hanging off c: no record of the correlation is a root.
        a_id, b_id, c_id = uuid4(), uuid4(), uuid4()
        await store.append(
            [
                sample_record(
                    correlation_id="loop", message_id=a_id, cause=str(c_id), message_type="A"
                ),
                sample_record(
                    correlation_id="loop", message_id=b_id, cause=str(a_id), message_type="B"
                ),
                sample_record(
                    correlation_id="loop", message_id=c_id, cause=str(b_id), message_type="C"
                ),
                sample_record(correlation_id="loop", cause=str(c_id), message_type="D"),
            ]
        )
        trees = await store.build_causation_tree("loop")
        seen = [node.record.message_type for t in trees for _, node in t.walk()]
        assert sorted(seen) == ["A", "B", "C", "D"]  # each record exactly once
        assert trees[0].record.message_type == "A" and trees[0].orphan
        assert [r.message_type for r in await store.trace_causation(b_id)] == ["C", "A", "B"]
        assert [r.message_type for r in await store.trace_effects(a_id)] == ["B", "C", "D"]

    @_scenario
    async def test_a_message_caused_by_itself_does_not_hang_traversal(
        self, store: MessageStore
    ) -> None:
        own_id = uuid4()
        await store.append(
            [sample_record(correlation_id="self", message_id=own_id, cause=str(own_id))]
        )
        assert _ids(await store.trace_causation(own_id)) == [own_id]
        assert await store.trace_effects(own_id) == []
        trees = await store.build_causation_tree("self")
        assert [(t.record.message_id, t.orphan, t.children) for t in trees] == [(own_id, True, [])]

    @_scenario
    async def test_a_long_chain_traverses_in_order(self, store: MessageStore) -> None:
        chain = [sample_record(correlation_id="long", message_type="M0")]
        for n in range(1, 200):
            chain.append(
                sample_record(correlation_id="long", parent=chain[-1], message_type=f"M{n}")
            )
        await store.append(chain)
        assert _ids(await store.trace_causation(chain[-1].message_id)) == _ids(chain)
        assert _ids(await store.trace_effects(chain[0].message_id)) == _ids(chain[1:])
        (tree,) = await store.build_causation_tree("long")
        assert [depth for depth, _ in tree.walk()] == list(range(200))

    # -- the feed: read() and last_position() -----------------------------------------

    @_scenario
    async def test_last_position_is_zero_when_empty_then_the_newest_records(
        self, store: MessageStore
    ) -> None:
        assert await store.last_position() == 0
        records = [sample_record(), sample_record()]
        await store.append(records)
        assert await store.last_position() == await _position(store, records[-1])

    @_scenario
    async def test_read_returns_the_records_after_a_position_in_order_up_to_limit(
        self, store: MessageStore
    ) -> None:
        records = [sample_record(message_type=f"M{n}") for n in range(5)]
        await store.append(records[:2])
        await store.append(records[2:])
        everything = await store.read()
        assert _ids(everything) == _ids(records)
        positions = [record.position or 0 for record in everything]
        assert positions == sorted(positions) and len(set(positions)) == 5
        assert _ids(await store.read(after=positions[1], limit=2)) == _ids(records[2:4])
        assert await store.read(after=positions[-1]) == []
        assert await store.read(after=positions[-1] + 1000) == []

    @_scenario
    async def test_reading_page_by_page_returns_every_record_once_even_while_appending(
        self, store: MessageStore
    ) -> None:
        await store.append([sample_record(correlation_id=f"c{n}") for n in range(7)])
        seen: list[UUID] = []
        after, appended = 0, 7
        while page := await store.read(after, limit=3):
            seen += _ids(page)
            after = page[-1].position or 0
            if appended < 13:  # a writer keeps appending while the feed is read
                await store.append([sample_record(correlation_id=f"c{appended}")])
                appended += 1
        assert len(seen) == len(set(seen)) == appended
        assert seen == _ids(await store.read(limit=100))

    @_scenario
    async def test_read_selects_records_by_each_filter(self, store: MessageStore) -> None:
        for operation in _operations():
            await store.append(operation)
        ids = {
            (record.correlation_id, record.message_type): record.message_id
            for record in await store.read()
        }
        a, placed_a = ids["op-a", "shop.Order"], ids["op-a", "shop.Placed"]
        b, placed_b = ids["op-b", "shop.Order"], ids["op-b", "shop.Placed"]
        c, d = ids["op-c", "ops.Import"], ids["op-d", "shop.Refund"]
        expected: list[tuple[dict[str, Any], list[UUID]]] = [
            ({"requested_by": "ada"}, [a, placed_a, c]),
            ({"message_type": "shop.Placed"}, [placed_a, placed_b]),
            ({"outcome": "failed"}, [placed_b, d]),
            ({"outcome": "succeeded"}, [a, placed_a, b, c]),
            ({"kind": "event"}, [placed_a, placed_b]),
            ({"service": "ops"}, [c]),
            ({"since": _EPOCH + timedelta(minutes=1)}, [b, placed_b, c, d]),
            ({"until": _EPOCH + timedelta(minutes=1)}, [a, placed_a]),
            (
                {
                    "since": _EPOCH + timedelta(minutes=1, seconds=1),
                    "until": _EPOCH + timedelta(minutes=3),
                },
                [placed_b, c],
            ),
            ({"requested_by": "bob", "outcome": "failed", "kind": "command"}, [d]),
            ({"requested_by": "nobody"}, []),
        ]
        for filters, wanted in expected:
            assert _ids(await store.read(**filters)) == wanted, filters

    @_scenario
    async def test_time_filters_compare_instants_whatever_the_offset(
        self, store: MessageStore
    ) -> None:
        plus_two = timezone(timedelta(hours=2))
        early = sample_record(recorded_at=datetime(2026, 3, 1, 13, 0, tzinfo=plus_two))  # 11:00Z
        late = sample_record(recorded_at=datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
        await store.append([early, late])
        noon_in_new_york = datetime(2026, 3, 1, 7, 0, tzinfo=timezone(timedelta(hours=-5)))
        assert _ids(await store.read(since=noon_in_new_york)) == [late.message_id]
        assert _ids(await store.read(until=noon_in_new_york)) == [early.message_id]

    @_scenario
    async def test_a_filtered_read_pages_with_after_like_a_plain_one(
        self, store: MessageStore
    ) -> None:
        records = [
            sample_record(requested_by="ada" if n % 3 == 0 else "bob", message_type=f"M{n}")
            for n in range(12)
        ]
        await store.append(records)
        first = await store.read(limit=2, requested_by="ada")
        rest = await store.read(after=first[-1].position or 0, limit=10, requested_by="ada")
        assert [r.message_type for r in first + rest] == ["M0", "M3", "M6", "M9"]

    @_scenario
    async def test_bad_arguments_are_value_errors_naming_them(self, store: MessageStore) -> None:
        bad_filters: list[tuple[dict[str, Any], str]] = [
            ({"outcome": "maybe"}, "outcome"),
            ({"kind": "notification"}, "kind"),
            ({"requested_by": "ada\nforged log line"}, "requested_by"),
            ({"message_type": "two words"}, "message_type"),
            ({"service": ""}, "service"),
            ({"since": datetime(2026, 1, 1)}, "since"),  # naive on purpose
            ({"until": "2026-01-01"}, "until"),
            ({"since": _EPOCH, "until": _EPOCH}, "since"),
        ]
        bad_limits: list[Any] = [0, -5, 10_001, True, "10", 2.0]
        for arguments, name in [
            *bad_filters,
            *(({"limit": limit}, "limit") for limit in bad_limits),
            ({"after": -1}, "after"),
            ({"after": 1.5}, "after"),
        ]:
            with _raises(ValueError, match=name):
                await store.read(**arguments)
        for arguments, name in [
            *bad_filters,
            *(({"limit": limit}, "limit") for limit in bad_limits),
            ({"before": 0}, "before"),
            ({"before": "7"}, "before"),
        ]:
            with _raises(ValueError, match=name):
                await store.correlations(**arguments)

    # -- the summaries: correlations() ------------------------------------------------

    @_scenario
    async def test_correlations_summarise_each_operation_newest_first(
        self, store: MessageStore
    ) -> None:
        operations = _operations()
        for operation in operations:
            await store.append(operation)
        summaries = await store.correlations()
        assert [s.correlation_id for s in summaries] == ["op-d", "op-c", "op-b", "op-a"]
        b = summaries[2]
        opening, placed = operations[1]
        assert b == CorrelationSummary(
            correlation_id="op-b",
            root_message_id=opening.message_id,
            root_message_type="shop.Order",
            outcome="failed",
            message_count=2,
            failed_count=1,
            first_recorded_at=opening.recorded_at,
            last_recorded_at=placed.recorded_at,
            requested_by="bob",
            service="shop",
            position=await _position(store, opening),
        )
        assert [(s.outcome, s.message_count, s.failed_count) for s in summaries] == [
            ("failed", 1, 1),
            ("succeeded", 1, 0),
            ("failed", 2, 1),
            ("succeeded", 2, 0),
        ]
        assert summaries[1].service == "ops" and summaries[0].service is None

    @_scenario
    async def test_correlations_page_back_with_before_and_limit(self, store: MessageStore) -> None:
        for operation in _operations():
            await store.append(operation)
        first = await store.correlations(limit=3)
        assert [s.correlation_id for s in first] == ["op-d", "op-c", "op-b"]
        rest = await store.correlations(limit=3, before=first[-1].position)
        assert [s.correlation_id for s in rest] == ["op-a"]
        assert await store.correlations(before=rest[-1].position) == []

    @_scenario
    async def test_correlations_filter_on_the_opening_record_and_the_whole_outcome(
        self, store: MessageStore
    ) -> None:
        for operation in _operations():
            await store.append(operation)
        expected: list[tuple[dict[str, Any], list[str]]] = [
            ({"requested_by": "ada"}, ["op-c", "op-a"]),
            ({"message_type": "shop.Order"}, ["op-b", "op-a"]),
            ({"message_type": "shop.Placed"}, []),  # never opens an operation
            ({"outcome": "failed"}, ["op-d", "op-b"]),  # op-b failed in its event
            ({"outcome": "succeeded"}, ["op-c", "op-a"]),
            ({"kind": "query"}, ["op-c"]),
            ({"service": "shop"}, ["op-b", "op-a"]),
            ({"since": _EPOCH + timedelta(seconds=30)}, ["op-d", "op-c", "op-b"]),
            ({"until": _EPOCH + timedelta(seconds=30)}, ["op-a"]),
            ({"requested_by": "bob", "outcome": "failed", "service": "shop"}, ["op-b"]),
        ]
        for filters, wanted in expected:
            found = await store.correlations(**filters)
            assert [s.correlation_id for s in found] == wanted, filters
        (limited,) = await store.correlations(limit=1, outcome="failed")
        assert limited.correlation_id == "op-d"

    @_scenario
    async def test_a_correlation_continued_later_is_summarised_once_by_its_opening(
        self, store: MessageStore
    ) -> None:
        first = sample_record(correlation_id="shared", requested_by="ada", message_type="A")
        await store.append([first])
        await store.append([sample_record(correlation_id="other")])
        second_root = sample_record(
            correlation_id="shared", requested_by="bob", message_type="B", outcome="failed"
        )
        await store.append([second_root])
        summaries = await store.correlations()
        assert [(s.correlation_id, s.message_count) for s in summaries] == [
            ("other", 1),
            ("shared", 2),
        ]
        shared = summaries[1]
        assert (shared.root_message_type, shared.requested_by, shared.outcome) == (
            "A",
            "ada",
            "failed",
        )
        assert await store.correlations(requested_by="bob") == []

    # -- deliveries: a message consumed by other services ----------------------------------

    @_scenario
    async def test_a_received_record_is_stored_only_when_its_message_is_not_stored_yet(
        self, store: MessageStore
    ) -> None:
        placed = sample_record(message_type="orders.OrderPlaced", kind="event", service="orders")
        await store.append([placed])
        as_received = dataclasses.replace(placed, service=None, handlers=(), duration_ms=None)
        reserve = sample_record(parent=placed, message_type="inventory.Reserve", service="inv")
        await store.append([reserve], received=[as_received])  # no collision
        assert await store.get(placed.message_id) == dataclasses.replace(
            placed, position=await _position(store, placed)
        )
        assert _ids(await store.read()) == [placed.message_id, reserve.message_id]
        # Where nobody recorded it, the received record is stored, before its effects.
        shipped = sample_record(correlation_id="op-2", message_type="orders.Shipped")
        note = sample_record(correlation_id="op-2", parent=shipped, message_type="inv.Note")
        await store.append([note], received=[shipped, shipped])
        assert _ids(await store.by_correlation("op-2")) == [shipped.message_id, note.message_id]
        await store.append([], received=[shipped])  # a retry finds it: nothing changes
        assert len(await store.read()) == 4
        with _raises(StoreWriteError):  # received does not excuse a second record
            await store.append([shipped], received=[shipped])

    @_scenario
    async def test_deliveries_read_back_by_message_by_correlation_and_as_a_feed(
        self, store: MessageStore
    ) -> None:
        placed = sample_record(correlation_id="op-1", message_type="orders.OrderPlaced")
        other = sample_record(correlation_id="op-2", message_type="orders.OrderPlaced")
        first = sample_delivery(placed, outcome="failed")
        second = sample_delivery(placed, attempt=2, requested_by="ada", delivery_id=None)
        billing = sample_delivery(placed, group="billing", service=None)
        await store.append([placed, other], deliveries=[first])
        await store.append([], deliveries=[sample_delivery(other)])
        await store.append_deliveries([second, billing])
        mine = await store.deliveries_of([str(placed.message_id)])
        assert [dataclasses.replace(d, position=None) for d in mine] == [first, second, billing]
        positions = [cast(int, d.position) for d in mine]
        assert positions == sorted(positions)
        assert await store.deliveries_by_correlation("op-1") == mine
        assert [d.message_id for d in await store.deliveries_of([other.message_id])] == [
            other.message_id
        ]
        assert len(await store.deliveries_of([placed.message_id, other.message_id])) == 4
        assert await store.deliveries_of([]) == []
        assert await store.deliveries_of([uuid4()]) == []
        assert await store.deliveries_by_correlation("nobody") == []
        feed = await store.read_deliveries()
        assert [d.message_id for d in feed] == [placed.message_id, other.message_id] + [
            placed.message_id
        ] * 2
        assert await store.read_deliveries(after=cast(int, feed[1].position), limit=1) == [feed[2]]
        assert await store.read_deliveries(after=cast(int, feed[-1].position)) == []
        with _raises(ValueError, match="limit"):
            await store.read_deliveries(limit=0)
        round_trip = DeliveryRecord.from_dict(json.loads(json.dumps(mine[0].to_dict())))
        assert round_trip == mine[0]

    @_scenario
    async def test_deliveries_are_written_with_their_batch_or_not_at_all(
        self, store: MessageStore
    ) -> None:
        placed = sample_record(message_type="orders.OrderPlaced")
        await store.append([placed])
        with _raises(StoreWriteError):
            await store.append([placed], deliveries=[sample_delivery(placed)])
        assert await store.deliveries_of([placed.message_id]) == []
        strange = sample_delivery(
            placed, outcome="failed", error_message="caf\udce9\x00", duration_ms=float("nan")
        )
        await store.append_deliveries([strange])
        (stored,) = await store.deliveries_of([placed.message_id])
        assert stored.error_message == "caf\\udce9\\u0000" and stored.duration_ms is None
        assert stored.escaped_fields == ("duration_ms", "error_message")

    @_scenario
    async def test_a_tree_carries_the_deliveries_of_each_message(self, store: MessageStore) -> None:
        flow = _order_flow()
        records = list(flow.values())
        placed = flow["OrderPlaced"]
        deliveries = [
            sample_delivery(placed, outcome="failed"),
            sample_delivery(placed, attempt=2),
            sample_delivery(placed, group="billing", service="billing"),
        ]
        await store.append(records[:2], deliveries=deliveries[:1])
        await store.append(records[2:], deliveries=deliveries[1:])
        (tree,) = await store.build_causation_tree("ext-123")
        by_type = {node.record.message_type: node for _, node in tree.walk()}
        shown = [(d.group, d.attempt, d.outcome) for d in by_type["OrderPlaced"].deliveries]
        assert shown == [("inventory", 1, "failed"), ("inventory", 2, "succeeded"),
                         ("billing", 1, "succeeded")]  # fmt: skip
        assert by_type["PlaceOrder"].deliveries == []
        as_json = json.loads(json.dumps(tree.to_dict()))
        placed_json = as_json["children"][0]
        assert [d["attempt"] for d in placed_json["deliveries"]] == [1, 2, 1]
        assert placed_json["deliveries"][0]["error_type"] == "KeyError"
        assert as_json["deliveries"] == []

    @_scenario
    async def test_a_message_left_unhandled_by_a_group_fails_its_operation(
        self, store: MessageStore
    ) -> None:
        operations = _operations()
        for operation in operations:
            await store.append(operation)
        root_a, placed_a = operations[0]
        root_c = operations[2][0]
        # op-a: a consumer failed once, then handled it: the operation succeeded.
        await store.append_deliveries(
            [sample_delivery(placed_a, outcome="failed"), sample_delivery(placed_a, attempt=2)]
        )
        # op-c: dead-lettered by billing after two failures; inventory handled it.
        dead = [
            sample_delivery(root_c, group="billing", outcome="failed"),
            sample_delivery(root_c, group="billing", attempt=2, outcome="failed"),
            sample_delivery(root_c, group="billing", attempt=2, outcome="dead_lettered"),
            sample_delivery(root_c),
        ]
        await store.append_deliveries(dead)
        summaries = {s.correlation_id: s for s in await store.correlations()}
        assert (summaries["op-a"].outcome, summaries["op-a"].failed_count) == ("succeeded", 0)
        assert (summaries["op-c"].outcome, summaries["op-c"].failed_count) == ("failed", 1)
        assert summaries["op-c"].message_count == 1
        failed = await store.correlations(outcome="failed")
        assert [s.correlation_id for s in failed] == ["op-d", "op-c", "op-b"]
        assert [s.correlation_id for s in await store.correlations(outcome="succeeded")] == ["op-a"]
        # Replayed, then handled: the operation is whole again.
        await store.append_deliveries(
            [
                sample_delivery(root_c, group="billing", attempt=2, outcome="replayed"),
                sample_delivery(root_c, group="billing", attempt=3),
            ]
        )
        assert [s.correlation_id for s in await store.correlations(outcome="succeeded")] == [
            "op-c",
            "op-a",
        ]
        assert root_a.correlation_id == "op-a"

    @_scenario
    async def test_statements_are_refused_by_a_store_that_runs_none(
        self, store: MessageStore
    ) -> None:
        if store.runs_statements:
            return  # the backend's own tests cover what it runs
        record = sample_record()
        with _raises(ValueError, match="runs no SQL statements"):
            await store.append([record], statements=[Statement("SELECT 1")])
        assert await store.get(record.message_id) is None

    # -- read-only ----------------------------------------------------------------------

    @_scenario
    async def test_a_store_opened_read_only_refuses_to_append(self, store: MessageStore) -> None:
        reader = await self.open_again(read_only=True)
        assert reader.read_only and not store.read_only
        with _raises(ReadOnlyStoreError, match="read-only"):
            await reader.append([sample_record()])
        with _raises(ReadOnlyStoreError, match="read-only"):
            await reader.append_deliveries([sample_delivery(sample_record())])
        with _raises(StoreWriteError):  # a ReadOnlyStoreError is a StoreWriteError
            await reader.append([])
        with _raises(ReadOnlyStoreError):
            MessageRecorder(reader)

    @_scenario
    async def test_a_closed_store_refuses_to_be_used(self, store: MessageStore) -> None:
        await store.close()
        with _raises(RuntimeError, match="closed"):
            await store.get(uuid4())
        with _raises(RuntimeError, match="closed"):
            await store.read()


class DurableStoreContract(MessageStoreContract):
    """The contract of a store that outlives its object (a file, a server): what
    :class:`MessageStoreContract` asks, plus reopening, concurrent opens and read-only
    readers of a live store."""

    @_scenario
    async def test_reopening_a_store_keeps_its_records_and_migrates_nothing_twice(
        self, store: MessageStore
    ) -> None:
        record = sample_record()
        await store.append([record])
        await store.close()
        second, third = await self.open_again(), await self.open_again()  # idempotent opens
        for reopened in (second, third):
            found = await reopened.get(record.message_id)
            assert found is not None and _as_given(found) == _as_given(record)
        later = sample_record()
        await second.append([later])
        assert _ids(await third.by_correlation("op-1")) == [record.message_id, later.message_id]

    @_scenario
    async def test_concurrent_opens_of_one_store_all_work(self, store: MessageStore) -> None:
        stores = await asyncio.gather(*(self.open_again() for _ in range(4)))
        records = [sample_record() for _ in stores]
        await asyncio.gather(*(s.append([r]) for s, r in zip(stores, records, strict=True)))
        assert sorted(_ids(await store.by_correlation("op-1"))) == sorted(_ids(records))

    @_scenario
    async def test_opening_read_only_where_no_store_exists_fails_and_creates_nothing(
        self, store: MessageStore
    ) -> None:
        empty = await self.new_location()
        for _ in range(2):  # the first attempt created nothing the second could open
            with _raises(StoreOpenError):
                await self.open(empty, read_only=True)

    @_scenario
    async def test_a_read_only_reader_follows_a_writer(self, store: MessageStore) -> None:
        first = [sample_record(correlation_id="op-r", requested_by="ada")]
        await store.append(first)
        reader = await self.open_again(read_only=True)
        assert _ids(await reader.read()) == _ids(first)
        after = await reader.last_position()
        second = sample_record(correlation_id="op-r", parent=first[0], outcome="failed")
        await store.append([second])
        assert _ids(await reader.read(after)) == [second.message_id]
        (summary,) = await reader.correlations()
        assert (summary.message_count, summary.outcome) == (2, "failed")
        (tree,) = await reader.build_causation_tree("op-r")
        assert [node.record.message_id for _, node in tree.walk()] == _ids([*first, second])

    @_scenario
    async def test_a_reader_following_two_writers_misses_nothing(self, store: MessageStore) -> None:
        """Positions grow in commit order: a feed that resumes after the last position
        it saw never skips a record committed later with a smaller position."""
        writers = [store, await self.open_again()]
        reader = await self.open_again(read_only=True)
        batches = [[sample_record(correlation_id=f"w{n}"), sample_record()] for n in range(60)]
        seen: list[UUID] = []
        writing = True

        async def write(writer: MessageStore, mine: list[list[MessageRecord]]) -> None:
            for batch in mine:
                await writer.append(batch)

        async def follow() -> None:
            after = 0
            while True:
                finished = not writing
                page = await reader.read(after, limit=5)
                seen.extend(_ids(page))
                if page:
                    after = page[-1].position or 0
                elif finished:
                    return
                else:
                    await asyncio.sleep(0.001)

        following = asyncio.ensure_future(follow())
        await asyncio.gather(*(write(w, batches[n::2]) for n, w in enumerate(writers)))
        writing = False
        await following
        written = [record.message_id for batch in batches for record in batch]
        assert len(seen) == len(set(seen)) == len(written)
        assert set(seen) == set(written)
