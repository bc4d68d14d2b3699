"""CorrelationFilter, REQUEST_ID_FORMAT and configure_logging with real log handlers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from python_cqrs_core import BaseCommand, BaseEvent, Mediator, correlation_scope
from python_cqrs_core.integrations.logging import (
    CORRELATION_FIELDS,
    REQUEST_ID_FORMAT,
    CorrelationFilter,
    configure_logging,
    correlation_fields,
)
from python_cqrs_core.integrations.otel import instrument


class CreateUserCommand(BaseCommand):
    name: str


class UserCreated(BaseEvent):
    user_id: int


class SendWelcomeEmail(BaseCommand):
    user_id: int


class ListRecords(logging.Handler):
    """Keeps the records it handles, after its filters ran."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    handler = ListRecords()
    handler.addFilter(CorrelationFilter())
    logger = logging.getLogger("tests.users")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)


log = logging.getLogger("tests.users")


def ids(record: logging.LogRecord) -> dict[str, str]:
    return {key: getattr(record, key) for key in CORRELATION_FIELDS}


EMPTY = dict.fromkeys(CORRELATION_FIELDS, "")


def user_bus() -> Mediator:
    """CreateUserCommand -> UserCreated -> SendWelcomeEmail, each handler logging."""
    bus = Mediator()

    async def create_user(command: CreateUserCommand) -> int:
        log.info("Starting user creation")
        await asyncio.sleep(0)
        await bus.publish(UserCreated(user_id=1))
        return 1

    async def on_user_created(event: UserCreated) -> None:
        log.info("user created")
        await asyncio.sleep(0)
        await bus.send(SendWelcomeEmail(user_id=event.user_id))

    async def send_welcome(command: SendWelcomeEmail) -> None:
        log.info("sending welcome email")

    bus.register(CreateUserCommand, create_user)
    bus.subscribe(UserCreated, on_user_created)
    bus.register(SendWelcomeEmail, send_welcome)
    return bus


async def test_handler_log_line_is_prefixed_with_request_id_with_no_code_in_the_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(logging.Formatter(REQUEST_ID_FORMAT))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    bus = Mediator()

    async def create_user(command: CreateUserCommand) -> int:
        log.info("Starting user creation")
        return 1

    bus.register(CreateUserCommand, create_user)
    command = CreateUserCommand(name="Ada")
    try:
        await bus.send(command)
    finally:
        log.removeHandler(handler)

    assert stream.getvalue() == f"[{command.request_id}] Starting user creation\n"


async def test_records_in_a_chain_carry_the_ids_of_the_message_being_handled(
    records: list[logging.LogRecord],
) -> None:
    command = CreateUserCommand(name="Ada", requested_by="admin@example.com")

    await user_bus().send(command)

    create, created, welcome = records
    correlation = str(command.request_id)  # a root message is its own correlation
    assert ids(create) == {
        **EMPTY,
        "correlation_id": correlation,
        "request_id": str(command.request_id),
        "requested_by": "admin@example.com",
        "message_type": f"{__name__}.CreateUserCommand",
    }
    assert created.message_type == f"{__name__}.UserCreated"  # type: ignore[attr-defined]
    assert created.correlation_id == correlation  # type: ignore[attr-defined]
    assert created.causation_id == str(command.request_id)  # type: ignore[attr-defined]
    assert created.requested_by == "admin@example.com"  # type: ignore[attr-defined]
    assert welcome.message_type == f"{__name__}.SendWelcomeEmail"  # type: ignore[attr-defined]
    assert welcome.correlation_id == correlation  # type: ignore[attr-defined]
    assert welcome.causation_id == created.request_id  # type: ignore[attr-defined]
    assert len({create.request_id, created.request_id, welcome.request_id}) == 3  # type: ignore[attr-defined]


def test_records_outside_any_context_have_every_field_empty(
    records: list[logging.LogRecord],
) -> None:
    log.info("starting up")

    assert ids(records[0]) == EMPTY


def test_records_in_a_correlation_scope_carry_its_correlation_id_and_requested_by(
    records: list[logging.LogRecord],
) -> None:
    with correlation_scope("req-abc-123", requested_by="gateway"):
        log.info("request received")

    assert ids(records[0]) == {**EMPTY, "correlation_id": "req-abc-123", "requested_by": "gateway"}


