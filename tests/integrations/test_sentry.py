"""SentryMiddleware against the real sentry-sdk, with a capturing transport (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
import sentry_sdk

from python_cqrs_core import PII, BaseCommand, BaseEvent, Mediator
from python_cqrs_core.integrations.sentry import MECHANISM, SentryMiddleware
from sentry_capture import DSN, CapturingTransport, close_sentry, init_sentry


@pytest.fixture
def sentry() -> Iterator[CapturingTransport]:
    yield init_sentry()
    close_sentry()


class CreateInvite(BaseCommand):
    email: Annotated[str, PII]
    expires_in_days: int = 7


class InviteCreated(BaseEvent):
    invite_id: int


class DatabaseError(Exception):
    pass


def build_bus(**options: Any) -> Mediator:
    bus = Mediator()
    bus.add_middleware(SentryMiddleware(**options))
    return bus


async def test_a_handler_error_is_reported_with_the_message_tags_and_context(
    sentry: CapturingTransport,
) -> None:
    bus = build_bus()
    error = DatabaseError("connection timeout")

    async def create(command: CreateInvite) -> None:
        raise error

    bus.register(CreateInvite, create)
    command = CreateInvite(email="john@example.com", requested_by="john@example.com")

    with pytest.raises(DatabaseError) as raised:
        await bus.send(
            command,
        )
    assert raised.value is error  # re-raised unchanged

    [event] = sentry.events
    assert event["tags"] == {
        "business.request_id": str(command.request_id),
        "correlation_id": str(command.correlation_id),
        "requested_by": "john@example.com",
        "cqrs.type": "command",
        "cqrs.name": "CreateInvite",
        "cqrs.message_type": f"{__name__}.CreateInvite",
    }
    context = event["contexts"]["command"]
    assert context["type"] == "CreateInvite"
    assert context["message_type"] == f"{__name__}.CreateInvite"
    assert context["causation_id"] is None  # a root: null in the context, no tag
    assert context["request_id"] == str(command.request_id)
    assert context["requested_at"] == command.requested_at.isoformat()
    assert "payload" not in context
    assert event["exception"]["values"][-1]["type"] == "DatabaseError"
    assert event["exception"]["values"][-1]["mechanism"] == {"type": MECHANISM, "handled": False}


async def test_everything_sent_while_the_handler_runs_carries_the_tags_and_nothing_after(
    sentry: CapturingTransport,
) -> None:
    bus = build_bus()

    async def create(command: CreateInvite) -> None:
        sentry_sdk.capture_message("sending the invite")

    bus.register(CreateInvite, create)
    command = CreateInvite(email="a@example.com")
    await bus.send(command)
    sentry_sdk.capture_message("after the dispatch")

    inside, after = sentry.events
    assert inside["tags"]["business.request_id"] == str(command.request_id)
    assert "business.request_id" not in after.get("tags", {})
    assert "command" not in after.get("contexts", {})


async def test_concurrent_messages_never_see_each_others_tags(
    sentry: CapturingTransport,
) -> None:
    bus = build_bus()

    async def create(command: CreateInvite) -> None:
        await asyncio.sleep(0.01 if command.expires_in_days == 1 else 0)
        await asyncio.sleep(0)
        raise DatabaseError(command.email)

    bus.register(CreateInvite, create)
    commands = [
        CreateInvite(email=f"user{i}@example.com", expires_in_days=i % 2, requested_by=f"u{i}")
        for i in range(6)
    ]

    results = await asyncio.gather(*(bus.send(c) for c in commands), return_exceptions=True)

    assert all(isinstance(r, DatabaseError) for r in results)
    assert len(sentry.events) == len(commands)
    for event in sentry.events:
        email = event["exception"]["values"][-1]["value"]
        command = next(c for c in commands if c.email == email)
        assert event["tags"]["business.request_id"] == str(command.request_id)
        assert event["tags"]["requested_by"] == command.requested_by
        assert event["contexts"]["command"]["request_id"] == str(command.request_id)


async def test_an_error_is_reported_once_with_the_innermost_message_tags(
    sentry: CapturingTransport,
) -> None:
    bus = build_bus()

    async def create(command: CreateInvite) -> None:
        await bus.publish(InviteCreated(invite_id=1))

    async def on_created(event: InviteCreated) -> None:
        raise DatabaseError("mail queue full")

    bus.register(CreateInvite, create)
    bus.subscribe(InviteCreated, on_created)
    command = CreateInvite(email="a@example.com")

    with pytest.raises(DatabaseError) as raised:
        await bus.send(command)
    sentry_sdk.capture_exception(raised.value)  # what a framework integration would do

    [event] = sentry.events
    assert event["tags"]["cqrs.type"] == "event"
    assert event["tags"]["cqrs.name"] == "InviteCreated"
    assert event["tags"]["causation_id"] == str(command.request_id)
    assert event["tags"]["correlation_id"] == str(command.correlation_id)
    assert event["contexts"]["event"]["causation_id"] == str(command.request_id)


@pytest.mark.filterwarnings("ignore:The send_default_pii option is deprecated")
@pytest.mark.parametrize(
    "options",
    [{}, {"send_default_pii": False}, {"data_collection": {"user_info": False}}],
)
async def test_requested_by_is_not_the_sentry_user_when_personal_data_is_not_allowed(
    options: dict[str, Any],
) -> None:
    sentry = init_sentry(**options)
    bus = build_bus()

    async def create(command: CreateInvite) -> None:
        raise DatabaseError("x")

    bus.register(CreateInvite, create)
    try:
        with pytest.raises(DatabaseError):
            await bus.send(CreateInvite(email="a@example.com", requested_by="john@example.com"))
    finally:
        close_sentry()

    [event] = sentry.events
    assert "user" not in event
    assert event["tags"]["requested_by"] == "john@example.com"


@pytest.mark.filterwarnings("ignore:The send_default_pii option is deprecated")
@pytest.mark.parametrize(
    "options", [{"send_default_pii": True}, {"data_collection": {"user_info": True}}]
)
async def test_requested_by_is_the_sentry_user_when_personal_data_is_allowed(
    options: dict[str, Any],
) -> None:
    transport = init_sentry(**options)
    try:
        bus = build_bus()

        async def create(command: CreateInvite) -> None:
            raise DatabaseError("x")

        bus.register(CreateInvite, create)
        with pytest.raises(DatabaseError):
            await bus.send(CreateInvite(email="a@example.com", requested_by="john@example.com"))
    finally:
        close_sentry()

    [event] = transport.events
    assert event["user"] == {"id": "john@example.com", "username": "john@example.com"}


async def test_the_payload_is_sent_only_when_asked_and_with_personal_data_redacted(
    sentry: CapturingTransport,
) -> None:
    bus = build_bus(include_payload=True)

    async def create(command: CreateInvite) -> None:
        raise DatabaseError("x")

    bus.register(CreateInvite, create)
    with pytest.raises(DatabaseError):
        await bus.send(CreateInvite(email="john@example.com", expires_in_days=3))

    [event] = sentry.events
    payload = event["contexts"]["command"]["payload"]
    assert payload["email"] == "***"
    assert payload["expires_in_days"] == 3
    assert "john@example.com" not in repr(event["contexts"])


async def test_without_an_active_client_the_middleware_only_forwards() -> None:
    assert not sentry_sdk.get_client().is_active()
    bus = build_bus()

    async def create(command: CreateInvite) -> str:
        return command.email

    bus.register(CreateInvite, create)
    assert await bus.send(CreateInvite(email="a@example.com")) == "a@example.com"


def test_the_docstring_examples_run() -> None:
    import doctest

    from python_cqrs_core.integrations import sentry as module

    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


FASTAPI_WITH_SENTRY = """
import asyncio, json
import httpx, sentry_sdk
from fastapi import FastAPI
from sentry_sdk.transport import Transport
from python_cqrs_core import BaseCommand, Mediator
from python_cqrs_core.integrations.asgi import CorrelationIdMiddleware
from python_cqrs_core.integrations.sentry import SentryMiddleware

