"""The guide's Sentry, Prometheus, audit and "Complete Handler" examples, run as tests.

Each test holds the guide's code as written, with only what the guide leaves out
filled in (a repository, ``InviteResult``, imports) and these adaptations, each
marked ``# ADAPTED`` where it happens (also listed in docs/observability/sentry.md):

- ``sentry_sdk.configure_scope()`` is deprecated in sentry-sdk 2.x.  In Pattern 2,
  where the business logic runs inside the ``with``, it becomes
  ``sentry_sdk.new_scope()`` (tags for this message only).  In the Complete Handler,
  where the ``with`` only sets tags and ends, it becomes
  ``sentry_sdk.get_isolation_scope()``, which is what ``configure_scope()`` returns
  in 2.x (the tags last for the request).
- ``from sentry_sdk.integrations.opentelemetry import OpenTelemetryIntegration``
  (Pattern 1) no longer exists there; the integration moved to an experimental,
  deprecated module that also replaces the tracer provider the guide just set.
  The 2.x setup, ``instrumenter="otel"`` with ``SentrySpanProcessor`` and
  ``SentryPropagator``, is used instead.  It sets the global tracer provider, which
  OpenTelemetry allows once per process, so it runs in a subprocess.
- Prometheus metrics are created with ``registry=`` a fresh ``CollectorRegistry``
  instead of the global one: the guide defines them at import time, once; a test
  suite building them per test would hit "Duplicated timeseries" on the global
  registry.  (The Complete Handler even takes a ``metrics_registry`` argument it
  never uses: it is used here.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from typing import Any

import pytest
import sentry_sdk
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, Counter, Histogram

from python_cqrs_core import BaseCommand, ICommandHandler, Mediator
from python_cqrs_core.integrations.audit import AUDIT_EVENT_SCHEMA, audit
from python_cqrs_core.integrations.otel import attach_cqrs_context
from python_cqrs_core.integrations.sentry import SentryMiddleware
from sentry_capture import DSN, close_sentry, init_sentry

# -- what the guide leaves out ----------------------------------------------------------


class CreateInviteCommand(BaseCommand):
    email: str
    expires_in_days: int


@dataclass(frozen=True)
class InviteResult:
    id: int
    token: str


class InviteRepository:
    """An in-memory repository; ``fail_with`` makes ``create`` raise."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.invites: list[InviteResult] = []
        self.fail_with = fail_with

    async def create(self, command: CreateInviteCommand) -> InviteResult:
        if self.fail_with is not None:
            raise self.fail_with
        result = InviteResult(id=len(self.invites) + 1, token=f"tok-{len(self.invites) + 1}")
        self.invites.append(result)
        return result


@pytest.fixture
def sentry_events() -> Iterator[list[dict[str, Any]]]:
    transport = init_sentry()
    yield transport.events
    close_sentry()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def invite(**fields: Any) -> CreateInviteCommand:
    defaults: dict[str, Any] = {"email": "john@example.com", "expires_in_days": 7}
    return CreateInviteCommand(**(defaults | fields))


# -- Sentry Integration -----------------------------------------------------------------

