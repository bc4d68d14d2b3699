"""The guide's "Design Patterns" section, run as written.

The guide's code is copied verbatim; lines marked ``# filled in`` supply what it
leaves out (the handlers' ``user_repository``).
"""

import pytest

from python_cqrs_core import (
    BaseCommand,
    BaseQuery,
    ICommand,
    ICommandHandler,
    IQuery,
    IQueryHandler,
    Mediator,
)

from . import InMemoryUserRepository, User


# Command and its dedicated handler
class CreateUserCommand(BaseCommand):
    name: str
    email: str

class CreateUserHandler(ICommandHandler[CreateUserCommand, int]):
    async def handle(self, command: CreateUserCommand) -> int:
        # Single responsibility: create a user
        return await self.user_repository.create(command)

# Query and its dedicated handler
class GetUserQuery(BaseQuery):
    user_id: int

class GetUserHandler(IQueryHandler[GetUserQuery, User]):
    async def handle(self, query: GetUserQuery) -> User:
        # Single responsibility: fetch a user
        return await self.user_repository.get(query.user_id)


@pytest.fixture
def repository() -> InMemoryUserRepository:
    return InMemoryUserRepository()


def with_repository(handler, repository):  # filled in: the guide's handlers read it
    handler.user_repository = repository
    return handler


def test_cqrs_pattern_separates_commands_from_queries():
    # Commands: Modify state; Queries: Read state.
    assert isinstance(CreateUserCommand(name="a", email="b"), ICommand)
    assert not isinstance(CreateUserCommand(name="a", email="b"), IQuery)
    assert isinstance(GetUserQuery(user_id=1), IQuery)
    assert not isinstance(GetUserQuery(user_id=1), ICommand)


async def test_each_command_and_query_has_a_dedicated_handler(repository):
    create = with_repository(CreateUserHandler(), repository)
    get = with_repository(GetUserHandler(), repository)

    command = CreateUserCommand(name="Ada", email="ada@example.com")
    user_id = await create.handle(command)
    user = await get.handle(GetUserQuery(user_id=user_id))

    assert repository.created_from == [command]
    assert (user.id, user.name, user.email) == (user_id, "Ada", "ada@example.com")


async def test_handlers_are_easy_to_test_in_isolation():
    class FakeRepository:  # a test double is all a handler needs
        async def get(self, user_id):
            return User(user_id, "Stub", "stub@example.com")

    user = await with_repository(GetUserHandler(), FakeRepository()).handle(GetUserQuery(user_id=9))
    assert (user.id, user.name) == (9, "Stub")


async def test_handlers_compose_with_middleware(repository):
    # "Composable with middleware: Add logging, validation, authorization"
    bus = Mediator()
    bus.register(CreateUserCommand, with_repository(CreateUserHandler(), repository))
    bus.register(GetUserQuery, with_repository(GetUserHandler(), repository))
    audit: list[str] = []

    async def logging_middleware(message, call_next):
        audit.append(f"{type(message).__name__} by {message.requested_by}")
        return await call_next(message)

    async def authorization_middleware(message, call_next):
        if message.requested_by is None:
            raise PermissionError(f"{type(message).__name__} needs requested_by")
        return await call_next(message)

    bus.add_middleware(logging_middleware)
    bus.add_middleware(authorization_middleware, kinds=["command"])

    user_id = await bus.send(
        CreateUserCommand(name="Ada", email="ada@example.com", requested_by="admin")
    )
    user = await bus.query(GetUserQuery(user_id=user_id))
    with pytest.raises(PermissionError, match="CreateUserCommand needs requested_by"):
        await bus.send(CreateUserCommand(name="Eve", email="eve@example.com"))

    assert user.name == "Ada"
    assert len(repository.users) == 1
    assert audit == [
        "CreateUserCommand by admin",
        "GetUserQuery by None",
        "CreateUserCommand by None",
    ]
