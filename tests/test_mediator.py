"""The mediator: registration, routing by kind and type, and error semantics."""

from __future__ import annotations

import asyncio
import traceback

import pytest

from python_cqrs_core import (
    BaseCommand,
    BaseEvent,
    BaseMessage,
    BaseQuery,
    CQRSError,
    DuplicateHandlerError,
    EventHandlersFailed,
    HandlerNotFoundError,
    ICommand,
    ICommandHandler,
    IEventHandler,
    IQueryHandler,
    Mediator,
)


class CreateUser(BaseCommand):
    name: str


class CreateAdmin(CreateUser):
    pass


class GetUser(BaseQuery):
    user_id: int


class UserEvent(BaseEvent):
    user_id: int


class UserCreated(UserEvent):
    pass


class AdminCreated(UserCreated):
    pass


class CreateUserHandler(ICommandHandler[CreateUser, str]):
    instances = 0

    def __init__(self) -> None:
        type(self).instances += 1

    async def handle(self, command: CreateUser) -> str:
        return f"created {command.name} by handler #{id(self)}"


class GetUserHandler(IQueryHandler[GetUser, dict[str, int]]):
    async def handle(self, query: GetUser) -> dict[str, int]:
        return {"id": query.user_id}


class Boom(Exception):
    pass


def raise_boom_in_handler() -> None:
    raise Boom("handler failed")


# -- registration forms ----------------------------------------------------------------


async def test_a_handler_instance_handles_every_command(bus: Mediator):
    handler = CreateUserHandler()
    bus.register(CreateUser, handler)
    first = await bus.send(CreateUser(name="ada"))
    second = await bus.send(CreateUser(name="bob"))
    assert first == f"created ada by handler #{id(handler)}"
    assert second == f"created bob by handler #{id(handler)}"


async def test_a_handler_class_is_a_factory_instantiated_per_message(bus: Mediator):
    bus.register(CreateUser, CreateUserHandler)
    before = CreateUserHandler.instances
    await bus.send(CreateUser(name="a"))
    await bus.send(CreateUser(name="b"))
    assert CreateUserHandler.instances == before + 2


async def test_a_zero_argument_factory_is_called_per_message(bus: Mediator):
    built: list[GetUserHandler] = []

    def factory() -> GetUserHandler:
        built.append(GetUserHandler())
        return built[-1]

    bus.register(GetUser, factory)
    assert await bus.query(GetUser(user_id=1)) == {"id": 1}
    assert await bus.query(GetUser(user_id=2)) == {"id": 2}
    assert len(built) == 2
    assert built[0] is not built[1]


async def test_an_async_function_is_called_with_the_message(bus: Mediator):
    async def get_user(query: GetUser) -> int:
        return query.user_id + 1

    bus.register(GetUser, get_user)
    assert await bus.query(GetUser(user_id=41)) == 42


async def test_the_decorator_registers_a_class_as_a_factory_and_returns_it(bus: Mediator):
    @bus.handler(GetUser)
    class Decorated(IQueryHandler[GetUser, int]):
        async def handle(self, query: GetUser) -> int:
            return query.user_id * 10

    assert isinstance(Decorated, type)
    assert await bus.query(GetUser(user_id=4)) == 40
    assert bus.handler_names(GetUser) == [Decorated.__qualname__]


async def test_the_decorator_registers_a_function_and_subscribes_events(bus: Mediator):
    seen: list[str] = []

    @bus.handler(CreateUser)
    async def create(command: CreateUser) -> str:
        return command.name

    @bus.handler(UserCreated)
    async def on_created(event: UserCreated) -> None:
        seen.append("first")

    @bus.handler(UserCreated)
    async def again(event: UserCreated) -> None:
        seen.append("second")

    assert await create(CreateUser(name="direct")) == "direct"  # returned unchanged
    assert await bus.send(CreateUser(name="ada")) == "ada"
    await bus.publish(UserCreated(user_id=1))
    assert seen == ["first", "second"]