def test_values_passed_with_extra_are_kept(records: list[logging.LogRecord]) -> None:
    with correlation_scope("req-abc-123"):
        log.info("replayed", extra={"correlation_id": "original-42"})

    assert records[0].correlation_id == "original-42"  # type: ignore[attr-defined]
    assert records[0].cqrs_correlation_id == "req-abc-123"  # type: ignore[attr-defined]


def test_a_request_id_passed_with_extra_keeps_both_ids_under_distinct_names(
    records: list[logging.LogRecord],
) -> None:
    async def main() -> CreateUserCommand:
        bus = Mediator()

        async def create(command: CreateUserCommand) -> None:
            log.info("creating", extra={"request_id": "http-req-42"})

        bus.register(CreateUserCommand, create)
        command = CreateUserCommand(name="ada")
        await bus.send(command)
        return command

    command = asyncio.run(main())
    assert records[0].request_id == "http-req-42"  # type: ignore[attr-defined]
    assert records[0].cqrs_request_id == str(command.request_id)  # type: ignore[attr-defined]


def test_a_format_using_every_field_never_raises_outside_a_context() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(
        logging.Formatter(" ".join(f"{key}=%({key})s" for key in CORRELATION_FIELDS))
    )
    record = logging.makeLogRecord({"msg": "boot"})

    handler.handle(record)

    assert stream.getvalue() == " ".join(f"{key}=" for key in CORRELATION_FIELDS) + "\n"


async def test_concurrent_chains_log_their_own_ids(records: list[logging.LogRecord]) -> None:
    bus = user_bus()
    commands = [CreateUserCommand(name=str(n), correlation_id=f"signup-{n}") for n in range(30)]

    await asyncio.gather(*(bus.send(command) for command in commands))

    assert len(records) == 90
    request_ids = {str(command.request_id): command.correlation_id for command in commands}
    for record in records:
        if record.message_type == f"{__name__}.CreateUserCommand":  # type: ignore[attr-defined]
            assert request_ids[record.request_id] == record.correlation_id  # type: ignore[attr-defined]
    by_correlation: dict[str, list[str]] = {}
    for record in records:
        short_type = record.message_type.rsplit(".", 1)[-1]  # type: ignore[attr-defined]
        by_correlation.setdefault(record.correlation_id, []).append(short_type)  # type: ignore[attr-defined]
    assert by_correlation == {
        f"signup-{n}": ["CreateUserCommand", "UserCreated", "SendWelcomeEmail"] for n in range(30)
    }


async def test_records_carry_the_trace_and_span_ids_of_the_recording_span(
    records: list[logging.LogRecord],
) -> None:
    provider = TracerProvider()
    bus = user_bus()
    instrument(bus, provider)
    seen_spans: list[tuple[str, str]] = []

    from opentelemetry import trace

    async def record_span(event: UserCreated) -> None:
        # Each handler runs in its own span: the line it logs carries that span's ids.
        context = trace.get_current_span().get_span_context()
        seen_spans.append((f"{context.trace_id:032x}", f"{context.span_id:016x}"))
        log.info("span seen")

    bus.subscribe(UserCreated, record_span)

    await bus.send(CreateUserCommand(name="Ada"))

    seen = next(r for r in records if r.getMessage() == "span seen")
    assert (seen.trace_id, seen.span_id) == seen_spans[0]  # type: ignore[attr-defined]
    assert len({r.trace_id for r in records}) == 1  # type: ignore[attr-defined]
    assert len({r.span_id for r in records}) == len(records) == 4  # type: ignore[attr-defined]
    assert len(seen.trace_id) == 32 and len(seen.span_id) == 16  # type: ignore[attr-defined]


