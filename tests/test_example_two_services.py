"""examples/two_services/run.sh: two services as separate processes, one chain across
them, printed by ``cqrs trace``; everything it started is stopped and dropped after,
whether it succeeded or not."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from postgres_testing import PG_ADMIN_URL
from service_testing import REDIS_URL

RUN_SH = Path(__file__).resolve().parent.parent / "examples" / "two_services" / "run.sh"


def run(**environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUN_SH)],
        env={**os.environ, "PG_ADMIN_URL": PG_ADMIN_URL, "REDIS_URL": REDIS_URL, **environment},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def run_id(output: str) -> str:
    found = re.search(r"Redis keys under (twosvc_\w+):", output)
    assert found is not None, output
    return found.group(1)


async def leftovers(run: str) -> tuple[list[str], list[bytes]]:
    """The databases and Redis keys of the run that are still there."""
    connection = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{run}%"
        )
    finally:
        await connection.close()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{run}:*", count=1000)]
    finally:
        await client.aclose()
    return [row["datname"] for row in rows], keys


def processes_of(run: str) -> list[int]:
    """Processes still running with the run's Redis prefix in their environment."""
    marker = f"REDIS_PREFIX={run}:".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_one_request_makes_one_chain_across_both_services_and_everything_is_cleaned_up():
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    lines = output.split("== cqrs trace ")[1].split("== the chain")[0].splitlines()[2:]
    nodes = [line for line in lines if "⇢" not in line]
    services = [line.split("[")[1].split("]")[0] for line in nodes]
    assert services == ["orders", "orders", "inventory", "inventory", "orders", "orders"]
    assert "OrderConfirmed" in nodes[-1]
    assert "by ada@example.com" in nodes[0]
    # the two events were delivered to the other service, which handled them
    deliveries = [line.split("⇢ ")[1].split(" (")[0] for line in lines if "⇢" in line]
    assert deliveries == ["inventory", "orders"]
    assert "== the chain crossed both services: orders -> inventory -> orders" in output
    run_name = run_id(output)
    assert asyncio.run(leftovers(run_name)) == ([], [])
    assert processes_of(run_name) == []


def test_a_chain_that_does_not_come_back_fails_and_still_cleans_up():
    result = run(QUANTITY="200", TIMEOUT="3")  # more than the stock: inventory fails
    assert result.returncode == 1
    assert "FAILED: the chain's OrderConfirmed did not happen within 3 s" in result.stdout
    so_far = result.stdout.split("(so far)")[1]
    assert "OrderPlaced" in so_far and "ReserveInventory" in so_far
    assert "OutOfStockError: not 200 of BOOK-1 left" in so_far
    assert "== orders-worker.log" in result.stdout  # the logs are shown on failure
    run_name = run_id(result.stdout)
    assert asyncio.run(leftovers(run_name)) == ([], [])
    assert processes_of(run_name) == []