def test_a_second_handler_for_one_command_type_is_an_error(bus: Mediator):
    bus.register(CreateUser, CreateUserHandler())
    with pytest.raises(DuplicateHandlerError, match="CreateUser already has a handler"):
        bus.register(CreateUser, CreateUserHandler())
    assert issubclass(DuplicateHandlerError, CQRSError)
    assert issubclass(DuplicateHandlerError, ValueError)


def test_a_second_decorated_handler_for_one_query_type_is_an_error(bus: Mediator):
    bus.register(GetUser, GetUserHandler())
    with pytest.raises(DuplicateHandlerError, match="GetUser"):

        @bus.handler(GetUser)
        async def other(query: GetUser) -> None:
            return None


def test_registering_an_event_asks_for_subscribe(bus: Mediator):
    with pytest.raises(TypeError, match=r"UserCreated is an event: use subscribe\(\)"):
        bus.register(UserCreated, GetUserHandler())


def test_subscribing_a_command_asks_for_register(bus: Mediator):
    with pytest.raises(TypeError, match=r"CreateUser is not an event: use register\(\)"):
        bus.subscribe(CreateUser, GetUserHandler())  # type: ignore[arg-type]


@pytest.mark.parametrize("message_type", [int, "CreateUser", BaseMessage])
def test_registering_something_that_is_not_a_message_type_is_an_error(bus: Mediator, message_type):
    with pytest.raises(TypeError):
        bus.register(message_type, GetUserHandler())


def test_a_marker_only_class_cannot_be_registered(bus: Mediator):
    class MyCommand(ICommand):
        pass

    with pytest.raises(TypeError, match="BaseCommand, BaseQuery or BaseEvent subclass"):
        bus.register(MyCommand, GetUserHandler())  # type: ignore[arg-type]


def test_a_handler_with_a_synchronous_handle_is_rejected_at_registration(bus: Mediator):
    class SyncHandler:
        def handle(self, query: GetUser) -> int:
            return 1

    with pytest.raises(TypeError, match=r"SyncHandler.handle must be an async def method"):
        bus.register(GetUser, SyncHandler())


def test_something_that_is_neither_handler_function_nor_factory_is_rejected(bus: Mediator):
    with pytest.raises(TypeError, match="a handler must have an async handle"):
        bus.register(GetUser, 42)


def test_handler_names_lists_the_handlers_in_delivery_order(bus: Mediator):
    async def first(event: UserEvent) -> None: ...

    async def second(event: UserCreated) -> None: ...

    bus.register(GetUser, GetUserHandler())
    bus.subscribe(UserEvent, first)
    bus.subscribe(UserCreated, second)
    assert bus.handler_names(GetUser) == ["GetUserHandler"]
    assert bus.handler_names(CreateUser) == []
    assert bus.handler_names(UserCreated) == [second.__qualname__, first.__qualname__]
    assert bus.handler_names(UserEvent) == [first.__qualname__]


# -- routing -----------------------------------------------------------------------------


async def test_process_routes_each_kind_to_its_dispatcher(bus: Mediator):
    seen: list[str] = []

    async def on_created(event: UserCreated) -> None:
        seen.append(f"event {event.user_id}")

    bus.register(CreateUser, CreateUserHandler())
    bus.register(GetUser, GetUserHandler())
    bus.subscribe(UserCreated, on_created)
    assert (await bus.process(CreateUser(name="ada"))).startswith("created ada")
    assert await bus.process(GetUser(user_id=3)) == {"id": 3}
    assert await bus.process(UserCreated(user_id=5)) is None
    assert seen == ["event 5"]


async def test_a_handler_registered_for_a_base_command_handles_its_subclasses(bus: Mediator):
    bus.register(CreateUser, CreateUserHandler())
    assert (await bus.send(CreateAdmin(name="root"))).startswith("created root")