def test_correlation_fields_are_all_strings_outside_any_context() -> None:
    assert correlation_fields() == EMPTY


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """Restore the root logger and structlog after configure_logging changed them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    structlog.reset_defaults()


async def test_configure_logging_json_lines_parse_and_hold_the_ids(
    root_logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    command = CreateUserCommand(name="Ada", correlation_id="signup-1", requested_by="admin")

    await user_bus().send(command)
    structlog.get_logger("tests.structured").info("outside", order_id=7)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    handled = [line for line in lines if line["logger"] == "tests.users"]
    assert [line["message"] for line in handled] == [
        "Starting user creation",
        "user created",
        "sending welcome email",
    ]
    assert handled[0]["request_id"] == str(command.request_id)
    assert handled[0]["level"] == "info"
    assert {line["correlation_id"] for line in handled} == {"signup-1"}
    assert {line["requested_by"] for line in handled} == {"admin"}
    (outside,) = [line for line in lines if line["logger"] == "tests.structured"]
    assert outside["message"] == "outside"
    assert outside["order_id"] == 7
    assert {key: outside[key] for key in CORRELATION_FIELDS} == EMPTY


async def test_configure_logging_routes_structlog_events_with_the_ids_of_the_handler(
    root_logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    bus = Mediator()
    slog = structlog.get_logger("tests.structured")

    async def create_user(command: CreateUserCommand) -> int:
        slog.info("processing_command")
        return 1

    bus.register(CreateUserCommand, create_user)
    command = CreateUserCommand(name="Ada")

    await bus.send(command)

    (line,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert line["message"] == "processing_command"
    assert line["request_id"] == str(command.request_id)
    assert line["message_type"] == f"{__name__}.CreateUserCommand"


def test_configure_logging_twice_keeps_one_handler(root_logger: logging.Logger) -> None:
    first, second = io.StringIO(), io.StringIO()
    before = len(root_logger.handlers)

    configure_logging(stream=first)
    configure_logging(stream=second, level=logging.WARNING)
    logging.getLogger("tests.users").warning("disk almost full")

    assert len(root_logger.handlers) == before + 1
    assert first.getvalue() == ""
    assert second.getvalue().count("disk almost full") == 1
    assert root_logger.level == logging.WARNING


def test_configure_logging_console_lines_have_greppable_key_values(
    root_logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)

    with correlation_scope("req-abc-123"):
        logging.getLogger("tests.users").info("request received")

    output = stream.getvalue()
    assert "request received" in output
    assert "correlation_id=req-abc-123" in output
    assert "\x1b" not in output  # no colour codes when the stream is not a terminal


def test_configure_logging_applies_extra_processors(root_logger: logging.Logger) -> None:
    stream = io.StringIO()

    def add_service(logger: object, method_name: str, event_dict: dict[str, object]) -> object:
        event_dict["service"] = "users"
        return event_dict

    configure_logging(json=True, stream=stream, extra_processors=[add_service])
    logging.getLogger("tests.users").info("hello")

    assert json.loads(stream.getvalue())["service"] == "users"


def test_configure_logging_console_tracebacks_do_not_print_local_variables(
    root_logger: logging.Logger,
) -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    secret_email = "ada@example.com"

    try:
        raise ValueError("invalid invite")
    except ValueError:
        logging.getLogger("tests.users").exception("invite failed")

    output = stream.getvalue()
    assert "ValueError: invalid invite" in output
    assert secret_email not in output


NO_EXTRAS_SCRIPT = """
import asyncio, io, json, logging, sys
sys.modules["opentelemetry"] = None  # importing them now raises ImportError
sys.modules["structlog"] = None
from python_cqrs_core import BaseCommand, Mediator
from python_cqrs_core.integrations.logging import configure_logging

class CreateUserCommand(BaseCommand):
    name: str

async def create_user(command):
    logging.getLogger("users").info("Starting user creation")

stream = io.StringIO()
configure_logging(json=True, stream=stream)
bus = Mediator()
bus.register(CreateUserCommand, create_user)
command = CreateUserCommand(name="Ada")
asyncio.run(bus.send(command))
line = json.loads(stream.getvalue())
print(json.dumps([line["request_id"] == str(command.request_id), line["trace_id"]]))
"""


def test_logging_works_without_opentelemetry_and_structlog_installed() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", NO_EXTRAS_SCRIPT], capture_output=True, text=True, check=True
    )

    assert json.loads(result.stdout) == [True, ""]


@pytest.mark.parametrize(
    "module_name",
    ["python_cqrs_core.integrations.logging", "python_cqrs_core.integrations.structlog"],
)
def test_docstring_examples_run(module_name: str) -> None:
    import doctest
    import importlib

    module = importlib.import_module(module_name)
    tests = [test for test in doctest.DocTestFinder().find(module) if test.examples]
    runner = doctest.DocTestRunner()
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)

    assert tests
    assert runner.failures == 0, "".join(report)
