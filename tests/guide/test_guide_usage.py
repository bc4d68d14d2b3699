"""The guide's "Usage Guide" section, every example run as written.

The guide's code is copied verbatim (imports included); the lines marked
``# filled in:`` give its handlers the collaborators it leaves out.
"""

# ruff: noqa: UP017 - the guide writes timezone.utc; its code is kept verbatim

import logging
import re
from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest

from python_cqrs_core import BaseCommand, BaseQuery, ICommandHandler, IQueryHandler

from . import FakeDb, InMemoryUserRepository, RecordingMetrics, User

logger = logging.getLogger(__name__)
user_repository = InMemoryUserRepository()  # filled in: the Complete Example's repository


@pytest.fixture(autouse=True)
def fresh_repository():
    user_repository.users.clear()
    user_repository.created_from.clear()


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture):
    """``log()`` returns the messages the guide's code logged so far, in order."""
    caplog.set_level(logging.DEBUG, logger=__name__)
    return lambda: [r.getMessage() for r in caplog.records if r.name == __name__]


# -- Commands -----------------------------------------------------------------------------


async def test_commands():
    from python_cqrs_core import BaseCommand, ICommandHandler

    class CreateUserCommand(BaseCommand):
        name: str
        email: str

    class CreateUserHandler(ICommandHandler[CreateUserCommand, int]):
        async def handle(self, command: CreateUserCommand) -> int:
            # Create user logic
            user_id = await self.user_repository.create(
                name=command.name,
                email=command.email
            )
            return user_id

    # Usage
    cmd = CreateUserCommand(
        name="John Doe",
        email="john@example.com",
        requested_by="admin"
    )
    handler = CreateUserHandler()
    handler.user_repository = user_repository  # filled in
    user_id = await handler.handle(cmd)

    assert user_id == 1
    stored = user_repository.users[user_id]
    assert (stored.name, stored.email) == ("John Doe", "john@example.com")
    assert cmd.requested_by == "admin"


# -- Queries ------------------------------------------------------------------------------


async def test_queries():
    from python_cqrs_core import BaseQuery, IQueryHandler

    class GetUserQuery(BaseQuery):
        user_id: int

    class GetUserHandler(IQueryHandler[GetUserQuery, User]):
        async def handle(self, query: GetUserQuery) -> User:
            # Fetch user logic
            return await self.user_repository.get(query.user_id)

    await user_repository.create(name="Ada", email="ada@example.com")  # filled in: user 1

    # Usage
    query = GetUserQuery(user_id=1, requested_by="admin")
    handler = GetUserHandler()
    handler.user_repository = user_repository  # filled in
    user = await handler.handle(query)

    assert isinstance(user, User)
    assert (user.id, user.name) == (1, "Ada")


# -- Paginated Queries --------------------------------------------------------------------


async def test_paginated_queries():
    db = FakeDb({User: [User(i, f"user{i}", f"u{i}@example.com") for i in range(1, 51)]})

    from python_cqrs_core import PaginatedQuery

    class ListUsersQuery(PaginatedQuery):
        status: str = "active"

    query = ListUsersQuery(page=2, page_size=20, status="active")
    offset = query.offset  # 20
    limit = query.page_size  # 20

    # Use in database query
    users = await db.query(User).offset(query.offset).limit(query.page_size).all()

    assert (offset, limit) == (20, 20)
    assert db.applied == [("offset", 20), ("limit", 20)]
    assert [u.id for u in users] == list(range(21, 41))


# -- Tracing Fields -----------------------------------------------------------------------


class CreateUserCommand(BaseCommand):
    name: str
    email: str


def test_tracing_fields(capsys: pytest.CaptureFixture[str]):
    cmd = CreateUserCommand(name="John", email="john@example.com")

    print(cmd.request_id)       # UUID
    print(cmd.correlation_id)   # Optional[UUID]
    print(cmd.requested_by)     # Optional[str]
    print(cmd.requested_at)     # datetime

    request_id, correlation_id, requested_by, requested_at = capsys.readouterr().out.splitlines()
    assert UUID(request_id) == cmd.request_id
    assert UUID(request_id).version == 4
    assert (correlation_id, requested_by) == ("None", "None")
    assert datetime.fromisoformat(requested_at) == cmd.requested_at
    assert cmd.requested_at.utcoffset() == timedelta(0)