async def test_a_subclass_handler_takes_precedence_over_the_base_handler(bus: Mediator):
    async def admin_handler(command: CreateAdmin) -> str:
        return "admin"

    bus.register(CreateUser, CreateUserHandler())
    await bus.send(CreateAdmin(name="x"))  # compiled with the base handler
    bus.register(CreateAdmin, admin_handler)
    assert await bus.send(CreateAdmin(name="x")) == "admin"
    assert (await bus.send(CreateUser(name="y"))).startswith("created y")


async def test_event_subscribers_run_own_class_first_then_bases_in_mro_order(bus: Mediator):
    order: list[str] = []

    def recorder(label: str):
        async def record(event: UserEvent) -> None:
            order.append(f"{label}:{type(event).__name__}")

        return record

    bus.subscribe(BaseEvent, recorder("any-1"))
    bus.subscribe(UserEvent, recorder("user-1"))
    bus.subscribe(AdminCreated, recorder("admin-1"))
    bus.subscribe(UserCreated, recorder("created-1"))
    bus.subscribe(UserEvent, recorder("user-2"))
    bus.subscribe(UserCreated, recorder("created-2"))
    bus.subscribe(AdminCreated, recorder("admin-2"))

    await bus.publish(AdminCreated(user_id=1))
    assert order == [
        "admin-1:AdminCreated",
        "admin-2:AdminCreated",
        "created-1:AdminCreated",
        "created-2:AdminCreated",
        "user-1:AdminCreated",
        "user-2:AdminCreated",
        "any-1:AdminCreated",
    ]
    order.clear()
    await bus.publish(UserCreated(user_id=2))
    assert order == [
        "created-1:UserCreated",
        "created-2:UserCreated",
        "user-1:UserCreated",
        "user-2:UserCreated",
        "any-1:UserCreated",
    ]


async def test_an_event_with_no_subscribers_is_fine(bus: Mediator):
    assert await bus.publish(UserCreated(user_id=1)) is None


async def test_a_subscriber_added_after_a_publish_receives_the_next_events(bus: Mediator):
    seen: list[int] = []

    async def late(event: UserCreated) -> None:
        seen.append(event.user_id)

    await bus.publish(UserCreated(user_id=1))
    bus.subscribe(UserCreated, late)
    await bus.publish(UserCreated(user_id=2))
    assert seen == [2]


async def test_publish_returns_none_even_when_the_single_subscriber_returns_a_value(
    bus: Mediator,
):
    async def returns_something(event: UserCreated) -> str:
        return "not a result"

    bus.subscribe(UserCreated, returns_something)
    assert await bus.publish(UserCreated(user_id=1)) is None


# -- wrong kind, no handler --------------------------------------------------------------


async def test_a_command_with_no_handler_raises_naming_its_type(bus: Mediator):
    with pytest.raises(HandlerNotFoundError, match="no handler registered for command CreateUser"):
        await bus.send(CreateUser(name="a"))
    assert issubclass(HandlerNotFoundError, LookupError)


async def test_a_query_with_no_handler_raises_naming_its_type(bus: Mediator):
    with pytest.raises(HandlerNotFoundError, match="query GetUser"):
        await bus.query(GetUser(user_id=1))


@pytest.mark.parametrize(
    ("method", "message", "expected"),
    [
        ("send", GetUser(user_id=1), r"GetUser is a query: use query\(\), not send\(\)"),
        ("send", UserCreated(user_id=1), r"UserCreated is an? event: use publish\(\), not send"),
        ("query", CreateUser(name="a"), r"CreateUser is a command: use send\(\), not query"),
        ("query", UserCreated(user_id=1), r"use publish\(\), not query\(\)"),
        ("publish", CreateUser(name="a"), r"use send\(\), not publish\(\)"),
        ("publish", GetUser(user_id=1), r"use query\(\), not publish\(\)"),
    ],
)
async def test_the_wrong_method_raises_type_error_naming_the_right_one(
    bus: Mediator, method, message, expected
):
    bus.register(CreateUser, CreateUserHandler())
    bus.register(GetUser, GetUserHandler())
    with pytest.raises(TypeError, match=expected):
        await getattr(bus, method)(message)


