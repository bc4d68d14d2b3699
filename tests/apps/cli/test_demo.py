"""The runnable demo: two concurrent order requests recorded in a store and read back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from python_cqrs_core import message_type_name
from python_cqrs_core.apps.cli import _demo
from python_cqrs_core.apps.cli._demo import (
    GATEWAY_LATENCY_S,
    DemoRequest,
    DemoResult,
    OutOfStockError,
    PlaceOrder,
    SmsGatewayError,
    build_shop,
    run_demo,
)
from python_cqrs_core.apps.cli.commands import command_to_type
from python_cqrs_core.store import CausationNode, open_store
from python_cqrs_core.testing import assert_chain

CQRS = Path(sys.executable).with_name("cqrs")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path gives the four-slash form


def handlers_of(tree: CausationNode) -> list[tuple[str, ...]]:
    """The handlers that ran for each message of a tree, depth first."""
    return [tuple(h.handler for h in node.record.handlers) for _, node in tree.walk()]


def request_of(result: DemoResult, user: str) -> DemoRequest:
    (request,) = [r for r in result.requests if r.requested_by == user]
    return request


def find(tree: CausationNode, class_name: str) -> CausationNode:
    """The one node of a tree whose recorded type name ends with ``class_name``."""
    (node,) = [n for _, n in tree.walk() if n.record.message_type.rsplit(".", 1)[-1] == class_name]
    return node


async def test_each_request_is_one_tree_under_its_own_correlation_id(tmp_path: Path) -> None:
    result = await run_demo(sqlite_url(tmp_path / "demo.db"))

    assert [r.requested_by for r in result.requests] == ["user:alice", "user:bob"]
    assert len({r.correlation_id for r in result.requests}) == 2
    for request in result.requests:
        assert request.correlation_id.startswith("req-")
        (tree,) = request.trees
        records = [node.record for _, node in tree.walk()]
        assert {r.correlation_id for r in records} == {request.correlation_id}
        assert {r.requested_by for r in records} == {request.requested_by}
        assert tree.record.causation_id is None


def test_the_demo_messages_have_stable_type_names_that_read_well() -> None:
    names = [message_type_name(getattr(_demo, name)) for name in (
        "PlaceOrder", "OrderPlaced", "ReserveInventory", "InventoryReserved",
        "NotifyCustomer", "CustomerNotified",
    )]  # fmt: skip
    assert names == [
        "demo_shop.PlaceOrder", "demo_shop.OrderPlaced", "demo_shop.ReserveInventory",
        "demo_shop.InventoryReserved", "demo_shop.NotifyCustomer", "demo_shop.CustomerNotified",
    ]  # fmt: skip


async def test_the_email_request_records_the_whole_order_flow(tmp_path: Path) -> None:
    result = await run_demo(sqlite_url(tmp_path / "demo.db"))

    alice = request_of(result, "user:alice")
    assert alice.error is None
    assert_chain(
        alice.trees,
        """
        PlaceOrder  !succeeded
        └── OrderPlaced  !succeeded
            ├── ReserveInventory  !succeeded
            │   └── InventoryReserved  !succeeded
            └── NotifyCustomer  !succeeded
                └── CustomerNotified  !succeeded
        """,
        correlation_id=alice.correlation_id,
    )
    projection = ("OrderTimelineProjection",)
    assert handlers_of(alice.trees[0]) == [
        ("PlaceOrderHandler",),
        ("ReserveInventoryWhenOrderPlaced", "NotifyCustomerWhenOrderPlaced"),
        ("ReserveInventoryHandler",),
        projection,
        ("NotifyCustomerHandler",),
        projection,
    ]


async def test_the_sms_failure_is_recorded_and_reaches_the_caller_unchanged(
    tmp_path: Path,
) -> None:
    result = await run_demo(sqlite_url(tmp_path / "demo.db"))

    bob = request_of(result, "user:bob")
    assert isinstance(bob.error, SmsGatewayError)
    # The failure propagated up through the event handler and the root command, while
    # the inventory branch, which ran first, is recorded as it happened; NotifyCustomer
    # caused nothing: its handler never got to CustomerNotified.
    assert_chain(
        bob.trees,
        """
        PlaceOrder  !failed
        └── OrderPlaced  !failed
            ├── ReserveInventory  !succeeded
            │   └── InventoryReserved  !succeeded
            └── NotifyCustomer  !failed
        """,
        correlation_id=bob.correlation_id,
    )
    notify = find(bob.trees[0], "NotifyCustomer")
    assert notify.record.error_type == "SmsGatewayError"
    assert notify.record.error_message == str(bob.error)


async def test_the_two_requests_run_concurrently(tmp_path: Path) -> None:
    result = await run_demo(sqlite_url(tmp_path / "demo.db"))

    alice, bob = (request_of(result, user).trees[0].record for user in ("user:alice", "user:bob"))
    # Each request started before the other one's root command finished.
    assert bob.requested_at < alice.recorded_at
    assert alice.requested_at < bob.recorded_at


async def test_handler_durations_include_the_simulated_gateway_latency(tmp_path: Path) -> None:
    result = await run_demo(sqlite_url(tmp_path / "demo.db"))

    notify = find(request_of(result, "user:alice").trees[0], "NotifyCustomer").record
    (handler,) = notify.handlers
    assert handler.duration_ms >= GATEWAY_LATENCY_S * 1000 * 0.9
    assert notify.duration_ms is not None and notify.duration_ms >= handler.duration_ms


async def test_the_trees_are_read_back_from_the_store(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "demo.db")
    result = await run_demo(url)

    async with await open_store(url) as store:
        for request in result.requests:
            stored = await store.build_causation_tree(request.correlation_id)
            assert [t.to_dict() for t in stored] == [t.to_dict() for t in request.trees]


async def test_running_the_demo_twice_adds_two_more_trees(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "demo.db")
    first = await run_demo(url)
    second = await run_demo(url)

    ids = {r.correlation_id for r in first.requests + second.requests}
    assert len(ids) == 4
    async with await open_store(url) as store:
        recent = await store.correlations(10)
        assert {summary.correlation_id for summary in recent} == ids
        for request in first.requests:  # the first run's trees are untouched
            assert len(await store.build_causation_tree(request.correlation_id)) == 1


async def test_the_shop_works_without_a_store() -> None:
    # The demo domain is ordinary application code: the store only observes it.
    shop = build_shop()
    await shop.bus.send(
        PlaceOrder(
            order_id="ord-1", customer_id="cus-1", sku="SKU-MONITOR", quantity=3,
            unit_price_cents=23900, notify_by="email",
        )
    )  # fmt: skip

    assert shop.inventory.stock["SKU-MONITOR"] == 1
    assert shop.email.sent == ["cus-1: Thank you! Order ord-1 is confirmed."]
    assert shop.timeline == {"ord-1": ["InventoryReserved", "CustomerNotified"]}
    assert shop.orders.orders["ord-1"].quantity == 3


async def test_an_order_for_more_than_the_shelf_holds_is_refused() -> None:
    shop = build_shop()
    with pytest.raises(OutOfStockError, match="SKU-MONITOR: 5 requested, 4 on the shelf"):
        await shop.bus.send(
            PlaceOrder(
                order_id="ord-2", customer_id="cus-2", sku="SKU-MONITOR", quantity=5,
                unit_price_cents=23900, notify_by="email",
            )
        )  # fmt: skip
    assert shop.inventory.stock["SKU-MONITOR"] == 4
    # The other subscriber of OrderPlaced still ran (the mediator's event semantics).
    assert shop.email.sent == ["cus-2: Thank you! Order ord-2 is confirmed."]


def _env(*, cqrs_on_path: bool) -> dict[str, str]:
    """The environment of a fresh shell: no store chosen, and ``cqrs`` on the PATH only
    if asked (after ``make demo`` it is not: only ``.venv/bin/cqrs`` is)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CQRS_STORE_URL", "COLUMNS")}
    folders = [
        folder
        for folder in env.get("PATH", "").split(os.pathsep)
        if folder and not (Path(folder) / "cqrs").exists()
    ]
    if cqrs_on_path:
        folders.insert(0, str(CQRS.parent))
    env["PATH"] = os.pathsep.join(folders)
    return env