def test_request_id_is_auto_generated_and_unique():
    first = CreateUserCommand(name="John", email="john@example.com")
    second = CreateUserCommand(name="John", email="john@example.com")
    assert isinstance(first.request_id, UUID)
    assert first.request_id != second.request_id


class SaveStateCommand(BaseCommand):  # filled in: the guide uses it without defining it
    token: str
    entity_id: int


class FinalizeSessionCommand(BaseCommand):  # filled in
    token: str


class SessionHandler:  # filled in: the `handler` of the correlation example
    def __init__(self) -> None:
        self.handled: list[BaseCommand] = []

    async def handle(self, command: BaseCommand) -> None:
        self.handled.append(command)


async def test_correlation_id_links_a_command_to_a_previous_one():
    handler = SessionHandler()  # filled in

    # Initial command
    save_cmd = SaveStateCommand(token="abc123", entity_id=1)
    await handler.handle(save_cmd)

    # Related command - link them
    finalize_cmd = FinalizeSessionCommand(
        token="abc123",
        correlation_id=save_cmd.request_id  # Link to previous operation
    )
    await handler.handle(finalize_cmd)

    assert handler.handled == [save_cmd, finalize_cmd]
    assert save_cmd.correlation_id is None  # Default: None
    assert finalize_cmd.correlation_id == save_cmd.request_id
    assert finalize_cmd.request_id != save_cmd.request_id


def test_requested_by_is_the_audit_trail():
    cmd = CreateUserCommand(
        name="Jane",
        email="jane@example.com",
        requested_by="admin@example.com"  # Audit trail
    )

    assert cmd.requested_by == "admin@example.com"
    assert CreateUserCommand(name="Jane", email="jane@example.com").requested_by is None


def test_requested_at_measures_processing_duration(log):
    cmd = CreateUserCommand(name="John", email="john@example.com")
    duration = (datetime.now(timezone.utc) - cmd.requested_at).total_seconds()
    logger.info(f"Command processing took {duration}s")

    (line,) = log()
    match = re.fullmatch(r"Command processing took (\S+)s", line)
    assert match is not None
    assert 0 <= float(match.group(1)) < 5


# -- Complete Example ---------------------------------------------------------------------


async def test_complete_example(capsys: pytest.CaptureFixture[str], log):
    from python_cqrs_core import BaseCommand, BaseQuery, ICommandHandler, IQueryHandler  # noqa: I001
    from datetime import datetime, timezone
    import logging

    logger = logging.getLogger(__name__)

    # Domain Model
    class User:
        def __init__(self, id: int, name: str, email: str):
            self.id = id
            self.name = name
            self.email = email

    # Command
    class CreateUserCommand(BaseCommand):
        name: str
        email: str

    class CreateUserHandler(ICommandHandler[CreateUserCommand, int]):
        def __init__(self, repository):
            self.repository = repository

        async def handle(self, command: CreateUserCommand) -> int:
            logger.info(
                f"[{command.request_id}] Creating user {command.email} "
                f"requested by {command.requested_by} at {command.requested_at}"
            )

            user_id = await self.repository.create(
                name=command.name,
                email=command.email
            )

            duration = (datetime.now(timezone.utc) - command.requested_at).total_seconds()
            logger.info(f"[{command.request_id}] User created in {duration}s")

            return user_id

    # Query
    class GetUserQuery(BaseQuery):
        user_id: int

    class GetUserHandler(IQueryHandler[GetUserQuery, User]):
        def __init__(self, repository):
            self.repository = repository

        async def handle(self, query: GetUserQuery) -> User:
            logger.info(
                f"[{query.request_id}] Fetching user {query.user_id} "
                f"requested by {query.requested_by}"
            )

            user = await self.repository.get(query.user_id)

            return user

    # Usage
    async def main():
        # Create user
        create_cmd = CreateUserCommand(
            name="John Doe",
            email="john@example.com",
            requested_by="admin@example.com"
        )
        create_handler = CreateUserHandler(user_repository)
        user_id = await create_handler.handle(create_cmd)

        # Fetch user (linked via correlation_id)
        get_query = GetUserQuery(
            user_id=user_id,
            correlation_id=create_cmd.request_id,  # Link to create operation
            requested_by="admin@example.com"
        )
        get_handler = GetUserHandler(user_repository)
        user = await get_handler.handle(get_query)

        print(f"Created and fetched user: {user.name}")

        return create_cmd, get_query  # filled in: for the assertions below

    create_cmd, get_query = await main()

    assert capsys.readouterr().out == "Created and fetched user: John Doe\n"
    assert get_query.correlation_id == create_cmd.request_id
    created, timed, fetched = log()
    assert created == (
        f"[{create_cmd.request_id}] Creating user john@example.com "
        f"requested by admin@example.com at {create_cmd.requested_at}"
    )
    assert re.fullmatch(rf"\[{create_cmd.request_id}\] User created in [0-9.e-]+s", timed)
    assert fetched == (
        f"[{get_query.request_id}] Fetching user 1 requested by admin@example.com"
    )


