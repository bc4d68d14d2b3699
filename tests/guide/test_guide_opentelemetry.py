"""The guide's "OpenTelemetry Integration" (Patterns 1-4) and Best Practices 1, 2 and 4,
run as written.

Only what the guide leaves out is filled in: the message classes, a repository whose
``create`` returns an object with ``id`` and ``token``, an external service, and the
handle() bodies of Pattern 4's handlers.  The guide's handlers call
``trace.get_tracer(...)``, i.e. the global provider; the ``guide_tracer`` fixture
routes that call to a test provider for the duration of a test instead of setting the
process-wide provider.

Each snippet is checked twice where it matters: as the guide shows it, by hand in a
handler, and with what the library ships (``python_cqrs_core.integrations.otel``), which does the
same with no code in the handler.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union

import pytest
import structlog
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.typing import EventDict

from python_cqrs_core import BaseCommand, BaseQuery, Mediator
from python_cqrs_core.headers import trace_headers
from python_cqrs_core.integrations.otel import attach_cqrs_context, instrument
from python_cqrs_core.integrations.structlog import correlation_processor

# -- what the guide leaves out ---------------------------------------------------------


class CreateInviteCommand(BaseCommand):
    email: str
    expires_in_days: int


class GetInviteQuery(BaseQuery):
    invite_id: int


@dataclass(frozen=True)
class Invite:
    id: int
    token: str


class InviteRepository:
    """Creates invites; remembers what it saw of the trace context when called."""

    def __init__(self) -> None:
        self.seen_baggage: list[object] = []
        self.seen_headers: list[dict[str, str]] = []

    async def create(self, command: CreateInviteCommand) -> Invite:
        self.seen_baggage.append(baggage.get_baggage("correlation.id"))
        self.seen_headers.append(trace_headers())
        return Invite(id=41, token="tok-41")


class ExternalService:
    """Stands for an instrumented HTTP client: records the headers it would send."""

    def __init__(self) -> None:
        self.sent_headers: list[dict[str, str]] = []

    async def call(self) -> None:
        self.sent_headers.append(trace_headers())


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider
    tracer_provider.shutdown()


@pytest.fixture
def guide_tracer(provider: TracerProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the guide's ``trace.get_tracer(name, version)`` use the test provider."""

    def get_tracer(name: str, version: str | None = None, *args: Any, **kwargs: Any) -> Any:
        return provider.get_tracer(name, version, *args, **kwargs)

    monkeypatch.setattr(trace, "get_tracer", get_tracer)


def span_named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [span for span in exporter.get_finished_spans() if span.name == name]
    return span


# -- Pattern 1: attach command/query context to spans ----------------------------------


def guide_attach_cqrs_context(span: trace.Span, cqrs_object: Union[BaseCommand, BaseQuery]):  # noqa: UP007 - the guide's code
    """Attach BaseCommand/BaseQuery fields to OpenTelemetry span."""
    span.set_attribute("business.request_id", str(cqrs_object.request_id))

    if cqrs_object.correlation_id:
        span.set_attribute("business.correlation_id", str(cqrs_object.correlation_id))

    if cqrs_object.requested_by:
        span.set_attribute("requested_by", cqrs_object.requested_by)

    span.set_attribute("requested_at", cqrs_object.requested_at.isoformat())

    # Determine if it's a command or query
    span.set_attribute("cqrs.type", "command" if isinstance(cqrs_object, BaseCommand) else "query")
    span.set_attribute("cqrs.name", type(cqrs_object).__name__)


