r"""``/metrics``: what the Observatory sees, in the Prometheus text format (version 0.0.4).

The Observatory follows the store's feed anyway (to stream it to browsers), so it
counts what it follows: a Prometheus server scraping it learns how many messages of
each kind, type, outcome and service were recorded since the Observatory started,
without the application exporting anything, and from a store that several services
share.  Label values are stored text: they are escaped as the format requires
(backslash, double quote, newline), so no value can forge a line::

    >>> family = MetricFamily("demo_total", "counter", "Things.")
    >>> family.add(3, service='shop"\n x 1')
    >>> print(family.render(), end="")
    # HELP demo_total Things.
    # TYPE demo_total counter
    demo_total{service="shop\"\n x 1"} 3
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "CONTENT_TYPE",
    "METRIC_DEAD_LETTERS",
    "METRIC_FEED_ERRORS",
    "METRIC_RECORDS_SEEN",
    "METRIC_STORE_POSITION",
    "METRIC_STREAM_CLIENTS",
    "METRIC_STREAM_EVENTS",
    "MetricFamily",
    "render",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of the Prometheus text format."""

METRIC_RECORDS_SEEN: Final = "cqrs_observatory_records_total"
METRIC_STORE_POSITION: Final = "cqrs_observatory_store_position"
METRIC_FEED_ERRORS: Final = "cqrs_observatory_feed_errors_total"
METRIC_STREAM_CLIENTS: Final = "cqrs_observatory_stream_clients"
METRIC_STREAM_EVENTS: Final = "cqrs_observatory_stream_events_total"
METRIC_DEAD_LETTERS: Final = "cqrs_observatory_dead_letters"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class MetricFamily:
    """One metric and its samples: a name, a type, a help text, and a value per set of
    labels."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        """Add the sample ``value`` with ``labels``."""
        self.samples.append((labels, value))

    def render(self) -> str:
        """The family in the text format: its ``HELP`` and ``TYPE`` lines, then one line
        per sample."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            inner = ",".join(f'{key}="{_escape(text)}"' for key, text in labels.items())
            lines.append(
                f"{self.name}{{{inner}}} {_number(value)}"
                if inner
                else f"{self.name} {_number(value)}"
            )
        return "\n".join(lines) + "\n"


def render(families: list[MetricFamily]) -> str:
    """Every family, one after another: the body of a ``/metrics`` response."""
    return "".join(family.render() for family in families)
