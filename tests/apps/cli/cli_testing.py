"""Helpers of the ``cqrs`` command line tests: run the CLI in-process, fill a store with
the real mediator and recorder, find nodes and lines in what it printed, and reach the
local PostgreSQL service."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
from typer.testing import CliRunner, Result

from postgres_testing import PG_ADMIN_URL
from python_cqrs_core import correlation_scope, uuid4
from python_cqrs_core.apps.cli._demo import DemoResult, PlaceOrder, build_shop, run_demo
from python_cqrs_core.apps.cli.commands import app
from python_cqrs_core.store import CausationNode, MessageRecord, MessageRecorder, open_store

T = TypeVar("T")
SHARED_CHECKOUT = "checkout-42"
ORPHAN_CORRELATION = "imported-7"
GUIDES = " │├└─"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def cqrs(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """Invoke the CLI in-process; CQRS_STORE_URL and COLUMNS are unset unless ``env``
    sets them."""
    return CliRunner().invoke(
        app, list(args), env={"CQRS_STORE_URL": None, "COLUMNS": None, **(env or {})}
    )


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"  # an absolute path gives the four-slash form


async def populate(url: str) -> DemoResult:
    """The demo's two requests, two root commands under one correlation id, and one
    record whose cause is not in the store."""
    demo = await run_demo(url)
    async with await open_store(url) as store:
        shop = build_shop()
        recorder = MessageRecorder(store).install(shop.bus)
        async with correlation_scope(SHARED_CHECKOUT, requested_by="user:carol"):
            for sku in ("SKU-KEYBOARD", "SKU-MONITOR"):
                await shop.bus.send(
                    PlaceOrder(
                        order_id=f"ord-{uuid4().hex[:8]}", customer_id="cus-carol", sku=sku,
                        quantity=1, unit_price_cents=100, notify_by="email",
                    )
                )  # fmt: skip
        await recorder.close()
        now = datetime.now(UTC)
        await store.append(
            [
                MessageRecord(
                    message_id=uuid4(), kind="event", message_type="payments.PaymentCaptured",
                    correlation_id=ORPHAN_CORRELATION, causation_id=str(uuid4()),
                    requested_by=None, requested_at=now, recorded_at=now,
                    payload={"amount_cents": 8900}, outcome="succeeded", handlers=(),
                    error_type=None, error_message=None, duration_ms=None,
                    headers={"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"},
                )
            ]
        )  # fmt: skip
    return demo


async def stored(url: str, method: str, *args: Any) -> Any:
    async with await open_store(url, read_only=True) as store:
        return await getattr(store, method)(*args)


def node(tree: CausationNode, class_name: str) -> CausationNode:
    """The one node of a tree whose recorded type name ends with ``class_name``."""
    (found,) = [n for _, n in tree.walk() if n.record.message_type.rsplit(".", 1)[-1] == class_name]
    return found


def line_of(output: str, record: MessageRecord) -> str:
    (line,) = [line for line in output.splitlines() if record.message_id.hex[:8] in line]
    return line


def without_guides(line: str) -> str:
    return line.lstrip(GUIDES)


def rewrite_rows(path: Path, message_id: UUID, **columns: Any) -> None:
    """Overwrite columns of one stored row behind the store's back, as a hostile or
    broken producer (or a hand-edited file) could have written them."""
    assignments = ", ".join(f"{name} = ?" for name in columns)
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"UPDATE cqrs_messages SET {assignments} WHERE message_id = ?",
            [*columns.values(), str(message_id)],
        )
    conn.close()


def postgres_url(database: str, password: str | None = None) -> str:
    """A URL of ``database`` on the test server (with ``password`` in it, if given:
    the local server trusts its clients and ignores it)."""
    parts = urlsplit(PG_ADMIN_URL)
    user = parts.username or "postgres"
    credentials = user if password is None else f"{user}:{password}"
    return f"postgresql://{credentials}@{parts.hostname}:{parts.port or 5432}/{database}"


async def tables_of(database: str) -> list[str]:
    conn = await asyncpg.connect(postgres_url(database), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
    finally:
        await conn.close()
    return [row["name"] for row in rows]
