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


# -- durability="async": what a program that never closes the recorder leaves -------------


async def run_background_writer(url: str, schema: str, ending: str) -> tuple[int, str]:
    """Run a child recording 2,000 chains in the background and ending without closing
    anything; its exit status and what it logged."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        WRITER,
        "background",
        url,
        schema,
        "2000",
        ending,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_env(),
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def count_records(url: str, schema: str) -> tuple[int, int]:
    """How many records a store holds, and how many operations of three records."""
    options = {} if schema == "-" else {"server_settings": {"search_path": schema}}
    store = await open_store(url, read_only=True, **options)
    try:
        summaries = await store.correlations(limit=10_000)
        return await store.last_position(), sum(s.message_count == 3 for s in summaries)
    finally:
        await store.close()


async def test_background_writes_are_written_when_asyncio_run_returns_without_close_on_sqlite(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'background.db'}"
    status, logged = await run_background_writer(url, "-", "asyncio.run")
    assert status == 0, logged
    assert await count_records(url, "-") == (6000, 2000)
    assert "never written" not in logged


async def test_background_writes_are_written_when_asyncio_run_returns_without_close_on_postgres(
    postgres_url: str,
) -> None:
    schema = await create_schema(postgres_url)
    status, logged = await run_background_writer(postgres_url, schema, "asyncio.run")
    assert status == 0, logged
    assert await count_records(postgres_url, schema) == (6000, 2000)
    assert "never written" not in logged


async def test_background_writes_of_a_loop_left_open_are_written_at_exit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'left-open.db'}"
    status, logged = await run_background_writer(url, "-", "left-open")
    assert status == 0, logged
    assert await count_records(url, "-") == (6000, 2000)


async def test_background_writes_a_closed_loop_never_made_are_reported_at_error_with_the_count(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'closed.db'}"
    status, logged = await run_background_writer(url, "-", "closed")
    assert status == 0, logged
    written, _ = await count_records(url, "-")
    assert written < 6000  # the loop closed with writes queued: they cannot be made
    (report,) = [line for line in logged.splitlines() if "never written" in line]
    assert f"{6000 - written} record(s) queued" in report


async def test_the_loss_report_at_exit_names_the_store_without_its_password(
    postgres_url: str,
) -> None:
    schema = await create_schema(postgres_url)
    secret = "s3cret-Pa55"
    url = postgres_url.replace("://postgres@", f"://postgres:{secret}@")  # trust: any works
    status, logged = await run_background_writer(url, schema, "closed")
    assert status == 0, logged
    assert "never written" in logged and "postgres:***@" in logged
    assert secret not in logged
