"""audit() and AuditMiddleware: the guide's audit schema as span events and log records."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from python_cqrs_core import PII, BaseCommand, BaseMessage, CallNext, Mediator, correlation_scope
from python_cqrs_core.integrations.audit import (
    AUDIT_EVENT_SCHEMA,
    AUDIT_LOGGER,
    AuditMiddleware,
    audit,
)


class CreateInvite(BaseCommand):
    email: Annotated[str, PII]
    expires_in_days: int = 7


class CreateVipInvite(CreateInvite):
    pass


class RevokeInvite(BaseCommand):
    invite_id: int


class Ping(BaseCommand):
    pass


class NotAllowed(Exception):
    pass


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[Tracer]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test")
    provider.shutdown()


@pytest.fixture
def audit_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    return caplog


def audit_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == AUDIT_LOGGER]


def span_middleware(tracer: Tracer) -> Any:
    """A minimal stand-in for the tracing middleware: one span per message."""

    async def trace_message(message: BaseMessage, call_next: CallNext) -> Any:
        with tracer.start_as_current_span(type(message).__name__):
            return await call_next(message)

    return trace_message


async def test_audit_in_a_handler_fills_the_schema_from_the_message_being_handled(
    bus: Mediator, audit_log: pytest.LogCaptureFixture
) -> None:
    async def create(command: CreateInvite) -> dict[str, Any]:
        return audit("CREATE_INVITE", resource_type="invite", resource_id=42)

    bus.register(CreateInvite, create)
    command = CreateInvite(email="a@example.com", requested_by="admin@example.com")

    event = await bus.send(command)

    assert event == {
        "audit.action": "CREATE_INVITE",
        "audit.actor": "admin@example.com",
        "audit.resource_type": "invite",
        "audit.resource_id": "42",
        "audit.timestamp": command.requested_at.isoformat(),
        "audit.business_request_id": str(command.request_id),
        "audit.correlation_id": str(command.correlation_id),
        "audit.result": "success",
    }
    assert set(event) == set(AUDIT_EVENT_SCHEMA)


async def test_audit_is_logged_on_the_audit_logger_as_json_and_as_a_dict(
    audit_log: pytest.LogCaptureFixture,
) -> None:
    command = RevokeInvite(invite_id=3)
    event = audit("REVOKE_INVITE", resource_type="invite", resource_id=3, message=command)

    [record] = audit_records(audit_log)
    assert record.levelno == logging.INFO
    assert json.loads(record.getMessage()) == event
    assert record.audit == event  # type: ignore[attr-defined]
    assert event["audit.actor"] == "system"


async def test_denied_and_error_are_logged_as_warnings(
    audit_log: pytest.LogCaptureFixture,
) -> None:
    audit("DELETE_USER", resource_type="user", resource_id=1, result="denied", message=Ping())
    audit("DELETE_USER", resource_type="user", resource_id=1, result="error", message=Ping())

    assert [r.levelno for r in audit_records(audit_log)] == [logging.WARNING] * 2


def test_an_unknown_result_is_rejected() -> None:
    with pytest.raises(ValueError, match="result must be one of"):
        audit("X", resource_type="t", resource_id=1, result="ok")  # type: ignore[arg-type]


def test_outside_a_handler_the_correlation_scope_gives_actor_and_correlation(
    audit_log: pytest.LogCaptureFixture,
) -> None:
    with correlation_scope("req-abc-123", requested_by="ops@example.com"):
        event = audit("EXPORT_REPORT", resource_type="report", resource_id="q3")

    assert event["audit.actor"] == "ops@example.com"
    assert event["audit.correlation_id"] == "req-abc-123"
    assert "audit.business_request_id" not in event
    assert event["audit.timestamp"].endswith("+00:00")


def test_extra_attributes_are_added_and_none_values_left_out(
    audit_log: pytest.LogCaptureFixture,
) -> None:
    event = audit(
        "CREATE_INVITE",
        resource_type="invite",
        resource_id=1,
        message=Ping(),
        **{"compliance.data_classification": "PII", "compliance.contains_email": True},
        reviewer=None,
        ticket=["a", "b"],
    )

    assert event["compliance.data_classification"] == "PII"
    assert event["compliance.contains_email"] is True
    assert event["ticket"] == "['a', 'b']"
    assert "reviewer" not in event


def test_the_payload_is_emitted_only_when_asked_and_with_personal_data_redacted(
    audit_log: pytest.LogCaptureFixture,
) -> None:
    command = CreateInvite(email="john@example.com", expires_in_days=3)
    plain = audit("CREATE_INVITE", resource_type="invite", resource_id=1, message=command)
    with_payload = audit(
        "CREATE_INVITE", resource_type="invite", resource_id=1, message=command,
        include_payload=True,
    )  # fmt: skip

    assert "audit.payload" not in plain
    payload = json.loads(str(with_payload["audit.payload"]))
    assert payload["email"] == "***"
    assert payload["expires_in_days"] == 3
    assert "john@example.com" not in audit_log.text


def test_audit_adds_a_span_event_to_the_recording_span(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    command = RevokeInvite(invite_id=9, requested_by="admin@example.com")
    with tracer.start_as_current_span("RevokeInvite"):
        event = audit(
            "REVOKE_INVITE", resource_type="invite", resource_id=9, message=command,
            event_name="invite.revoked",
        )  # fmt: skip

    [span] = exporter.get_finished_spans()
    [span_event] = span.events
    assert span_event.name == "invite.revoked"
    assert dict(span_event.attributes or {}) == event


def test_without_a_span_audit_only_logs(
    exporter: InMemorySpanExporter, audit_log: pytest.LogCaptureFixture
) -> None:
    audit("X", resource_type="t", resource_id=1, message=Ping())

    assert exporter.get_finished_spans() == ()
    assert len(audit_records(audit_log)) == 1


# -- AuditMiddleware -------------------------------------------------------------------


def audited_bus(tracer: Tracer, **options: Any) -> Mediator:
    bus = Mediator()
    bus.add_middleware(span_middleware(tracer))
    bus.add_middleware(
        AuditMiddleware(
            {CreateInvite: "CREATE_INVITE", RevokeInvite: "REVOKE_INVITE"},
            resource_type="invite",
            **options,
        )
    )

    async def create(command: CreateInvite) -> int:
        if command.expires_in_days < 0:
            raise ValueError("expiry in the past")
        return 101

    async def revoke(command: RevokeInvite) -> None:
        raise NotAllowed if command.invite_id == 0 else PermissionError("not your invite")

    async def ping(command: Ping) -> str:
        return "pong"

    bus.register(CreateInvite, create)
    bus.register(RevokeInvite, revoke)
    bus.register(Ping, ping)
    return bus


def audit_events(exporter: InMemorySpanExporter) -> list[dict[str, Any]]:
    """The attributes of the "audit" span events (a failed span also has "exception")."""
    return [
        dict(event.attributes or {})
        for span in exporter.get_finished_spans()
        for event in span.events
        if event.name == "audit"
    ]


async def test_the_middleware_audits_a_success_on_the_message_span(
    tracer: Tracer, exporter: InMemorySpanExporter, audit_log: pytest.LogCaptureFixture
) -> None:
    bus = audited_bus(tracer)
    command = CreateInvite(email="a@example.com", requested_by="admin@example.com")

    assert await bus.send(command) == 101

    [event] = audit_events(exporter)
    assert event["audit.action"] == "CREATE_INVITE"
    assert event["audit.result"] == "success"
    assert event["audit.resource_id"] == "101"  # by default, what the handler returned
    assert event["audit.resource_type"] == "invite"
    assert event["audit.business_request_id"] == str(command.request_id)
    assert [r.audit for r in audit_records(audit_log)] == [event]  # type: ignore[attr-defined]


async def test_a_permission_error_is_audited_as_denied_and_re_raised(
    tracer: Tracer, exporter: InMemorySpanExporter, audit_log: pytest.LogCaptureFixture
) -> None:
    bus = audited_bus(tracer, resource_id=lambda message, result: message.invite_id)

    with pytest.raises(PermissionError, match="not your invite"):
        await bus.send(RevokeInvite(invite_id=5))

    [event] = audit_events(exporter)
    assert event["audit.result"] == "denied"
    assert event["audit.resource_id"] == "5"
    assert event["audit.error_type"] == "PermissionError"


async def test_other_exceptions_are_audited_as_error(
    tracer: Tracer, exporter: InMemorySpanExporter, audit_log: pytest.LogCaptureFixture
) -> None:
    bus = audited_bus(tracer)

    with pytest.raises(ValueError, match="expiry"):
        await bus.send(CreateInvite(email="a@example.com", expires_in_days=-1))

    [event] = audit_events(exporter)
    assert event["audit.result"] == "error"
    assert event["audit.resource_id"] == "unknown"
    assert event["audit.error_type"] == "ValueError"


async def test_the_denied_exception_types_are_configurable(
    tracer: Tracer, exporter: InMemorySpanExporter, audit_log: pytest.LogCaptureFixture
) -> None:
    bus = audited_bus(tracer, denied=NotAllowed)

    with pytest.raises(NotAllowed):
        await bus.send(RevokeInvite(invite_id=0))
    with pytest.raises(PermissionError):
        await bus.send(RevokeInvite(invite_id=1))

    assert [e["audit.result"] for e in audit_events(exporter)] == ["denied", "error"]


async def test_subclasses_are_audited_and_unlisted_messages_are_not(
    tracer: Tracer, exporter: InMemorySpanExporter, audit_log: pytest.LogCaptureFixture
) -> None:
    bus = audited_bus(tracer)
    bus.register(CreateVipInvite, lambda: type("H", (), {"handle": _returns_7})())

    assert await bus.send(Ping()) == "pong"
    await bus.send(CreateVipInvite(email="vip@example.com"))

    assert [e["audit.action"] for e in audit_events(exporter)] == ["CREATE_INVITE"]
    assert len(audit_records(audit_log)) == 1


async def _returns_7(self: object, command: BaseMessage) -> int:
    return 7


async def test_actions_resource_type_and_payload_can_be_computed_from_the_message(
    tracer: Tracer, exporter: InMemorySpanExporter, audit_log: pytest.LogCaptureFixture
) -> None:
    bus = Mediator()
    bus.add_middleware(span_middleware(tracer))
    bus.add_middleware(
        AuditMiddleware(
            lambda m: f"HANDLE_{type(m).__name__.upper()}" if m.requested_by else None,
            resource_type=lambda m: type(m).__name__.lower(),
            include_payload=True,
        )
    )

    async def create(command: CreateInvite) -> int:
        return 1

    bus.register(CreateInvite, create)
    await bus.send(CreateInvite(email="anonymous@example.com"))
    await bus.send(CreateInvite(email="jane@example.com", requested_by="jane"))

    [event] = audit_events(exporter)
    assert event["audit.action"] == "HANDLE_CREATEINVITE"
    assert event["audit.resource_type"] == "createinvite"
    assert json.loads(event["audit.payload"])["email"] == "***"
    assert "jane@example.com" not in audit_log.text


def test_the_docstring_examples_run() -> None:
    import doctest

    from python_cqrs_core.integrations import audit as module

    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
