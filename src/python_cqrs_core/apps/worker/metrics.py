"""A worker's metrics for Prometheus (the ``[prometheus]`` extra: ``prometheus_client``).

::

    server = serve_metrics(worker, port=9100)        # http://127.0.0.1:9100/metrics
    ...
    server.close()

or, into a registry the application serves itself::

    registry.register(WorkerCollector(worker))

Every series is labelled ``worker`` (the worker's name), ``destination`` and
``group``:

===================================  =======  ===============================================
metric                               type     what
===================================  =======  ===============================================
``cqrs_consumer_lag``                gauge    messages the group has not acknowledged yet
                                              (pending, unread and waiting for a retry)
``cqrs_consumer_acked_total``        counter  deliveries acknowledged (duplicates included)
``cqrs_consumer_duplicates_total``   counter  of those, duplicates the inbox dropped
``cqrs_consumer_retries_total``      counter  deliveries given back for a later attempt
``cqrs_consumer_dead_letters_total`` counter  deliveries dead-lettered
``cqrs_outbox_backlog``              gauge    outbox entries waiting to be published
``cqrs_outbox_published_total``      counter  entries the relay published
``cqrs_outbox_retries_total``        counter  failed publishes that will be retried
``cqrs_outbox_failed_total``         counter  entries given up on (kept as ``failed``)
===================================  =======  ===============================================

The outbox metrics are labelled ``worker`` only.  Counters are read from the
consumers and the relay when Prometheus scrapes; the two gauges are the worker's last
measure (:attr:`Worker.last_status <python_cqrs_core.apps.worker.Worker.last_status>`,
every ``status_interval`` seconds), since measuring them means asking the broker and
the database, which a scrape should not wait for.  A gauge not measured yet is
absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ...names import (
    METRIC_CONSUMER_ACKED,
    METRIC_CONSUMER_DEAD_LETTERS,
    METRIC_CONSUMER_DUPLICATES,
    METRIC_CONSUMER_LAG,
    METRIC_CONSUMER_RETRIES,
    METRIC_OUTBOX_BACKLOG,
    METRIC_OUTBOX_FAILED,
    METRIC_OUTBOX_PUBLISHED,
    METRIC_OUTBOX_RETRIES,
)
from .worker import Worker

__all__ = ["MetricsServer", "WorkerCollector", "serve_metrics"]

_LABELS = ["worker", "destination", "group"]


class WorkerCollector:
    """A Prometheus collector of one worker's metrics (see the module docs)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Any]:
        """The metric families, as ``prometheus_client`` asks for them on a scrape."""
        worker = self.worker
        counters = {
            name: CounterMetricFamily(name, documentation, labels=_LABELS)
            for name, documentation in (
                (METRIC_CONSUMER_ACKED, "Deliveries acknowledged (duplicates included)."),
                (METRIC_CONSUMER_DUPLICATES, "Duplicate deliveries the inbox dropped."),
                (METRIC_CONSUMER_RETRIES, "Deliveries given back for a later attempt."),
                (METRIC_CONSUMER_DEAD_LETTERS, "Deliveries dead-lettered."),
            )
        }
        totals: dict[tuple[str, str], list[int]] = {}
        for consumer in worker.consumers:
            sums = totals.setdefault((consumer.destination, consumer.group), [0, 0, 0, 0])
            for index, value in enumerate(
                (consumer.acked, consumer.duplicates, consumer.retried, consumer.dead_lettered)
            ):
                sums[index] += value
        for (destination, group), sums in totals.items():
            labels = [worker.name, destination, group]
            for family, value in zip(counters.values(), sums, strict=True):
                family.add_metric(labels, value)
        yield from counters.values()
        status = worker.last_status
        if totals and status is not None:
            lag = GaugeMetricFamily(
                METRIC_CONSUMER_LAG,
                "Messages the consumer group has not acknowledged yet.",
                labels=_LABELS,
            )
            measured = {(c.destination, c.group): c.lag for c in status.consumers}
            for (destination, group), lag_value in measured.items():
                if lag_value is not None:
                    lag.add_metric([worker.name, destination, group], lag_value)
            yield lag
        relay = worker.relay
        if relay is None:
            return
        for name, documentation, value in (
            (METRIC_OUTBOX_PUBLISHED, "Outbox entries published.", relay.published),
            (METRIC_OUTBOX_RETRIES, "Failed publishes that will be retried.", relay.retried),
            (METRIC_OUTBOX_FAILED, "Outbox entries given up on.", relay.failed),
        ):
            family = CounterMetricFamily(name, documentation, labels=["worker"])
            family.add_metric([worker.name], value)
            yield family
        if status is not None and status.relay is not None and status.relay.backlog is not None:
            backlog = GaugeMetricFamily(
                METRIC_OUTBOX_BACKLOG, "Outbox entries waiting to be published.", labels=["worker"]
            )
            backlog.add_metric([worker.name], status.relay.backlog)
            yield backlog


class MetricsServer:
    """The HTTP server :func:`serve_metrics` started (a daemon thread); :meth:`close`
    stops it."""

    def __init__(self, server: Any, thread: Any) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The port it listens on (the one asked for, or the one picked for ``0``)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(worker: Worker, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``worker``'s metrics at ``http://host:port/metrics`` (any path answers),
    from a thread, in a registry of their own.  ``port`` 0 picks a free port.  An
    address that cannot be listened on raises :class:`OSError`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(worker))
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)
