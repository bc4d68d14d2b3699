"""The guide's "API Reference" section: every example, and every documented field fact.

The guide's code is copied verbatim; lines marked ``# filled in`` supply what it
leaves out.
"""

# ruff: noqa: UP017 - the guide writes timezone.utc; its code is kept verbatim

from datetime import datetime, timedelta, timezone
from uuid import UUID

import pytest
from pydantic import BaseModel, ValidationError

from python_cqrs_core import (
    BaseCommand,
    BaseQuery,
    FrozenInstanceError,
    ICommand,
    IQuery,
    PaginatedQuery,
)

from . import FakeDb, InMemoryUserRepository, User

# -- Interfaces ---------------------------------------------------------------------------


def test_icommand_marker_usage():
    from python_cqrs_core import ICommand

    class MyCommand(ICommand):
        pass

    assert isinstance(MyCommand(), ICommand)
    assert not isinstance(MyCommand(), IQuery)


async def test_icommand_handler_example():
    from python_cqrs_core import ICommandHandler, BaseCommand  # noqa: I001

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

    handler = CreateUserHandler()  # filled in
    handler.user_repository = InMemoryUserRepository()  # filled in
    assert await handler.handle(CreateUserCommand(name="Ada", email="ada@example.com")) == 1
    assert handler.user_repository.users[1].email == "ada@example.com"


def test_iquery_marker_usage():
    from python_cqrs_core import IQuery

    class MyQuery(IQuery):
        pass

    assert isinstance(MyQuery(), IQuery)
    assert not isinstance(MyQuery(), ICommand)


async def test_iquery_handler_example():
    from python_cqrs_core import IQueryHandler, BaseQuery  # noqa: I001

    class GetUserQuery(BaseQuery):
        user_id: int

    class GetUserHandler(IQueryHandler[GetUserQuery, User]):
        async def handle(self, query: GetUserQuery) -> User:
            return await self.user_repository.get(query.user_id)

    handler = GetUserHandler()  # filled in
    handler.user_repository = InMemoryUserRepository()  # filled in
    await handler.user_repository.create(name="Ada", email="ada@example.com")
    user = await handler.handle(GetUserQuery(user_id=1))
    assert (user.id, user.name) == (1, "Ada")


# -- BaseCommand --------------------------------------------------------------------------


def test_base_command_inheritance_is_basemodel_and_icommand():
    assert issubclass(BaseCommand, BaseModel)
    assert issubclass(BaseCommand, ICommand)
    assert not issubclass(BaseCommand, IQuery)


def test_base_command_example(capsys: pytest.CaptureFixture[str]):
    from python_cqrs_core import BaseCommand

    class CreateUserCommand(BaseCommand):
        name: str
        email: str

    # Usage
    cmd = CreateUserCommand(
        name="John Doe",
        email="john@example.com",
        requested_by="admin@example.com"
    )

    print(cmd.request_id)      # UUID('550e8400-e29b-41d4-a716-446655440000')
    print(cmd.requested_by)    # "admin@example.com"
    print(cmd.requested_at)    # datetime(2026, 2, 26, 10, 30, 45, tzinfo=timezone.utc)

    request_id, requested_by, requested_at = capsys.readouterr().out.splitlines()
    assert UUID(request_id) == cmd.request_id
    assert requested_by == "admin@example.com"
    assert datetime.fromisoformat(requested_at) == cmd.requested_at
    assert cmd.requested_at.tzinfo is not None
    assert cmd.requested_at.utcoffset() == timedelta(0)


class CreateUserCommand(BaseCommand):
    name: str
    email: str


def test_request_id_default_is_a_fresh_uuid4():
    cmd = CreateUserCommand(name="a", email="b")
    assert isinstance(cmd.request_id, UUID)
    assert cmd.request_id.version == 4
    assert CreateUserCommand(name="a", email="b").request_id != cmd.request_id


def test_correlation_id_and_requested_by_default_to_none():
    cmd = CreateUserCommand(name="a", email="b")
    assert cmd.correlation_id is None
    assert cmd.requested_by is None


def test_requested_at_default_is_now_in_utc():
    before = datetime.now(timezone.utc)
    cmd = CreateUserCommand(name="a", email="b")
    after = datetime.now(timezone.utc)
    assert before <= cmd.requested_at <= after
    assert cmd.requested_at.utcoffset() == timedelta(0)


def test_commands_are_immutable_after_creation():
    cmd = CreateUserCommand(name="a", email="b")
    assert CreateUserCommand.model_config["frozen"] is True
    with pytest.raises(FrozenInstanceError):
        cmd.name = "c"  # type: ignore[misc]


# -- BaseQuery ----------------------------------------------------------------------------


def test_base_query_inheritance_is_basemodel_and_iquery():
    assert issubclass(BaseQuery, BaseModel)
    assert issubclass(BaseQuery, IQuery)
    assert not issubclass(BaseQuery, ICommand)


def test_base_query_has_the_same_fields_as_base_command():
    tracing = {"request_id", "correlation_id", "requested_by", "requested_at"}
    assert tracing <= set(BaseQuery.model_fields)
    assert set(BaseQuery.model_fields) == set(BaseCommand.model_fields)
    assert BaseQuery.model_config["frozen"] is True


def test_base_query_example(capsys: pytest.CaptureFixture[str]):
    from python_cqrs_core import BaseQuery

    class GetUserQuery(BaseQuery):
        user_id: int

    # Usage
    query = GetUserQuery(
        user_id=123,
        requested_by="john@example.com"
    )

    print(query.request_id)    # UUID('abc12345-...')
    print(query.user_id)       # 123

    request_id, user_id = capsys.readouterr().out.splitlines()
    assert UUID(request_id) == query.request_id
    assert user_id == "123"
    with pytest.raises(FrozenInstanceError):
        query.user_id = 1  # type: ignore[misc]


# -- PaginatedQuery -----------------------------------------------------------------------


def test_paginated_query_inherits_base_query():
    assert issubclass(PaginatedQuery, BaseQuery)
    assert set(BaseQuery.model_fields) | {"page", "page_size"} == set(
        PaginatedQuery.model_fields
    )


def test_paginated_query_field_defaults_and_constraints():
    class ListUsersQuery(PaginatedQuery):
        status: str = "active"

    query = ListUsersQuery()
    assert (query.page, query.page_size) == (1, 10)
    assert ListUsersQuery(page_size=1).page_size == 1
    assert ListUsersQuery(page_size=100).page_size == 100
    for bad in ({"page": 0}, {"page_size": 0}, {"page_size": 101}):
        with pytest.raises(ValidationError):
            ListUsersQuery(**bad)


async def test_paginated_query_example(capsys: pytest.CaptureFixture[str]):
    db = FakeDb({User: [User(i, f"user{i}", f"u{i}@example.com") for i in range(1, 101)]})

    from python_cqrs_core import PaginatedQuery

    class ListUsersQuery(PaginatedQuery):
        status: str = "active"

    # Page 1
    query = ListUsersQuery(page=1, page_size=20)
    print(query.offset)  # 0

    # Page 3
    query = ListUsersQuery(page=3, page_size=20)
    print(query.offset)  # 40

    # Use in database query
    users = await db.query(User)\
        .offset(query.offset)\
        .limit(query.page_size)\
        .all()

    assert capsys.readouterr().out == "0\n40\n"
    assert db.applied == [("offset", 40), ("limit", 20)]
    assert [u.id for u in users] == list(range(41, 61))
