"""The durable message store: every dispatched message recorded, every business
operation reconstructible as a causation tree.

::

    from python_cqrs_core import Mediator
    from python_cqrs_core.store import MessageRecorder, open_store

    store = await open_store("sqlite:///cqrs.db")
    recorder = MessageRecorder(store).install(bus)
    await bus.send(PlaceOrder(...))          # returns once its records are committed
    for tree in await store.build_causation_tree(correlation_id):
        for depth, node in tree.walk():
            print("  " * depth, node.record.message_type, node.record.outcome)

See ``docs/store.md`` for backends, schema, durability and the traversal API.
"""

from .base import (
    DEFAULT_STORE_URL,
    STORE_URL_ENV,
    MessageAlreadyRecordedError,
    MessageStore,
    StoreOpenError,
    StoreWriteError,
    open_store,
    url_without_password,
)
from .memory import MemoryStore
from .recorder import MessageRecorder
from .records import CausationNode, HandlerOutcome, MessageRecord, assemble_trees

__all__ = [
    "DEFAULT_STORE_URL",
    "STORE_URL_ENV",
    "CausationNode",
    "HandlerOutcome",
    "MemoryStore",
    "MessageAlreadyRecordedError",
    "MessageRecord",
    "MessageRecorder",
    "MessageStore",
    "StoreOpenError",
    "StoreWriteError",
    "assemble_trees",
    "open_store",
    "url_without_password",
]
