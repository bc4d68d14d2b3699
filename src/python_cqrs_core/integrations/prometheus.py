"""Prometheus metrics for every dispatched message, as one mediator middleware.

Install the ``[prometheus]`` extra (``prometheus_client``), then::

    from prometheus_client import CollectorRegistry
    from python_cqrs_core.integrations.prometheus import PrometheusMiddleware

    registry = CollectorRegistry()
    bus.add_middleware(PrometheusMiddleware(registry))

Three metrics, labelled by ``kind`` (command/query/event), ``type`` (the stable message type
name) and, for the first two, ``outcome`` (``success`` or ``error``):

==========================================  =========  ====================================
metric                                      type       measures
==========================================  =========  ====================================
``cqrs_messages_total``                     counter    messages handled
``cqrs_message_duration_seconds``           histogram  handling time, from dispatch to the
                                                       handler's return (``perf_counter``)
``cqrs_message_queue_delay_seconds``        histogram  ``requested_at`` to dispatch: how
                                                       long the message waited to be handled
==========================================  =========  ====================================

The guide measures duration from ``requested_at``; that mixes the wait before dispatch
with the handling itself, so the two are separate histograms here.

Ids (``request_id``, ``correlation_id``) are never labels: every value creates a new
time series.  ``requested_by`` is a label only with ``requested_by_label=True`` (the
guide's "commands per user"); do that only when the set of callers is small and
bounded (service accounts, tenants), never for end-user emails.

Creating the middleware twice on one registry (two mediators, a test suite, a reload)
reuses the collectors already registered under the same names instead of raising
``Duplicated timeseries``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from ..mediator import CallNext
from ..messages import BaseMessage
from ..names import METRIC_DURATION, METRIC_MESSAGES, METRIC_QUEUE_DELAY

__all__ = [
    "DEFAULT_DURATION_BUCKETS",
    "DEFAULT_QUEUE_DELAY_BUCKETS",
    "PrometheusMiddleware",
]

DEFAULT_DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Handling time buckets, from 0.5 ms (in-process handlers are fast) to 10 s."""

DEFAULT_QUEUE_DELAY_BUCKETS: Final[tuple[float, ...]] = (
    0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0,
)  # fmt: skip
"""Queue delay buckets: immediate dispatch (~ms) to messages replayed an hour later."""

_perf = time.perf_counter
_now = time.time


def _collector(
    registry: CollectorRegistry,
    metric_type: type[Counter] | type[Histogram],
    name: str,
    documentation: str,
    labelnames: tuple[str, ...],
    namespace: str,
    **options: Any,
) -> Any:
    """Create and register a metric, or return the one ``registry`` already holds.

    prometheus_client raises ``ValueError`` on a second registration of a name; the
    registry keeps its collectors by name (a private mapping, stable since 0.4), so
    the existing one is returned if it has the same type and labels.
    """
    try:
        return metric_type(
            name, documentation, labelnames, namespace=namespace, registry=registry, **options
        )
    except ValueError:
        full_name = f"{namespace}_{name}" if namespace else name
        existing = getattr(registry, "_names_to_collectors", {}).get(full_name)
        if (
            isinstance(existing, metric_type)
            and tuple(getattr(existing, "_labelnames", ())) == labelnames
        ):
            return existing
        raise ValueError(
            f"{full_name!r} is already registered on this registry with another type or "
            f"other labels than {list(labelnames)} (requested_by_label differs?)"
        ) from None


class PrometheusMiddleware:
    """Count and time every message the mediator dispatches.

    ``registry`` defaults to prometheus_client's global ``REGISTRY`` (what
    ``start_http_server`` and ``make_asgi_app`` expose); pass your own
    :class:`~prometheus_client.CollectorRegistry` in tests and multi-app processes.
    ``namespace`` prefixes every metric name (``"shop"`` gives ``shop_cqrs_messages_total``).

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> metrics = PrometheusMiddleware(registry)
    >>> sorted(m.name for m in registry.collect())
    ['cqrs_message_duration_seconds', 'cqrs_message_queue_delay_seconds', 'cqrs_messages']

    For an event, the middleware wraps the delivery to all subscribers once, so an
    event counts once whatever its number of subscribers.
    """

    __slots__ = (
        "_children",
        "_delays",
        "_duration",
        "_messages",
        "_queue_delay",
        "requested_by_label",
    )

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "",
        requested_by_label: bool = False,
        buckets: Sequence[float] = DEFAULT_DURATION_BUCKETS,
        queue_delay_buckets: Sequence[float] = DEFAULT_QUEUE_DELAY_BUCKETS,
    ) -> None:
        registry = REGISTRY if registry is None else registry
        self.requested_by_label = requested_by_label
        extra: tuple[str, ...] = ("requested_by",) if requested_by_label else ()
        self._messages = _collector(
            registry,
            Counter,
            METRIC_MESSAGES,
            "Messages handled, by kind, type and outcome.",
            ("kind", "type", "outcome", *extra),
            namespace,
        )
        self._duration = _collector(
            registry,
            Histogram,
            METRIC_DURATION,
            "Time from dispatch to the handler's return, by kind, type and outcome.",
            ("kind", "type", "outcome", *extra),
            namespace,
            buckets=tuple(buckets),
        )
        self._queue_delay = _collector(
            registry,
            Histogram,
            METRIC_QUEUE_DELAY,
            "Time from the message's requested_at to its dispatch, by kind and type.",
            ("kind", "type", *extra),
            namespace,
            buckets=tuple(queue_delay_buckets),
        )
        # Labelled children, resolved once per label combination: .labels() costs
        # more than the observation itself.
        self._children: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self._delays: dict[tuple[str, ...], Any] = {}

    def _series(self, key: tuple[str, ...]) -> tuple[Any, Any]:
        children = self._children.get(key)
        if children is None:
            children = (self._messages.labels(*key), self._duration.labels(*key))
            self._children[key] = children
        return children

    async def __call__(self, message: BaseMessage, call_next: CallNext) -> Any:
        start = _perf()
        kind = message.message_kind
        name = message.__message_type__
        extra: tuple[str, ...] = ()
        if self.requested_by_label:
            extra = (message.requested_by or "anonymous",)
        delay_key = (kind, name, *extra)
        delays = self._delays.get(delay_key)
        if delays is None:
            delays = self._delays[delay_key] = self._queue_delay.labels(*delay_key)
        delay = _now() - message.requested_at.timestamp()
        delays.observe(delay if delay > 0.0 else 0.0)  # clocks of other hosts may lead
        try:
            result = await call_next(message)
        except BaseException:
            counter, histogram = self._series((kind, name, "error", *extra))
            histogram.observe(_perf() - start)
            counter.inc()
            raise
        counter, histogram = self._series((kind, name, "success", *extra))
        histogram.observe(_perf() - start)
        counter.inc()
        return result
