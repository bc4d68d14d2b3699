"""Stores shared between OS processes, and a writer killed mid-stream.

The writers are real child processes running ``chain_writer.py`` (this folder).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from store_testing import create_schema

from python_cqrs_core.store import open_store

WRITER = str(Path(__file__).with_name("chain_writer.py"))
CHAIN = ["shop.PlaceOrder", "shop.OrderPlaced", "shop.ReserveStock"]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CQRS_STORE_URL", None)
    return env


async def test_two_processes_write_one_postgres_store_at_once_and_read_each_other(
    postgres_url: str, tmp_path: Path
) -> None:
    schema = await create_schema(postgres_url)
    files = [tmp_path / "a.ids", tmp_path / "b.ids"]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            WRITER,
            "exchange",
            postgres_url,
            schema,
            "200",
            str(mine),
            str(other),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(),
        )
        for mine, other in (files, files[::-1])
    ]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(p.communicate() for p in processes)), timeout=90
    )
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
        assert out.decode().strip() == "read 200 chains of the other process"

    store = await open_store(postgres_url, server_settings={"search_path": schema})
    try:
        written = [cid for f in files for cid in f.read_text().split()]
        assert len(set(written)) == 400
        for correlation_id in written:
            (tree,) = await store.build_causation_tree(correlation_id)
            assert [n.record.message_type for _, n in tree.walk()] == CHAIN
    finally:
        await store.close()


async def test_a_sqlite_writer_killed_mid_stream_keeps_every_dispatch_that_returned(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        WRITER,
        "stream",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    assert process.stdout is not None
    returned: list[str] = []
    try:
        while len(returned) < 300:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
            assert line.endswith(b"\n"), (await process.stderr.read()).decode()  # type: ignore[union-attr]
            returned.append(line.decode().strip())
    finally:
        process.send_signal(signal.SIGKILL)  # mid-stream: no cleanup, no final commit
    rest, _ = await process.communicate()
    assert process.returncode == -signal.SIGKILL
    # Lines printed before the kill: complete ones are dispatches that had returned.
    returned += [line for line in rest.decode().split("\n")[:-1] if line]

    store = await open_store(url)
    try:
        for correlation_id in returned:
            records = await store.by_correlation(correlation_id)
            assert [r.message_type for r in records] == CHAIN, correlation_id
        recent = await store.correlations(limit=len(returned) + 10)
        assert {summary.correlation_id for summary in recent} >= set(returned)
    finally:
        await store.close()