PATTERN_1 = """
import json
import sentry_sdk
from sentry_sdk.transport import Transport

events = []
class CapturingTransport(Transport):
    def capture_envelope(self, envelope):
        if envelope.get_event() is not None:
            events.append(envelope.get_event())

# --- the guide's Pattern 1, adapted to sentry-sdk 2.x ---
from opentelemetry import trace
from opentelemetry.propagate import set_global_textmap
from opentelemetry.sdk.trace import TracerProvider
from sentry_sdk.integrations.opentelemetry import SentryPropagator, SentrySpanProcessor

# Initialize Sentry with OTel as the instrumenter  # ADAPTED: no OpenTelemetryIntegration
sentry_sdk.init(
    dsn="{dsn}",
    transport=CapturingTransport({{"dsn": "{dsn}"}}),
    instrumenter="otel",
    traces_sample_rate=1.0,
)
# Initialize OpenTelemetry, with Sentry's span processor and propagator
provider = TracerProvider()
provider.add_span_processor(SentrySpanProcessor())
trace.set_tracer_provider(provider)
set_global_textmap(SentryPropagator())
# --- end of the guide's code ---

import asyncio
from python_cqrs_core import BaseCommand, Mediator
from python_cqrs_core.integrations.sentry import SentryMiddleware

class CreateInviteCommand(BaseCommand):
    email: str

async def main():
    bus = Mediator(middleware=[SentryMiddleware()])
    async def create(command):
        raise ConnectionError("timeout to postgres")
    bus.register(CreateInviteCommand, create)
    with trace.get_tracer("cqrs.write").start_as_current_span("CreateInvite") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        try:
            await bus.send(CreateInviteCommand(email="john@example.com"))
        except ConnectionError:
            pass
    error = next(e for e in events if "exception" in e)
    print(json.dumps({{"otel": trace_id, "sentry": error["contexts"]["trace"]["trace_id"],
                      "tags": error["tags"]}}))

asyncio.run(main())
"""


def test_sentry_pattern_1_errors_carry_the_opentelemetry_trace_id() -> None:
    script = textwrap.dedent(PATTERN_1.format(dsn=DSN))
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])

    assert result["sentry"] == result["otel"]  # "Click trace ID -> see full distributed trace"
    assert result["tags"]["cqrs.name"] == "CreateInviteCommand"


class Pattern2Handler:
    """The guide's Pattern 2 handler."""

    def __init__(self, repository: InviteRepository) -> None:
        self.repository = repository

    async def handle(self, command: CreateInviteCommand) -> InviteResult:
        with sentry_sdk.new_scope() as scope:  # ADAPTED: was configure_scope()
            # Add your business context
            scope.set_tag("business.request_id", str(command.request_id))
            scope.set_tag("requested_by", command.requested_by)
            scope.set_context(
                "command",
                {
                    "type": type(command).__name__,
                    "request_id": str(command.request_id),
                    "correlation_id": str(command.correlation_id)
                    if command.correlation_id
                    else None,
                    "requested_by": command.requested_by,
                    "requested_at": command.requested_at.isoformat(),
                },
            )

            # Execute command
            result = await self.repository.create(command)
            return result


class ReportingRepository(InviteRepository):
    """Reports a problem to Sentry while it works, as a logging integration would."""

    async def create(self, command: CreateInviteCommand) -> InviteResult:
        sentry_sdk.capture_message("invite mail server slow")
        return await super().create(command)


async def test_sentry_pattern_2_events_sent_inside_the_handler_carry_the_context(
    sentry_events: list[dict[str, Any]],
) -> None:
    bus = Mediator()
    bus.register(CreateInviteCommand, Pattern2Handler(ReportingRepository()))
    command = invite(requested_by="john@example.com")

    await bus.send(command)
    sentry_sdk.capture_message("next request")

    inside, after = sentry_events
    assert inside["tags"] == {
        "business.request_id": str(command.request_id),
        "requested_by": "john@example.com",
    }
    assert inside["contexts"]["command"]["correlation_id"] == str(command.correlation_id)
    assert "business.request_id" not in after.get("tags", {})  # new_scope: no leak


async def test_sentry_pattern_2_an_error_escaping_the_scope_loses_the_tags_unlike_the_middleware(
    sentry_events: list[dict[str, Any]],
) -> None:
    """Why SentryMiddleware captures the error *inside* its scope."""
    guide_bus = Mediator()
    guide_bus.register(CreateInviteCommand, Pattern2Handler(InviteRepository(OSError("db"))))
    middleware_bus = Mediator(middleware=[SentryMiddleware()])
    middleware_bus.register(CreateInviteCommand, InviteRepository(OSError("db")).create)

    with pytest.raises(OSError) as raised:
        await guide_bus.send(invite())
    sentry_sdk.capture_exception(raised.value)  # the framework reports it, outside the scope
    with pytest.raises(OSError):
        await middleware_bus.send(invite())

    from_guide, from_middleware = sentry_events
    assert "business.request_id" not in from_guide.get("tags", {})
    assert "business.request_id" in from_middleware["tags"]


