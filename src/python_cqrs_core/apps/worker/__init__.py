"""Running a service's consumers and outbox relay: the worker, and dead letters an
operator can act on.

- :class:`Worker` (:mod:`.worker`): what a service module exposes, a declaration of
  its consumers (:class:`Subscription`) and its outbox relay; ``cqrs worker
  module:attribute`` runs it and stops it cleanly on ``SIGTERM``;
- :func:`load_target` and :func:`open_worker` (:mod:`.loading`): how that name becomes a
  running worker (a ``Worker``, or a factory making one in the worker's event loop);
- :mod:`.dead_letters`: list, find and replay dead letters, the replay recorded in the
  chain as a :class:`DeadLetterReplayed` event (what ``cqrs dlq`` runs);
- :mod:`.metrics`: the worker's metrics for Prometheus (the ``[prometheus]`` extra;
  imported on its own, so this package needs no extra).

See ``docs/services.md``, sections "Worker" and "Dead letters".
"""

from .dead_letters import (
    REPLAY_SERVICE,
    AmbiguousDeadLetterError,
    DeadLetterIdentity,
    DeadLetterReplayed,
    Replay,
    all_dead_letters,
    find_dead_letter,
    identity_of,
    replay_dead_letter,
)
from .loading import WorkerLoadError, load_target, open_worker
from .worker import ConsumerStatus, RelayStatus, Subscription, Worker, WorkerStatus

__all__ = [
    "REPLAY_SERVICE",
    "AmbiguousDeadLetterError",
    "ConsumerStatus",
    "DeadLetterIdentity",
    "DeadLetterReplayed",
    "RelayStatus",
    "Replay",
    "Subscription",
    "Worker",
    "WorkerLoadError",
    "WorkerStatus",
    "all_dead_letters",
    "find_dead_letter",
    "identity_of",
    "load_target",
    "open_worker",
    "replay_dead_letter",
]
