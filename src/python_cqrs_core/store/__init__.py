"""The durable message store: every dispatched message recorded, every business
operation reconstructible as a causation tree, and the whole store readable as a feed.

::

    from python_cqrs_core import Mediator
    from python_cqrs_core.store import MessageRecorder, open_store

    store = await open_store("sqlite:///cqrs.db")
    recorder = MessageRecorder(store, service="orders").install(bus)
    await bus.send(PlaceOrder(...))          # returns once its records are committed
    for tree in await store.build_causation_tree(correlation_id):
        for depth, node in tree.walk():
            print("  " * depth, node.record.message_type, node.record.outcome)
            for delivery in node.deliveries:     # consumed by other services
                print("  " * depth, "->", delivery.service, delivery.outcome)
    for summary in await store.correlations(limit=20, outcome="failed"):
        print(summary.correlation_id, summary.root_message_type, summary.failed_count)

See ``docs/store.md`` for backends, schema, durability, the feed and the traversal API.
"""

from .backends import (
    BACKENDS,
    DEFAULT_STORE_URL,
    ENTRY_POINT_GROUP,
    STORE_URL_ENV,
    find_backend,
    open_store,
)
from .base import (
    MessageAlreadyRecordedError,
    MessageStore,
    ReadOnlyStoreError,
    Statement,
    StoreOpenError,
    StoreWriteError,
    url_without_password,
)
from .deliveries import DeliveryRecorder
from .feed import MAX_LIMIT, CorrelationSummary, RecordFilter
from .memory import MemoryStore
from .recorder import MessageRecorder
from .records import (
    CausationNode,
    DeliveryOutcome,
    DeliveryRecord,
    HandlerOutcome,
    MessageRecord,
    RecordNotReconstructibleError,
    assemble_trees,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_STORE_URL",
    "ENTRY_POINT_GROUP",
    "MAX_LIMIT",
    "STORE_URL_ENV",
    "CausationNode",
    "CorrelationSummary",
    "DeliveryOutcome",
    "DeliveryRecord",
    "DeliveryRecorder",
    "HandlerOutcome",
    "MemoryStore",
    "MessageAlreadyRecordedError",
    "MessageRecord",
    "MessageRecorder",
    "MessageStore",
    "ReadOnlyStoreError",
    "RecordFilter",
    "RecordNotReconstructibleError",
    "Statement",
    "StoreOpenError",
    "StoreWriteError",
    "assemble_trees",
    "find_backend",
    "open_store",
    "url_without_password",
]