def _shell(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``line`` as the user would paste it into a shell."""
    return subprocess.run(
        ["/bin/sh", "-c", line],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=60, check=False,
    )  # fmt: skip


def _hints(out: str) -> list[str]:
    """The commands the demo's closing hint prints, without their comments."""
    start = out.index("See them again with")
    return [line.split("#")[0].strip() for line in out[start:].splitlines()[1:] if line.strip()]


def test_cqrs_demo_prints_both_trees_and_commands_that_work_as_typed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "demo.db")
    env = _env(cqrs_on_path=False)
    demo = _shell(f"{CQRS} demo --store {url}", tmp_path, env)

    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert "Traceback" not in out + demo.stderr
    correlation_ids = re.findall(r"^correlation (req-[0-9a-f]{12})", out, flags=re.M)
    assert len(correlation_ids) == 2
    assert out.count("command PlaceOrder ") == 2
    assert "the request failed with SmsGatewayError: sms-gateway.internal answered 503" in out
    assert re.search(r"✗ command NotifyCustomer [0-9a-f]{8} .*SmsGatewayError", out)
    hints = _hints(out)
    assert hints[:2] == [f"{CQRS} trace {cid} --store {url}" for cid in correlation_ids]
    assert [hint.split()[1] for hint in hints[2:]] == ["show", "causes"]

    # Each printed command works as printed, in the same shell.
    trace = _shell(hints[1], tmp_path, env)
    assert trace.returncode == 0, trace.stderr
    assert f"correlation {correlation_ids[1]}" in trace.stdout
    assert "SmsGatewayError" in trace.stdout
    for hint in hints[2:]:
        again = _shell(hint, tmp_path, env)
        assert again.returncode == 0, (hint, again.stderr)
        assert "NotifyCustomer" in again.stdout


