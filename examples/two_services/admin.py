"""What ``run.sh`` needs besides the services: databases, a free port, Redis cleanup.

    python admin.py create-databases ADMIN_URL NAME...   # CREATE DATABASE each
    python admin.py drop-databases ADMIN_URL NAME...     # DROP DATABASE ... WITH (FORCE)
    python admin.py database-url ADMIN_URL NAME          # the URL of NAME on that server
    python admin.py free-port                            # a free TCP port of 127.0.0.1
    python admin.py delete-keys REDIS_URL PREFIX         # every key under PREFIX
    python admin.py crossings CQRS_TRACE_JSON_FILE       # the services a chain went through

Only the standard library, asyncpg and redis (the example's own dependencies), so the
script runs wherever the example does, without psql or redis-cli.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis


def database_url(admin_url: str, name: str) -> str:
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


async def on_server(admin_url: str, statements: list[str]) -> None:
    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def quoted(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise SystemExit(f"not a plain database name: {name!r}")
    return f'"{name}"'


async def delete_keys(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def crossings(trace: list[dict[str, Any]]) -> list[str]:
    """The services a ``cqrs trace --json`` chain went through, in causal order (a
    depth-first walk of its trees), each stay once: ``["orders", "inventory",
    "orders"]`` is a chain that crossed into inventory and came back."""
    path: list[str] = []
    stack = list(reversed(trace))
    while stack:
        node = stack.pop()
        service = node.get("service") or "?"
        if not path or path[-1] != service:
            path.append(service)
        stack.extend(reversed(node.get("children", ())))
    return path


def main(command: str, *args: str) -> None:
    if command == "create-databases":
        admin, *names = args
        asyncio.run(on_server(admin, [f"CREATE DATABASE {quoted(n)}" for n in names]))
    elif command == "drop-databases":
        admin, *names = args
        drops = [f"DROP DATABASE IF EXISTS {quoted(n)} WITH (FORCE)" for n in names]
        asyncio.run(on_server(admin, drops))
    elif command == "database-url":
        print(database_url(*args))
    elif command == "free-port":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            print(probe.getsockname()[1])
    elif command == "delete-keys":
        asyncio.run(delete_keys(*args))
    elif command == "crossings":
        with open(args[0]) as file:
            print(" ".join(crossings(json.load(file))))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
