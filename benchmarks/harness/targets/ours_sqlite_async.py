"""``ours_sqlite`` with ``durability="async"``: records written in the background.

Same chain, same store, same two records per op, but the recorder queues the records
and a background task writes them in batches (one SQLite transaction per batch)
instead of each send waiting for its own commit.  The harness awaits one send after
another and none of them suspends, so the background writer would only run when some
later job yields; to keep every record's write on this target's clock, the op awaits
``recorder.flush()`` after every ``FLUSH_EVERY`` sends (one commit per that many
chains, as concurrent requests of a busy server would share one).  At most
``FLUSH_EVERY - 1`` chains' records are left queued when a timed batch ends.

Each op builds a new command (one record per message id), as in ``ours_sqlite``.
"""

from __future__ import annotations

from ._common import EMAIL, NAME, new_calls
from .ours import RegisterUser
from .ours_sqlite import recorded_chain, temporary_store

LIBRARY = "python-cqrs-core"
FLUSH_EVERY = 100
NOTES = (
    f"ours chain + MessageRecorder(durability='async') on sqlite:///, flush every "
    f"{FLUSH_EVERY} ops (one commit per {FLUSH_EVERY} chains); new command per op"
)
CALLS = new_calls()


async def chain_setup():
    bus, recorder = recorded_chain(await temporary_store(), CALLS, durability="async")
    send, flush = bus.send, recorder.flush
    sent = 0

    async def op():
        nonlocal sent
        result = await send(RegisterUser(name=NAME, email=EMAIL))
        sent += 1
        if sent % FLUSH_EVERY == 0:
            await flush()
        return result

    return op