# -- Prometheus Integration -------------------------------------------------------------


async def test_prometheus_duration_histogram_by_command_type_user_and_status() -> None:
    registry = CollectorRegistry()

    # Define metric
    command_duration = Histogram(
        "cqrs_command_duration_seconds",
        "Command execution duration",
        ["command_type", "requested_by", "status"],
        registry=registry,  # ADAPTED: a fresh registry per test
    )

    class Handler:
        def __init__(self, repository: InviteRepository) -> None:
            self.repository = repository

        async def handle(self, command: CreateInviteCommand) -> InviteResult:
            start = command.requested_at
            status = "success"

            try:
                result = await self.repository.create(command)
                return result
            except Exception:
                status = "error"
                raise
            finally:
                duration = (datetime.now(timezone.utc) - start).total_seconds()  # noqa: UP017

                # Record metric with business context
                command_duration.labels(
                    command_type=type(command).__name__,
                    requested_by=command.requested_by or "anonymous",
                    status=status,
                ).observe(duration)

    bus = Mediator()
    bus.register(CreateInviteCommand, Handler(InviteRepository()))
    await bus.send(invite(requested_by="admin@example.com"))
    await bus.send(invite())

    def observations(requested_by: str) -> float | None:
        labels = {
            "command_type": "CreateInviteCommand",
            "requested_by": requested_by,
            "status": "success",
        }
        return registry.get_sample_value("cqrs_command_duration_seconds_count", labels)

    assert observations("admin@example.com") == 1
    assert observations("anonymous") == 1


async def test_prometheus_counter_by_user() -> None:
    registry = CollectorRegistry()

    command_counter = Counter(
        "cqrs_commands_total",
        "Total commands processed",
        ["command_type", "requested_by"],
        registry=registry,  # ADAPTED: a fresh registry per test
    )

    class Handler:
        def __init__(self, repository: InviteRepository) -> None:
            self.repository = repository

        async def handle(self, command: CreateInviteCommand) -> InviteResult:
            # Increment counter with business context
            command_counter.labels(
                command_type=type(command).__name__,
                requested_by=command.requested_by or "anonymous",
            ).inc()

            result = await self.repository.create(command)
            return result

    bus = Mediator()
    bus.register(CreateInviteCommand, Handler(InviteRepository()))
    for who in ("jane", "jane", "bob"):
        await bus.send(invite(requested_by=who))

    # sum by (requested_by) (cqrs_commands_total)
    totals = {
        sample.labels["requested_by"]: sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "cqrs_commands_total"
    }
    assert totals == {"jane": 2, "bob": 1}


# -- Audit Trail for Compliance ---------------------------------------------------------