@pytest.mark.parametrize("method", ["send", "query", "publish"])
async def test_something_that_is_not_a_message_is_rejected(bus: Mediator, method):
    with pytest.raises(TypeError, match=rf"{method}\(\) takes a Base\w+ instance, got dict"):
        await getattr(bus, method)({"name": "a"})


async def test_a_marker_only_command_instance_is_rejected_by_process(bus: Mediator):
    class MyCommand(ICommand):
        pass

    with pytest.raises(TypeError, match=r"send\(\) takes a BaseCommand instance, got MyCommand"):
        await bus.process(MyCommand())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="object is not a command, query or event"):
        await bus.process(object())  # type: ignore[arg-type]


# -- errors -----------------------------------------------------------------------------


async def test_a_failing_handler_exception_reaches_the_caller_unchanged(bus: Mediator):
    raised: list[BaseException] = []

    async def failing(command: CreateUser) -> None:
        try:
            raise_boom_in_handler()
        except Boom as exc:
            raised.append(exc)
            raise

    bus.register(CreateUser, failing)
    with pytest.raises(Boom) as exc_info:
        await bus.send(CreateUser(name="a"))
    assert exc_info.value is raised[0]
    frames = [frame.name for frame in traceback.extract_tb(exc_info.value.__traceback__)]
    assert frames[-2:] == ["failing", "raise_boom_in_handler"]


async def test_a_failing_class_handler_keeps_its_type_and_traceback(bus: Mediator):
    class Failing(ICommandHandler[CreateUser, None]):
        async def handle(self, command: CreateUser) -> None:
            raise_boom_in_handler()

    bus.register(CreateUser, Failing)
    with pytest.raises(Boom, match="handler failed") as exc_info:
        await bus.send(CreateUser(name="a"))
    frames = [frame.name for frame in traceback.extract_tb(exc_info.value.__traceback__)]
    assert frames[-2:] == ["handle", "raise_boom_in_handler"]


async def test_events_published_before_a_command_handler_failed_stay_delivered(bus: Mediator):
    delivered: list[int] = []

    async def on_created(event: UserCreated) -> None:
        delivered.append(event.user_id)

    async def create(command: CreateUser) -> None:
        await bus.publish(UserCreated(user_id=1))
        raise Boom("after publishing")

    bus.register(CreateUser, create)
    bus.subscribe(UserCreated, on_created)
    with pytest.raises(Boom):
        await bus.send(CreateUser(name="a"))
    assert delivered == [1]


async def test_one_failing_subscriber_does_not_stop_the_others_and_is_reraised(bus: Mediator):
    ran: list[str] = []
    error = Boom("subscriber 2 failed")

    async def first(event: UserCreated) -> None:
        ran.append("first")

    async def second(event: UserCreated) -> None:
        ran.append("second")
        raise error

    async def third(event: UserCreated) -> None:
        ran.append("third")

    for subscriber in (first, second, third):
        bus.subscribe(UserCreated, subscriber)
    with pytest.raises(Boom) as exc_info:
        await bus.publish(UserCreated(user_id=1))
    assert exc_info.value is error
    assert ran == ["first", "second", "third"]


async def test_a_single_failing_sole_subscriber_is_reraised_unchanged(bus: Mediator):
    error = Boom("only one")

    async def only(event: UserCreated) -> None:
        raise error

    bus.subscribe(UserCreated, only)
    with pytest.raises(Boom) as exc_info:
        await bus.publish(UserCreated(user_id=1))
    assert exc_info.value is error