# -- Best Practices -----------------------------------------------------------------------


def test_always_set_requested_by():
    # ✅ Good
    cmd = CreateUserCommand(
        name="John",
        email="john@example.com",
        requested_by="admin@example.com"
    )
    good = cmd  # filled in

    # ❌ Bad (no audit trail)
    cmd = CreateUserCommand(
        name="John",
        email="john@example.com"
    )

    assert good.requested_by == "admin@example.com"
    assert cmd.requested_by is None


class LoggingCreateUserHandler(ICommandHandler[CreateUserCommand, int]):  # filled in: the class
    def __init__(self, repository):  # filled in
        self.repository = repository

    async def handle(self, command: CreateUserCommand) -> int:
        logger.info(f"[{command.request_id}] Starting user creation")

        try:
            user_id = await self.repository.create(command)
            logger.info(f"[{command.request_id}] User created successfully")
            return user_id
        except Exception as e:
            logger.error(f"[{command.request_id}] Failed to create user: {e}")
            raise


async def test_log_with_request_id_on_success(log):
    cmd = CreateUserCommand(name="John", email="john@example.com")
    assert await LoggingCreateUserHandler(user_repository).handle(cmd) == 1
    assert log() == [
        f"[{cmd.request_id}] Starting user creation",
        f"[{cmd.request_id}] User created successfully",
    ]
    assert user_repository.created_from == [cmd]


async def test_log_with_request_id_on_failure(log):
    class BrokenRepository:  # filled in: a repository that fails
        async def create(self, command):
            raise ConnectionError("database unreachable")

    cmd = CreateUserCommand(name="John", email="john@example.com")
    with pytest.raises(ConnectionError):
        await LoggingCreateUserHandler(BrokenRepository()).handle(cmd)
    assert log() == [
        f"[{cmd.request_id}] Starting user creation",
        f"[{cmd.request_id}] Failed to create user: database unreachable",
    ]


class GetUserQuery(BaseQuery):
    user_id: int


class TrackedGetUserHandler(IQueryHandler[GetUserQuery, User]):  # filled in: the class
    def __init__(self, repository, metrics):  # filled in
        self.repository = repository
        self.metrics = metrics

    async def handle(self, query: GetUserQuery) -> User:
        metrics = self.metrics  # filled in
        start = query.requested_at

        user = await self.repository.get(query.user_id)

        duration = (datetime.now(timezone.utc) - start).total_seconds()
        metrics.record_query_duration("GetUser", duration)

        if duration > 1.0:
            logger.warning(
                f"[{query.request_id}] Slow query: GetUser "
                f"took {duration}s for user_id={query.user_id}"
            )

        return user


async def test_track_performance_records_the_duration(log):
    metrics = RecordingMetrics()
    user_id = await user_repository.create(name="Ada", email="ada@example.com")
    query = GetUserQuery(user_id=user_id)

    user = await TrackedGetUserHandler(user_repository, metrics).handle(query)

    assert user.name == "Ada"
    (recorded,) = metrics.recorded
    assert recorded["query_type"] == "GetUser"
    assert 0 <= recorded["duration"] < 1.0
    assert log() == []  # fast: no warning


async def test_track_performance_warns_about_a_slow_query(log):
    metrics = RecordingMetrics()
    user_id = await user_repository.create(name="Ada", email="ada@example.com")
    # A query created two seconds ago (for example, queued): requested_at is the start.
    query = GetUserQuery(
        user_id=user_id, requested_at=datetime.now(timezone.utc) - timedelta(seconds=2)
    )

    await TrackedGetUserHandler(user_repository, metrics).handle(query)

    assert metrics.recorded[0]["duration"] >= 2.0
    (warning,) = log()
    assert re.fullmatch(
        rf"\[{query.request_id}\] Slow query: GetUser took [0-9.]+s for user_id={user_id}",
        warning,
    )
