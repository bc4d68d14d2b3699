"""A relay process that dies by SIGKILL right after the broker took an entry, before
the entry is marked delivered (run by ``test_outbox_faults.py``)::

    python relay_process.py POSTGRES_URL SCHEMA REDIS_URL PREFIX
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping

from python_cqrs_core.outbox import OutboxRelay
from python_cqrs_core.outbox.postgres import PostgresOutbox
from python_cqrs_core.transports.redis import RedisTransport


class DiesAfterPublishing(RedisTransport):
    async def publish(self, destination: str, headers: Mapping[str, str], body: bytes) -> str:
        broker_id = await super().publish(destination, headers, body)
        os.kill(os.getpid(), signal.SIGKILL)
        return broker_id


async def main(postgres_url: str, schema: str, redis_url: str, prefix: str) -> None:
    storage = await PostgresOutbox.connect(
        postgres_url, migrate=False, server_settings={"search_path": schema}
    )
    transport = DiesAfterPublishing.from_url(redis_url, prefix=prefix)
    await OutboxRelay(storage, transport, lease=1.0).run_once()
    raise SystemExit("the relay survived its publish")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