events = []
class CapturingTransport(Transport):
    def capture_envelope(self, envelope):
        if envelope.get_event() is not None:
            events.append(envelope.get_event())

# default integrations on: Sentry's own Starlette/FastAPI integrations report errors
sentry_sdk.init(
    dsn="{dsn}",
    transport=CapturingTransport({{"dsn": "{dsn}"}}),
    disabled_integrations={disabled},
)

class PlaceOrder(BaseCommand):
    sku: str

bus = Mediator(middleware=[SentryMiddleware()])
async def place(command):
    raise ConnectionError("timeout to postgres")
bus.register(PlaceOrder, place)

app = FastAPI()
app.add_middleware(CorrelationIdMiddleware)
@app.post("/orders")
async def orders():
    await bus.send(PlaceOrder(sku="A"))

async def main():
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/orders", headers={{"X-Correlation-ID": "req-1"}})
    sentry_sdk.flush()
    errors = [e for e in events if "exception" in e]
    print(json.dumps({{"status": response.status_code,
                      "integrations": sorted(sentry_sdk.get_client().integrations),
                      "errors": [{{"tags": e.get("tags", {{}}),
                                  "mechanism": e["exception"]["values"][-1]["mechanism"]}}
                                 for e in errors]}}))

asyncio.run(main())
"""


@pytest.mark.parametrize(
    "disabled",
    [
        "[]",
        "[__import__('sentry_sdk.integrations.dedupe').integrations.dedupe.DedupeIntegration()]",
    ],
    ids=["with Sentry's dedupe", "without Sentry's dedupe"],
)
def test_sentry_fastapi_integration_does_not_report_the_error_a_second_time(
    disabled: str,
) -> None:
    import json
    import subprocess
    import sys

    # a subprocess: Sentry's integrations patch FastAPI for the whole process
    script = FASTAPI_WITH_SENTRY.format(dsn=DSN, disabled=disabled)
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])

    assert result["status"] == 500
    assert {"fastapi", "starlette"} <= set(result["integrations"])
    assert ("dedupe" in result["integrations"]) is (disabled == "[]")
    [error] = result["errors"]
    assert error["mechanism"]["type"] == MECHANISM
    assert error["tags"]["correlation_id"] == "req-1"
    assert error["tags"]["cqrs.name"] == "PlaceOrder"
