"""Middleware: ``async (message, call_next) -> result`` around every handler call."""

from __future__ import annotations

import pytest

from python_cqrs_core import (
    BaseCommand,
    BaseEvent,
    BaseMessage,
    BaseQuery,
    CallNext,
    Mediator,
    Middleware,
    correlation_scope,
    current_causation_id,
    current_correlation_id,
    current_message,
)


class CreateUser(BaseCommand):
    name: str


class CreateAdmin(CreateUser):
    pass


class GetUser(BaseQuery):
    user_id: int


class UserCreated(BaseEvent):
    user_id: int


def tracing(label: str, log: list[str]) -> Middleware:
    async def middleware(message: BaseMessage, call_next: CallNext) -> object:
        log.append(f"{label}>{type(message).__name__}")
        result = await call_next(message)
        log.append(f"<{label}")
        return result

    return middleware


@pytest.fixture
def log() -> list[str]:
    return []


@pytest.fixture
def wired(bus: Mediator, log: list[str]) -> Mediator:
    async def create(command: CreateUser) -> str:
        log.append(f"handle {command.name}")
        return command.name

    async def get(query: GetUser) -> int:
        log.append("handle query")
        return query.user_id

    async def on_created(event: UserCreated) -> None:
        log.append("subscriber 1")

    async def on_created_again(event: UserCreated) -> None:
        log.append("subscriber 2")

    bus.register(CreateUser, create)
    bus.register(GetUser, get)
    bus.subscribe(UserCreated, on_created)
    bus.subscribe(UserCreated, on_created_again)
    return bus


async def test_with_no_middleware_the_handler_is_called_directly(wired: Mediator, log):
    assert await wired.send(CreateUser(name="ada")) == "ada"
    assert log == ["handle ada"]


async def test_middleware_runs_in_registration_order_first_added_outermost(wired: Mediator, log):
    wired.add_middleware(tracing("outer", log))
    wired.add_middleware(tracing("inner", log))
    assert await wired.send(CreateUser(name="ada")) == "ada"
    assert log == ["outer>CreateUser", "inner>CreateUser", "handle ada", "<inner", "<outer"]


async def test_event_middleware_wraps_the_delivery_to_all_subscribers_once(wired: Mediator, log):
    wired.add_middleware(tracing("mw", log))
    await wired.publish(UserCreated(user_id=1))
    assert log == ["mw>UserCreated", "subscriber 1", "subscriber 2", "<mw"]


async def test_kinds_restrict_which_messages_a_middleware_sees(wired: Mediator, log):
    wired.add_middleware(tracing("commands", log), kinds=["command"])
    wired.add_middleware(tracing("reads-and-facts", log), kinds=["query", "event"])
    await wired.send(CreateUser(name="ada"))
    await wired.query(GetUser(user_id=1))
    await wired.publish(UserCreated(user_id=1))
    assert log == [
        "commands>CreateUser",
        "handle ada",
        "<commands",
        "reads-and-facts>GetUser",
        "handle query",
        "<reads-and-facts",
        "reads-and-facts>UserCreated",
        "subscriber 1",
        "subscriber 2",
        "<reads-and-facts",
    ]


async def test_message_types_restrict_a_middleware_to_those_types_and_subclasses(
    wired: Mediator, log
):
    wired.add_middleware(tracing("users", log), message_types=[CreateUser])
    await wired.send(CreateAdmin(name="root"))
    await wired.query(GetUser(user_id=1))
    assert log == ["users>CreateAdmin", "handle root", "<users", "handle query"]


async def test_kinds_and_message_types_combine(wired: Mediator, log):
    wired.add_middleware(tracing("never", log), kinds=["query"], message_types=[CreateUser])
    await wired.send(CreateUser(name="ada"))
    await wired.query(GetUser(user_id=1))
    assert log == ["handle ada", "handle query"]


def test_an_unknown_kind_is_rejected(bus: Mediator, log):
    with pytest.raises(ValueError, match="kinds must be among"):
        bus.add_middleware(tracing("x", log), kinds=["commands"])  # type: ignore[list-item]


async def test_middleware_sees_the_stamped_ids_and_the_dispatch_context(wired: Mediator):
    seen: list[tuple[object, ...]] = []

    async def inspect(message: BaseMessage, call_next: CallNext) -> object:
        seen.append(
            (
                message.correlation_id,
                message.causation_id,
                message.requested_by,
                current_message() is message,
                current_correlation_id(),
                current_causation_id(),
            )
        )
        return await call_next(message)

    wired.add_middleware(inspect)
    cmd = CreateUser(name="ada")
    async with correlation_scope("ext-1", requested_by="gateway"):
        await wired.send(cmd)
    assert seen == [("ext-1", None, "gateway", True, "ext-1", cmd.request_id)]


