"""The guide's "Why Use BaseQuery/BaseCommand?" section: the six benefits and the
real-world scenario, run as written.

The guide's code is copied verbatim; lines marked ``# filled in`` supply what it
leaves out.  Where the guide shows only a log line (the correlation example, the audit
trail, the real-world scenario), the test writes that line from the message fields, in
the guide's format, and checks the guide's claim about it.
"""

# ruff: noqa: UP017 - the guide writes timezone.utc; its code is kept verbatim

import logging
import re
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError

from python_cqrs_core import BaseCommand, BaseQuery, FrozenInstanceError

from . import InMemoryUserRepository, RecordingMetrics

logger = logging.getLogger(__name__)

TRACING_FIELDS = {"request_id", "correlation_id", "requested_by", "requested_at"}


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture):
    """``log()`` returns the messages the guide's code logged so far, in order."""
    caplog.set_level(logging.DEBUG, logger=__name__)
    return lambda: [r.getMessage() for r in caplog.records if r.name == __name__]


@pytest.fixture
async def repo() -> InMemoryUserRepository:
    repository = InMemoryUserRepository()
    for _ in range(123):
        await repository.create(name="John", email="john@example.com")
    return repository


# -- 1. Zero-Effort Observability ---------------------------------------------------------


def test_1_plain_pydantic_has_no_tracing_fields():
    # Plain Pydantic (NO observability)
    class GetUserQuery(BaseModel):
        user_id: int
        # No way to track this request through logs

    assert set(GetUserQuery.model_fields) == {"user_id"}
    assert not hasattr(GetUserQuery(user_id=1), "request_id")


def test_1_base_query_adds_the_tracing_fields_automatically():
    # With BaseQuery (FULL observability)
    class GetUserQuery(BaseQuery):
        user_id: int
        # Automatically includes: request_id, correlation_id, requested_by, requested_at

    assert set(GetUserQuery.model_fields) >= TRACING_FIELDS
    query = GetUserQuery(user_id=1)
    assert query.request_id is not None
    assert query.requested_at is not None


# -- 2. Production Debugging --------------------------------------------------------------


class GetUserQuery(BaseQuery):
    user_id: int


async def test_2_without_base_query_the_log_line_says_nothing(repo, log):
    class Handler:  # filled in: the class around the guide's method
        def __init__(self, repo):  # filled in
            self.repo = repo

        # Handler logging
        async def handle(self, query: GetUserQuery):
            logger.info("Processing GetUser")  # ❌ Which request? Who? When?
            return await self.repo.get(query.user_id)

    await Handler(repo).handle(GetUserQuery(user_id=123, requested_by="john@example.com"))
    await Handler(repo).handle(GetUserQuery(user_id=7, requested_by="jane@example.com"))
    assert log() == ["Processing GetUser", "Processing GetUser"]  # indistinguishable


async def test_2_with_base_query_the_log_lines_identify_the_request(repo, log):
    class Handler:  # filled in: the class around the guide's method
        def __init__(self, repo):  # filled in
            self.repo = repo

        # Handler logging
        async def handle(self, query: GetUserQuery):
            logger.info(
                f"[{query.request_id}] Processing GetUser "
                f"for user_id={query.user_id} by {query.requested_by}"
            )
            result = await self.repo.get(query.user_id)

            duration = (datetime.now(timezone.utc) - query.requested_at).total_seconds()
            logger.info(f"[{query.request_id}] Retrieved user in {duration}s")
            return result

    query = GetUserQuery(user_id=123, requested_by="john@example.com")
    user = await Handler(repo).handle(query)

    # Now in logs:
    # [550e8400-...] Processing GetUser for user_id=123 by john@example.com
    # [550e8400-...] Retrieved user in 0.342s
    assert user.id == 123
    processing, retrieved = log()
    assert processing == (
        f"[{query.request_id}] Processing GetUser for user_id=123 by john@example.com"
    )
    assert re.fullmatch(rf"\[{query.request_id}\] Retrieved user in [0-9.e-]+s", retrieved)


# -- 3. Distributed Tracing ---------------------------------------------------------------


class SaveStateCommand(BaseCommand):  # filled in: used by the guide without a definition
    token: str
    entity_id: int


class FinalizeSessionCommand(BaseCommand):  # filled in
    token: str


def short(value: object) -> str:
    """The guide's log lines show the first 8 characters of an id."""
    return str(value)[:8]


class StateHandler:  # filled in: the `handler`, logging in the guide's format
    async def handle(self, command: BaseCommand) -> None:
        name = type(command).__name__.removesuffix("Command")
        ids = short(command.request_id)
        if command.correlation_id is not None:
            ids += f" | correlation: {short(command.correlation_id)}"
        logger.info(f"[{ids}] {name} for token={command.token}")