async def test_several_failing_subscribers_raise_an_exception_group_in_order(bus: Mediator):
    ran: list[str] = []
    first_error, second_error = Boom("first"), KeyError("second")

    async def failing_first(event: UserCreated) -> None:
        ran.append("failing_first")
        raise first_error

    async def succeeding(event: UserCreated) -> None:
        ran.append("succeeding")

    async def failing_second(event: UserCreated) -> None:
        ran.append("failing_second")
        raise second_error

    for subscriber in (failing_first, succeeding, failing_second):
        bus.subscribe(UserCreated, subscriber)
    with pytest.raises(EventHandlersFailed) as exc_info:
        await bus.publish(UserCreated(user_id=1))
    group = exc_info.value
    assert isinstance(group, ExceptionGroup)
    assert list(group.exceptions) == [first_error, second_error]
    assert str(group).startswith("2 of 3 handlers of UserCreated failed")
    assert ran == ["failing_first", "succeeding", "failing_second"]


async def test_the_exception_group_can_be_handled_with_except_star(bus: Mediator):
    async def a(event: UserCreated) -> None:
        raise Boom("a")

    async def b(event: UserCreated) -> None:
        raise KeyError("b")

    bus.subscribe(UserCreated, a)
    bus.subscribe(UserCreated, b)
    caught: list[str] = []
    try:
        await bus.publish(UserCreated(user_id=1))
    except* Boom as group:
        caught.append(f"boom x{len(group.exceptions)}")
    except* KeyError as group:
        caught.append(f"key x{len(group.exceptions)}")
    assert caught == ["boom x1", "key x1"]


async def test_cancellation_in_a_handler_is_not_swallowed(bus: Mediator):
    async def cancelled(command: CreateUser) -> None:
        raise asyncio.CancelledError

    bus.register(CreateUser, cancelled)
    with pytest.raises(asyncio.CancelledError):
        await bus.send(CreateUser(name="a"))


async def test_cancellation_in_a_subscriber_stops_the_delivery(bus: Mediator):
    ran: list[str] = []

    async def cancelled(event: UserCreated) -> None:
        ran.append("cancelled")
        raise asyncio.CancelledError

    async def later(event: UserCreated) -> None:
        ran.append("later")

    bus.subscribe(UserCreated, cancelled)
    bus.subscribe(UserCreated, later)
    with pytest.raises(asyncio.CancelledError):
        await bus.publish(UserCreated(user_id=1))
    assert ran == ["cancelled"]


async def test_cancelling_the_caller_task_cancels_the_running_handler(bus: Mediator):
    started = asyncio.Event()
    outcome: list[str] = []

    async def slow(command: CreateUser) -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            outcome.append("handler cancelled")
            raise

    bus.register(CreateUser, slow)
    task = asyncio.create_task(bus.send(CreateUser(name="a")))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["handler cancelled"]


async def test_constructor_accepts_middleware_and_listeners():
    calls: list[str] = []

    async def middleware(message: BaseMessage, call_next):
        calls.append("middleware")
        return await call_next(message)

    bus = Mediator(middleware=[middleware], listeners=[lambda event: calls.append(event.phase)])
    bus.register(GetUser, GetUserHandler())
    assert await bus.query(GetUser(user_id=9)) == {"id": 9}
    assert calls == ["middleware", "started", "completed"]


async def test_events_handled_by_an_ievent_handler_class(bus: Mediator):
    seen: list[int] = []

    class Audit(IEventHandler[UserCreated]):
        async def handle(self, event: UserCreated) -> None:
            seen.append(event.user_id)

    bus.subscribe(UserCreated, Audit())
    bus.subscribe(UserCreated, Audit)
    await bus.publish(UserCreated(user_id=3))
    assert seen == [3, 3]


async def test_an_object_with_an_async_call_method_is_called_with_the_message(bus: Mediator):
    class Callable_:
        def __init__(self) -> None:
            self.seen: list[CreateUser] = []

        async def __call__(self, command: CreateUser) -> str:
            self.seen.append(command)
            return "called"

    handler = Callable_()
    bus.register(CreateUser, handler)
    command = CreateUser(name="a")
    assert await bus.send(command) == "called"
    assert handler.seen == [command]
    assert bus.handler_names(CreateUser) == [Callable_.__qualname__]


# -- an honest API surface -------------------------------------------------------------