async def test_middleware_sees_the_ids_of_a_child_message(bus: Mediator):
    seen: list[tuple[str, object, object]] = []

    async def inspect(message: BaseMessage, call_next: CallNext) -> object:
        seen.append((type(message).__name__, message.correlation_id, message.causation_id))
        return await call_next(message)

    async def create(command: CreateUser) -> None:
        await bus.publish(UserCreated(user_id=1))

    bus.register(CreateUser, create)
    bus.add_middleware(inspect)
    cmd = CreateUser(name="ada", correlation_id="ext-2")
    await bus.send(cmd)
    assert seen == [("CreateUser", "ext-2", None), ("UserCreated", "ext-2", cmd.request_id)]


async def test_middleware_can_short_circuit_without_calling_the_handler(wired: Mediator, log):
    async def deny(message: BaseMessage, call_next: CallNext) -> object:
        return "denied"

    wired.add_middleware(deny, kinds=["command"])
    assert await wired.send(CreateUser(name="ada")) == "denied"
    assert log == []


async def test_middleware_can_transform_the_result(wired: Mediator):
    async def shout(message: BaseMessage, call_next: CallNext) -> object:
        return str(await call_next(message)).upper()

    wired.add_middleware(shout)
    assert await wired.send(CreateUser(name="ada")) == "ADA"


async def test_middleware_can_pass_a_derived_message_to_the_handler(wired: Mediator, log):
    async def rename(message: BaseMessage, call_next: CallNext) -> object:
        assert isinstance(message, CreateUser)
        return await call_next(message.model_copy(update={"name": "renamed"}))

    wired.add_middleware(rename, kinds=["command"])
    assert await wired.send(CreateUser(name="ada")) == "renamed"


async def test_middleware_sees_handler_exceptions_and_can_translate_them(bus: Mediator):
    async def failing(command: CreateUser) -> None:
        raise KeyError("missing")

    async def translate(message: BaseMessage, call_next: CallNext) -> object:
        try:
            return await call_next(message)
        except KeyError as exc:
            raise LookupError(f"not found: {exc}") from exc

    bus.register(CreateUser, failing)
    bus.add_middleware(translate)
    with pytest.raises(LookupError, match="not found") as exc_info:
        await bus.send(CreateUser(name="ada"))
    assert isinstance(exc_info.value.__cause__, KeyError)


async def test_middleware_added_after_a_dispatch_takes_effect(wired: Mediator, log):
    await wired.send(CreateUser(name="first"))
    wired.add_middleware(tracing("late", log))
    await wired.send(CreateUser(name="second"))
    assert log == ["handle first", "late>CreateUser", "handle second", "<late"]


async def test_a_handler_registered_after_a_dispatch_takes_effect(wired: Mediator, log):
    async def admin(command: CreateAdmin) -> str:
        return "admin handler"

    assert await wired.send(CreateAdmin(name="root")) == "root"
    wired.register(CreateAdmin, admin)
    assert await wired.send(CreateAdmin(name="root")) == "admin handler"


async def test_the_pipeline_is_compiled_once_per_message_type(monkeypatch, log):
    compiled: list[str] = []
    original = Mediator._compile

    def counting_compile(self: Mediator, message: object, index: int):
        compiled.append(type(message).__name__)
        return original(self, message, index)

    monkeypatch.setattr(Mediator, "_compile", counting_compile)
    bus = Mediator()

    async def create(command: CreateUser) -> str:
        return command.name

    bus.register(CreateUser, create)
    bus.add_middleware(tracing("mw", log))
    for name in ("a", "b", "c"):
        await bus.send(CreateUser(name=name))
    await bus.send(CreateAdmin(name="d"))
    await bus.send(CreateAdmin(name="e"))
    assert compiled == ["CreateUser", "CreateAdmin"]

    bus.add_middleware(tracing("late", log))  # invalidates every compiled pipeline
    await bus.send(CreateUser(name="f"))
    await bus.send(CreateUser(name="g"))
    assert compiled == ["CreateUser", "CreateAdmin", "CreateUser"]


async def test_the_same_middleware_serves_several_mediators_independently(log):
    first, second = Mediator(), Mediator()

    async def create(command: CreateUser) -> str:
        return command.name

    for bus in (first, second):
        bus.register(CreateUser, create)
    first.add_middleware(tracing("only-first", log))
    await first.send(CreateUser(name="a"))
    await second.send(CreateUser(name="b"))
    assert log == ["only-first>CreateUser", "<only-first"]