async def test_3_correlation_links_related_operations(log):
    handler = StateHandler()  # filled in

    # Initial command
    save_cmd = SaveStateCommand(
        token="abc123",
        entity_id=1,
        requested_by="john@example.com"
    )
    await handler.handle(save_cmd)
    # request_id: 550e8400-e29b-41d4-a716-446655440000

    # Related command - link them!
    finalize_cmd = FinalizeSessionCommand(
        token="abc123",
        correlation_id=save_cmd.request_id,  # ← Trace the relationship
        requested_by="john@example.com"
    )
    await handler.handle(finalize_cmd)

    # Logs show the connection:
    # [550e8400] SaveState for token=abc123
    # [abc12345 | correlation: 550e8400] FinalizeSession for token=abc123
    save_line, finalize_line = log()
    assert re.fullmatch(r"\[[0-9a-f]{8}\] SaveState for token=abc123", save_line)
    assert re.fullmatch(
        r"\[[0-9a-f]{8} \| correlation: [0-9a-f]{8}\] FinalizeSession for token=abc123",
        finalize_line,
    )
    save_id = save_line[1:9]
    assert save_id == short(save_cmd.request_id)
    assert finalize_line.startswith(f"[{short(finalize_cmd.request_id)} | correlation: {save_id}]")
    # Searching the logs for the first request's id finds both operations.
    assert [line for line in log() if save_id in line] == [save_line, finalize_line]


# -- 4. Audit Trail for Compliance --------------------------------------------------------


class CreateInviteCommand(BaseCommand):  # filled in: fields as in the guide's other examples
    email: str
    expires_in_days: int


def test_4_audit_trail_records_who_did_what_and_when():
    cmd = CreateInviteCommand(
        email="user@example.com",
        expires_in_days=7,
        requested_by="admin@example.com"  # ← Audit trail
    )

    # Later, in your database/logs:
    # "Invite created by admin@example.com at 2026-02-26 10:30:45 [request: 550e8400]"
    entry = (  # filled in: the entry, from the command's fields
        f"Invite created by {cmd.requested_by} "
        f"at {cmd.requested_at:%Y-%m-%d %H:%M:%S} [request: {short(cmd.request_id)}]"
    )
    match = re.fullmatch(
        r"Invite created by (\S+) at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \[request: ([0-9a-f]{8})\]",
        entry,
    )
    assert match is not None
    assert match.group(1) == "admin@example.com"
    at = datetime.strptime(match.group(2), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
    assert timedelta(0) <= cmd.requested_at - at < timedelta(seconds=1)
    assert str(cmd.request_id).startswith(match.group(3))


# -- 5. Built-in Immutability -------------------------------------------------------------


def test_5_built_in_immutability():
    query = GetUserQuery(user_id=123)
    with pytest.raises(FrozenInstanceError):
        query.user_id = 456  # ❌ FrozenInstanceError
    # Ensures queries/commands can't be tampered with after creation
    assert query.user_id == 123


# -- 6. Performance Monitoring ------------------------------------------------------------


async def test_6_performance_monitoring(repo):
    metrics = RecordingMetrics()

    class Handler:  # filled in: the class around the guide's method
        def __init__(self, repo):  # filled in
            self.repo = repo

        async def handle(self, query: GetUserQuery):
            start = query.requested_at
            result = await self.repo.get(query.user_id)
            duration = (datetime.now(timezone.utc) - start).total_seconds()

            # Send to monitoring system
            metrics.record_query_duration(
                query_type="GetUser",
                duration=duration,
                request_id=str(query.request_id)
            )
            return result

    query = GetUserQuery(user_id=5)
    user = await Handler(repo).handle(query)
    assert user.id == 5
    (recorded,) = metrics.recorded
    assert recorded["query_type"] == "GetUser"
    assert recorded["request_id"] == str(query.request_id)
    assert 0 <= recorded["duration"] < 5


# -- Real-World Scenario ------------------------------------------------------------------


class TokenNotFound(Exception):  # filled in: the scenario's error
    pass


class SaveStateHandler:  # filled in: logs the scenario's "With BaseQuery" line
    async def handle(self, command: SaveStateCommand) -> None:
        try:
            raise TokenNotFound("Token not found")
        except TokenNotFound as e:
            logger.error(
                f"[{short(command.request_id)}] Error: {e} | token={command.token} "
                f"| user={command.requested_by} | at={command.requested_at:%Y-%m-%d %H:%M:%S}"
            )
            raise


async def test_real_world_scenario_finds_the_users_failed_request_in_the_logs(log):
    users = ["alice@example.com", "john@example.com", "bob@example.com"]
    commands = {
        user: SaveStateCommand(token="abc123", entity_id=i, requested_by=user)
        for i, user in enumerate(users)
    }
    for command in commands.values():
        with pytest.raises(TokenNotFound):
            await SaveStateHandler().handle(command)

    # You search logs for their email in requested_by:
    (found,) = [line for line in log() if "user=john@example.com" in line]

    # "[550e8400] Error: Token not found | token=abc123 | user=john@example.com
    #  | at=2026-02-26 10:20:45"
    match = re.fullmatch(
        r"\[([0-9a-f]{8})\] Error: Token not found \| token=abc123 "
        r"\| user=john@example\.com \| at=(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)",
        found,
    )
    assert match is not None
    john = commands["john@example.com"]
    # → Found it immediately! Can now trace the full request flow.
    assert str(john.request_id).startswith(match.group(1))
    assert match.group(2) == f"{john.requested_at:%Y-%m-%d %H:%M:%S}"


# -- The Bottom Line ----------------------------------------------------------------------


def test_same_pydantic_validation_as_a_plain_basemodel():
    class PlainGetUserQuery(BaseModel):
        user_id: int

    for model in (PlainGetUserQuery, GetUserQuery):
        assert model(user_id="42").user_id == 42
        with pytest.raises(ValidationError) as exc_info:
            model(user_id="not a number")
        assert exc_info.value.errors()[0]["loc"] == ("user_id",)