@pytest.mark.parametrize(
    "handler",
    [
        lambda message: "sync",  # a lambda taking the message
        pytest.param("def", id="plain def"),
    ],
)
def test_a_synchronous_function_taking_the_message_fails_at_registration(bus: Mediator, handler):
    if handler == "def":

        def handler(command: CreateUser) -> str:
            return "sync"

    with pytest.raises(TypeError, match="async def"):
        bus.register(CreateUser, handler)
    with pytest.raises(TypeError, match="async def"):
        bus.subscribe(UserCreated, handler)


def test_send_query_publish_and_process_are_documented_methods():
    text = __import__("pydoc").render_doc(Mediator, renderer=__import__("pydoc").plaintext)
    for name in ("send", "query", "publish", "process"):
        assert f"{name}(self, " in text, name
        assert getattr(Mediator, name).__doc__


def test_an_instance_dispatcher_has_the_name_signature_and_doc_of_its_method(bus: Mediator):
    import inspect

    for name, parameter in (("send", "command"), ("query", "query"), ("publish", "event")):
        dispatch = getattr(bus, name)
        assert dispatch.__name__ == name
        assert dispatch.__doc__ == getattr(Mediator, name).__doc__
        assert list(inspect.signature(dispatch).parameters) == [parameter]


async def test_the_class_methods_dispatch_like_the_instance_ones(bus: Mediator):
    bus.register(CreateUser, lambda: CreateUserHandler())
    bus.register(GetUser, GetUserHandler())
    assert (await Mediator.send(bus, CreateUser(name="ada"))).startswith("created ada")
    assert await Mediator.query(bus, GetUser(user_id=7)) == {"id": 7}
    assert await Mediator.publish(bus, UserCreated(user_id=1)) is None


# -- handler middleware -----------------------------------------------------------------


async def test_handler_middleware_wraps_each_subscriber_inside_the_message_middleware(
    bus: Mediator,
):
    calls: list[str] = []

    async def outer(message: BaseMessage, call_next):
        calls.append("message:start")
        try:
            return await call_next(message)
        finally:
            calls.append("message:end")

    async def per_handler(message: BaseMessage, handler: str, call_next):
        calls.append(f"handler:{handler.rsplit('.', 1)[-1]}")
        return await call_next(message)

    async def first(event: UserCreated) -> None:
        calls.append("first")

    async def second(event: UserCreated) -> None:
        calls.append("second")

    bus.subscribe(UserCreated, first)
    bus.subscribe(UserCreated, second)
    bus.add_middleware(outer)
    bus.add_handler_middleware(per_handler)
    await bus.publish(UserCreated(user_id=1))
    assert calls == [
        "message:start",
        "handler:first",
        "first",
        "handler:second",
        "second",
        "message:end",
    ]


async def test_handler_middleware_can_be_restricted_and_removed(bus: Mediator):
    seen: list[str] = []

    async def per_handler(message: BaseMessage, handler: str, call_next):
        seen.append(type(message).__name__)
        return await call_next(message)

    bus.register(CreateUser, lambda: CreateUserHandler())
    bus.register(GetUser, GetUserHandler())
    bus.add_handler_middleware(per_handler, kinds=["query"])
    await bus.send(CreateUser(name="a"))
    await bus.query(GetUser(user_id=1))
    assert seen == ["GetUser"]
    bus.remove_middleware(per_handler)
    await bus.query(GetUser(user_id=2))
    assert seen == ["GetUser"]
    with pytest.raises(ValueError, match="not middleware"):
        bus.remove_middleware(per_handler)


async def test_remove_middleware_takes_message_middleware_out_of_the_pipeline(bus: Mediator):
    seen: list[str] = []

    async def mw(message: BaseMessage, call_next):
        seen.append("mw")
        return await call_next(message)

    bus.register(GetUser, GetUserHandler())
    bus.add_middleware(mw)
    await bus.query(GetUser(user_id=1))
    bus.remove_middleware(mw)
    await bus.query(GetUser(user_id=1))
    assert seen == ["mw"]