async def test_audit_trail_span_event_matches_what_audit_emits(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("cqrs.write")
    repository = InviteRepository()

    async def handle(command: CreateInviteCommand) -> InviteResult:
        with tracer.start_as_current_span("CreateInvite") as span:
            attach_cqrs_context(span, command)

            # Execute command
            result = await repository.create(command)

            # Record audit event
            span.add_event(
                "invite.created",
                attributes={
                    # Compliance fields
                    "audit.action": "CREATE_INVITE",
                    "audit.actor": command.requested_by or "system",
                    "audit.resource_type": "invite",
                    "audit.resource_id": str(result.id),
                    "audit.timestamp": command.requested_at.isoformat(),
                    # Business context
                    "audit.business_request_id": str(command.request_id),
                    "audit.correlation_id": str(command.correlation_id)
                    if command.correlation_id
                    else None,
                    # Data classification
                    "compliance.data_classification": "PII",
                    "compliance.contains_email": True,
                    # Result
                    "audit.result": "success",
                },
            )

            # The same event from python_cqrs_core, with no hand-written schema:
            audit(
                "CREATE_INVITE",
                resource_type="invite",
                resource_id=result.id,
                event_name="invite.created",
                **{"compliance.data_classification": "PII", "compliance.contains_email": True},
            )
            return result

    bus = Mediator()
    bus.register(CreateInviteCommand, handle)
    await bus.send(invite(requested_by="admin@example.com"))

    [span] = exporter.get_finished_spans()
    guide_event, library_event = span.events
    assert guide_event.name == library_event.name == "invite.created"
    assert dict(library_event.attributes or {}) == dict(guide_event.attributes or {})
    assert (
        dict(span.attributes or {})["business.request_id"]
        == dict(guide_event.attributes or {})["audit.business_request_id"]
    )


# -- Complete Handler Example -----------------------------------------------------------


class CreateInviteHandler(ICommandHandler[CreateInviteCommand, InviteResult]):
    def __init__(
        self,
        repository: InviteRepository,
        metrics_registry: CollectorRegistry,
        tracer_provider: TracerProvider,
    ) -> None:
        self.repository = repository
        # ADAPTED: an explicit provider instead of the global one (test isolation)
        self.tracer = tracer_provider.get_tracer("cqrs.write", "1.0.0")

        # Prometheus metrics
        self.duration_histogram = Histogram(
            "create_invite_duration_seconds",
            "CreateInvite command duration",
            ["requested_by", "status"],
            registry=metrics_registry,  # ADAPTED: the registry the guide passes in
        )
        self.counter = Counter(
            "create_invite_total",
            "Total CreateInvite commands",
            ["requested_by"],
            registry=metrics_registry,  # ADAPTED
        )

    async def handle(self, command: CreateInviteCommand) -> InviteResult:
        # Set up correlation
        correlation_id = str(command.correlation_id or command.request_id)
        ctx = baggage.set_baggage("correlation.id", correlation_id)

        status = "success"

        with self.tracer.start_as_current_span("CreateInvite", context=ctx) as span:
            try:
                # Attach business context to OTel span
                span.set_attribute("business.request_id", str(command.request_id))
                span.set_attribute("requested_by", command.requested_by or "anonymous")
                span.set_attribute("cqrs.type", "command")
                span.set_attribute("cqrs.command.type", "CreateInvite")
                span.set_attribute("invite.email", command.email)

                # Attach context to Sentry
                scope = sentry_sdk.get_isolation_scope()  # ADAPTED: was configure_scope()
                scope.set_tag("business.request_id", str(command.request_id))
                scope.set_tag("requested_by", command.requested_by)
                scope.set_context(
                    "command",
                    {
                        "type": "CreateInviteCommand",
                        "request_id": str(command.request_id),
                        "email": command.email,
                    },
                )

                # Increment Prometheus counter
                self.counter.labels(requested_by=command.requested_by or "anonymous").inc()

                # Execute business logic
                result = await self.repository.create(command)

                # Record audit event
                span.add_event(
                    "invite.created",
                    attributes={
                        "audit.action": "CREATE_INVITE",
                        "audit.actor": command.requested_by or "system",
                        "audit.resource_id": str(result.id),
                        "audit.timestamp": command.requested_at.isoformat(),
                    },
                )

                return result

            except Exception as e:
                status = "error"
                span.set_status(trace.Status(trace.StatusCode.ERROR))
                span.record_exception(e)
                raise

            finally:
                # Record duration in Prometheus
                duration = (datetime.now(timezone.utc) - command.requested_at).total_seconds()  # noqa: UP017
                self.duration_histogram.labels(
                    requested_by=command.requested_by or "anonymous", status=status
                ).observe(duration)


async def test_complete_handler_success_records_span_audit_event_and_metrics(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    sentry_events: list[dict[str, Any]],
) -> None:
    registry = CollectorRegistry()
    bus = Mediator()
    bus.register(CreateInviteCommand, CreateInviteHandler(InviteRepository(), registry, provider))
    command = invite(requested_by="admin@example.com", correlation_id="req-abc-123")

    with sentry_sdk.isolation_scope():  # what Sentry's web integrations do per request
        result = await bus.send(command)
        sentry_sdk.capture_message("invite created")

    assert result == InviteResult(id=1, token="tok-1")
    [span] = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["business.request_id"] == str(command.request_id)
    assert attributes["requested_by"] == "admin@example.com"
    [event] = span.events
    assert dict(event.attributes or {})["audit.resource_id"] == "1"
    labels = {"requested_by": "admin@example.com"}
    assert registry.get_sample_value("create_invite_total", labels) == 1
    labels["status"] = "success"
    assert registry.get_sample_value("create_invite_duration_seconds_count", labels) == 1
    [sentry_event] = sentry_events
    assert sentry_event["tags"]["business.request_id"] == str(command.request_id)
    assert sentry_event["contexts"]["command"]["email"] == "john@example.com"


async def test_complete_handler_failure_marks_the_span_and_counts_an_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    registry = CollectorRegistry()
    repository = InviteRepository(ConnectionError("timeout to postgres"))
    bus = Mediator()
    bus.register(CreateInviteCommand, CreateInviteHandler(repository, registry, provider))

    with sentry_sdk.isolation_scope(), pytest.raises(ConnectionError):
        await bus.send(invite())

    [span] = exporter.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    # The guide's record_exception() plus start_as_current_span's own (it records by
    # default): the exception is on the span twice.  TracingMiddleware records it once.
    assert [e.name for e in span.events] == ["exception", "exception"]
    labels = {"requested_by": "anonymous", "status": "error"}
    assert registry.get_sample_value("create_invite_duration_seconds_count", labels) == 1


# -- Best Practices (2026), 3. Structure Audit Events Consistently ----------------------

GUIDE_AUDIT_EVENT_SCHEMA = {
    "audit.action": "string",  # CREATE_USER, DELETE_ORDER, etc.
    "audit.actor": "string",  # Who (from requested_by)
    "audit.resource_type": "string",  # What type (user, order, invite)
    "audit.resource_id": "string",  # Which one (user_id, order_id)
    "audit.timestamp": "ISO8601",  # When (from requested_at)
    "audit.business_request_id": "UUID",  # Unique identifier
    "audit.result": "string",  # success, denied, error
}


@pytest.mark.parametrize("result", ["success", "denied", "error"])
async def test_every_audit_event_follows_the_guide_schema(result: str) -> None:
    from uuid import UUID

    bus = Mediator()

    async def delete_user(command: CreateInviteCommand) -> dict[str, Any]:
        return audit("DELETE_USER", resource_type="user", resource_id=7, result=result)  # type: ignore[arg-type]

    bus.register(CreateInviteCommand, delete_user)
    event = await bus.send(invite(requested_by="admin@example.com"))

    assert GUIDE_AUDIT_EVENT_SCHEMA.items() <= AUDIT_EVENT_SCHEMA.items()
    assert set(GUIDE_AUDIT_EVENT_SCHEMA) <= set(event)
    for key, kind in GUIDE_AUDIT_EVENT_SCHEMA.items():
        value = event[key]
        assert isinstance(value, str)
        if kind == "ISO8601":
            assert datetime.fromisoformat(value).tzinfo is not None
        elif kind == "UUID":
            UUID(value)
    assert event["audit.result"] == result
    assert event["audit.actor"] == "admin@example.com"
    assert datetime.fromisoformat(str(event["audit.timestamp"])) <= datetime.now(UTC)