@pytest.mark.parametrize(
    "message",
    [
        CreateInviteCommand(email="ada@example.com", expires_in_days=7),
        CreateInviteCommand(
            email="ada@example.com",
            expires_in_days=7,
            correlation_id="signup-42",
            requested_by="admin@example.com",
        ),
        GetInviteQuery(invite_id=41, requested_by="admin@example.com"),
    ],
    ids=["bare command", "correlated command", "query"],
)
def test_pattern_1_shipped_attach_cqrs_context_sets_what_the_guides_helper_sets(
    message: BaseCommand | BaseQuery, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("test")

    with tracer.start_as_current_span("guide") as span:
        guide_attach_cqrs_context(span, message)
    with tracer.start_as_current_span("shipped") as span:
        attach_cqrs_context(span, message)

    guide = dict(span_named(exporter, "guide").attributes or {})
    shipped = dict(span_named(exporter, "shipped").attributes or {})
    assert shipped == guide
    assert guide["business.request_id"] == str(message.request_id)


def test_pattern_1_shipped_helper_adds_the_causation_id_when_there_is_one(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    cause = CreateInviteCommand(email="ada@example.com", expires_in_days=7)
    query = GetInviteQuery(
        invite_id=41, correlation_id=cause.request_id, causation_id=cause.request_id
    )
    tracer = provider.get_tracer("test")

    with tracer.start_as_current_span("guide") as span:
        guide_attach_cqrs_context(span, query)
    with tracer.start_as_current_span("shipped") as span:
        attach_cqrs_context(span, query)

    guide = dict(span_named(exporter, "guide").attributes or {})
    shipped = dict(span_named(exporter, "shipped").attributes or {})
    assert shipped == {**guide, "business.causation_id": str(cause.request_id)}


# -- Pattern 2: use in your handlers ----------------------------------------------------


class CreateInviteCommandHandler:
    def __init__(self, repository):
        self.repository = repository
        self.tracer = trace.get_tracer("cqrs.write", "1.0.0")

    async def handle(self, command: CreateInviteCommand):
        with self.tracer.start_as_current_span("CreateInvite") as span:
            # Attach your domain context
            attach_cqrs_context(span, command)

            # Add business-specific attributes
            span.set_attribute("invite.email", command.email)
            span.set_attribute("invite.expires_in_days", command.expires_in_days)

            # Execute business logic
            result = await self.repository.create(command)

            # Add result attributes
            span.set_attribute("result.invite_id", result.id)
            span.set_attribute("result.token", result.token)

            return result


async def test_pattern_2_handler_span_carries_domain_business_and_result_attributes(
    guide_tracer: None, exporter: InMemorySpanExporter
) -> None:
    command = CreateInviteCommand(
        email="ada@example.com", expires_in_days=7, requested_by="admin@example.com"
    )

    result = await CreateInviteCommandHandler(InviteRepository()).handle(command)

    span = span_named(exporter, "CreateInvite")
    assert result == Invite(id=41, token="tok-41")
    assert span.instrumentation_scope.name == "cqrs.write"
    assert dict(span.attributes or {}) == {
        "business.request_id": str(command.request_id),
        "requested_by": "admin@example.com",
        "requested_at": command.requested_at.isoformat(),
        "cqrs.type": "command",
        "cqrs.name": "CreateInviteCommand",
        "invite.email": "ada@example.com",
        "invite.expires_in_days": 7,
        "result.invite_id": 41,
        "result.token": "tok-41",
    }


async def test_pattern_2_handler_span_nests_under_the_message_span_when_instrumented(
    guide_tracer: None, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    bus = Mediator()
    instrument(bus, provider)
    bus.register(CreateInviteCommand, CreateInviteCommandHandler(InviteRepository()))
    command = CreateInviteCommand(email="ada@example.com", expires_in_days=7)

    await bus.send(command)

    guide_span = span_named(exporter, "CreateInvite")
    ours = span_named(exporter, "handle CreateInviteCommandHandler")
    message_span = span_named(exporter, "process CreateInviteCommand")
    # message span > our span of the handler > the span the guide's handler opens
    assert ours.parent is not None and ours.parent.span_id == message_span.context.span_id
    assert guide_span.parent is not None and guide_span.parent.span_id == ours.context.span_id
    # Dispatched through the bus, the command has a correlation id: the handler's
    # own span now carries it too.
    assert (guide_span.attributes or {})["business.correlation_id"] == str(command.request_id)


# -- Pattern 3: propagate correlation ids via baggage ----------------------------------


class BaggageInviteHandler:
    """Pattern 3's handle(), verbatim, in the handler class it implies."""

    def __init__(self, repository):
        self.repository = repository
        self.tracer = trace.get_tracer("cqrs.write", "1.0.0")

    async def handle(self, command: CreateInviteCommand):
        # Set correlation_id in baggage for downstream services
        correlation_id = str(command.correlation_id or command.request_id)

        ctx = baggage.set_baggage("correlation.id", correlation_id)

        with self.tracer.start_as_current_span("CreateInvite", context=ctx) as span:
            attach_cqrs_context(span, command)
            # All downstream services get correlation.id automatically!
            result = await self.repository.create(command)
            return result


async def test_pattern_3_as_written_does_not_make_the_baggage_current(
    guide_tracer: None, exporter: InMemorySpanExporter
) -> None:
    # ``context=ctx`` only chooses the span's parent: start_as_current_span makes the
    # span current in the *current* context, so the baggage set on ctx never reaches
    # the code inside the ``with`` block, nor the headers of its outgoing calls.
    repository = InviteRepository()
    command = CreateInviteCommand(email="ada@example.com", expires_in_days=7)

    await BaggageInviteHandler(repository).handle(command)

    assert repository.seen_baggage == [None]
    assert "baggage" not in repository.seen_headers[0]
    assert span_named(exporter, "CreateInvite").attributes is not None


async def test_pattern_3_with_the_middleware_downstream_calls_get_the_correlation_id(
    guide_tracer: None, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    repository = InviteRepository()
    bus = Mediator()
    instrument(bus, provider)
    bus.register(CreateInviteCommand, BaggageInviteHandler(repository))
    command = CreateInviteCommand(
        email="ada@example.com", expires_in_days=7, correlation_id="signup-42"
    )

    await bus.send(command)

    assert repository.seen_baggage == ["signup-42"]
    assert repository.seen_headers[0]["baggage"] == "correlation.id=signup-42"
    handler_span = span_named(exporter, "CreateInvite")
    assert f"{handler_span.context.span_id:016x}" in repository.seen_headers[0]["traceparent"]


# -- Pattern 4 / Best Practice 1: separate command and query tracers -------------------


async def test_pattern_4_separate_tracers_nest_inside_the_middlewares_one_scope(
    guide_tracer: None, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # In your application setup
    write_tracer = trace.get_tracer("cqrs.write", "1.0.0")
    read_tracer = trace.get_tracer("cqrs.read", "1.0.0")

    # Command handlers use write tracer
    class CreateInviteHandler:
        tracer = write_tracer

        async def handle(self, command: CreateInviteCommand) -> int:  # filled in
            with self.tracer.start_as_current_span("CreateInvite"):
                return 41

    # Query handlers use read tracer
    class GetInviteHandler:
        tracer = read_tracer

        async def handle(self, query: GetInviteQuery) -> Invite:  # filled in
            with self.tracer.start_as_current_span("GetInvite"):
                return Invite(id=query.invite_id, token="tok-41")

    bus = Mediator()
    instrument(bus, provider)
    bus.register(CreateInviteCommand, CreateInviteHandler())
    bus.register(GetInviteQuery, GetInviteHandler())

    invite_id = await bus.send(CreateInviteCommand(email="ada@example.com", expires_in_days=7))
    await bus.query(GetInviteQuery(invite_id=invite_id))

    scopes = {span.name: span.instrumentation_scope.name for span in exporter.get_finished_spans()}
    # The guide's hand-written spans keep their tracers; automatic instrumentation is
    # one scope, the library's, with the kind as the cqrs.type attribute.
    handlers = "test_pattern_4_separate_tracers_nest_inside_the_middlewares_one_scope.<locals>"
    assert scopes == {
        "CreateInvite": "cqrs.write",
        f"handle {handlers}.CreateInviteHandler": "python_cqrs_core",
        "process CreateInviteCommand": "python_cqrs_core",
        "GetInvite": "cqrs.read",
        f"handle {handlers}.GetInviteHandler": "python_cqrs_core",
        "process GetInviteQuery": "python_cqrs_core",
    }
    kinds = {
        span.name: (span.attributes or {})["cqrs.type"]
        for span in exporter.get_finished_spans()
        if span.name.startswith("process ")
    }
    assert kinds == {"process CreateInviteCommand": "command", "process GetInviteQuery": "query"}


# -- Best Practice 2: propagate business correlation ids -------------------------------


class CallsExternalService:
    """Best Practice 2's snippet, in a handler."""

    def __init__(self, external_service: ExternalService) -> None:
        self.external_service = external_service

    async def handle(self, command: CreateInviteCommand) -> None:
        tracer = trace.get_tracer("cqrs.write", "1.0.0")
        correlation_id = str(command.correlation_id or command.request_id)
        ctx = baggage.set_baggage("correlation.id", correlation_id)

        with tracer.start_as_current_span("MyOperation", context=ctx):
            # Downstream services automatically get correlation.id
            await self.external_service.call()


async def test_best_practice_2_downstream_calls_get_the_correlation_id_with_the_middleware(
    guide_tracer: None, provider: TracerProvider
) -> None:
    alone, instrumented = ExternalService(), ExternalService()
    bus = Mediator()
    instrument(bus, provider)
    bus.register(CreateInviteCommand, CallsExternalService(instrumented))
    command = CreateInviteCommand(email="ada@example.com", expires_in_days=7)

    await CallsExternalService(alone).handle(command)
    await bus.send(command.model_copy(update={"correlation_id": "signup-42"}))

    assert "baggage" not in alone.sent_headers[0]  # same cause as in Pattern 3
    assert instrumented.sent_headers[0]["baggage"] == "correlation.id=signup-42"


# -- Best Practice 4: use request_id for log correlation -------------------------------

logger = structlog.get_logger()


class StructlogInviteHandler:
    def __init__(self, repository: InviteRepository) -> None:
        self.repository = repository

    async def handle(self, command: CreateInviteCommand):
        # Bind request_id to all logs in this context
        log = logger.bind(
            request_id=str(command.request_id),
            requested_by=command.requested_by,
            command_type=type(command).__name__,
        )

        log.info("processing_command")
        result = await self.repository.create(command)
        log.info("command_completed", invite_id=result.id)

        return result


async def test_best_practice_4_bound_request_id_is_on_every_log_line() -> None:
    command = CreateInviteCommand(
        email="ada@example.com", expires_in_days=7, requested_by="admin@example.com"
    )

    with structlog.testing.capture_logs() as events:
        await StructlogInviteHandler(InviteRepository()).handle(command)

    assert events == [
        {
            "event": "processing_command",
            "log_level": "info",
            "request_id": str(command.request_id),
            "requested_by": "admin@example.com",
            "command_type": "CreateInviteCommand",
        },
        {
            "event": "command_completed",
            "log_level": "info",
            "request_id": str(command.request_id),
            "requested_by": "admin@example.com",
            "command_type": "CreateInviteCommand",
            "invite_id": 41,
        },
    ]


class UnboundInviteHandler:
    """Best Practice 4 with the correlation processor: no bind() needed."""

    def __init__(self, repository: InviteRepository) -> None:
        self.repository = repository

    async def handle(self, command: CreateInviteCommand) -> Invite:
        logger.info("processing_command")
        result = await self.repository.create(command)
        logger.info("command_completed", invite_id=result.id)
        return result


async def test_best_practice_4_correlation_processor_binds_the_same_ids_for_you() -> None:
    bus = Mediator()
    bus.register(CreateInviteCommand, UnboundInviteHandler(InviteRepository()))
    command = CreateInviteCommand(
        email="ada@example.com", expires_in_days=7, requested_by="admin@example.com"
    )

    with structlog.testing.capture_logs(processors=[correlation_processor]) as events:
        await bus.send(command)

    def guide_keys(event: EventDict) -> dict[str, object]:
        return {
            "request_id": event["request_id"],
            "requested_by": event["requested_by"],
            # the stable type name ends with the class name the guide binds
            "command_type": event["message_type"].rsplit(".", 1)[-1],
        }

    assert [guide_keys(event) for event in events] == [
        {
            "request_id": str(command.request_id),
            "requested_by": "admin@example.com",
            "command_type": "CreateInviteCommand",
        }
    ] * 2
    assert events[1]["invite_id"] == 41
    assert {event["correlation_id"] for event in events} == {str(command.request_id)}