def test_after_make_demo_the_hint_names_the_venv_cqrs_relative_to_here(tmp_path: Path) -> None:
    # make demo runs .venv/bin/cqrs from the repository's root, without cqrs on the PATH.
    root = CQRS.parent.parent.parent
    env = _env(cqrs_on_path=False)
    demo = _shell(f".venv/bin/cqrs demo --store {sqlite_url(tmp_path / 'demo.db')}", root, env)

    assert demo.returncode == 0, demo.stderr
    hints = _hints(demo.stdout)
    assert all(hint.startswith(".venv/bin/cqrs ") for hint in hints), hints
    again = _shell(hints[0], root, env)
    assert again.returncode == 0, again.stderr


def test_with_cqrs_on_the_path_the_hint_says_cqrs(tmp_path: Path) -> None:
    env = _env(cqrs_on_path=True)
    demo = _shell(f"cqrs demo --store {sqlite_url(tmp_path / 'demo.db')}", tmp_path, env)

    assert demo.returncode == 0, demo.stderr
    hints = _hints(demo.stdout)
    assert all(hint.startswith("cqrs ") for hint in hints), hints
    assert _shell(hints[0], tmp_path, env).returncode == 0


def test_on_the_default_store_the_hint_needs_no_store_option(tmp_path: Path) -> None:
    env = _env(cqrs_on_path=False)
    demo = _shell(f"{CQRS} demo", tmp_path, env)

    assert demo.returncode == 0, demo.stderr
    assert (tmp_path / "cqrs.db").exists()
    hints = _hints(demo.stdout)
    assert not any("--store" in hint for hint in hints)
    assert _shell(hints[0], tmp_path, env).returncode == 0


def test_a_store_path_with_a_space_is_quoted_in_the_hint(tmp_path: Path) -> None:
    folder = tmp_path / "my demo"
    folder.mkdir()
    env = _env(cqrs_on_path=False)
    demo = _shell(f"{CQRS} demo --store 'sqlite:///{folder}/demo.db'", tmp_path, env)

    assert demo.returncode == 0, demo.stderr
    hint = _hints(demo.stdout)[0]
    assert hint.endswith(f"--store 'sqlite:///{folder}/demo.db'")
    assert _shell(hint, tmp_path, env).returncode == 0


@pytest.mark.parametrize(
    ("program", "cwd", "on_path", "typed"),
    [
        ("/repo/.venv/bin/cqrs", "/repo", None, ".venv/bin/cqrs"),
        (".venv/bin/cqrs", "/repo", None, ".venv/bin/cqrs"),
        ("/repo/.venv/bin/cqrs", "/repo", "/usr/local/bin/cqrs", ".venv/bin/cqrs"),
        ("/repo/.venv/bin/cqrs", "/repo", "/repo/.venv/bin/cqrs", "cqrs"),
        ("/repo/.venv/bin/cqrs", "/repo/docs", None, "/repo/.venv/bin/cqrs"),
        ("/repo/cqrs", "/repo", None, "./cqrs"),
        ("/opt/my tools/cqrs", "/home/ada", None, "'/opt/my tools/cqrs'"),
        ("/usr/bin/pytest", "/repo", None, "cqrs"),
    ],
)
def test_command_to_type_is_what_runs_this_cqrs_from_here(
    program: str, cwd: str, on_path: str | None, typed: str
) -> None:
    assert command_to_type(program, cwd=Path(cwd), on_path=on_path) == typed
