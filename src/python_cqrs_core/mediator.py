"""The mediator: dispatch with automatic correlation and causation propagation.

::

    bus = Mediator()
    bus.register(CreateUserCommand, CreateUserHandler(repo))  # one handler per type
    bus.subscribe(UserCreated, SendWelcomeEmail())            # any number per event
    user_id = await bus.send(CreateUserCommand(name="Ada", email="ada@example.com"))

**Propagation.**  Every message dispatched through the mediator, and every message
built while one is being handled, carries a correlation id and a causation id:

- a *root* message (dispatched while no handler runs) keeps the correlation id it
  has; else takes the ambient one of a :class:`~python_cqrs_core.correlation_scope`;
  else its own ``request_id``.  Its ``causation_id`` stays ``None``.
- a message built or dispatched inside a handler inherits the handled message's
  correlation id, gets the handled message's ``request_id`` as ``causation_id`` and
  its ``requested_by`` when it has none.  Values set explicitly always win.
- :meth:`Mediator.process` takes an explicit ``correlation_id=``, which beats all.

Messages are immutable, so the ids are decided before the handler runs: a field that
is still unset (``None``) when the message is dispatched is filled in *once*, on the
message object itself, and never changed afterwards.  The handler, the store and the
logs therefore all see the same ids, and the caller's reference shows them too.  A
message is dispatched into one causation tree; to do the same thing again, build a
new message (it gets a new ``request_id``).

**Pipeline.**  Middleware is ``async (message, call_next) -> result``, registered
for every message or for some kinds or types, and runs in registration order (the
first added is the outermost).  The chain is compiled once per message type, so a
mediator with no middleware and no listeners does nothing per dispatch but a dict
lookup, the context switch and the handler call.

**Errors.**  A handler's exception reaches the caller unchanged (same object, same
traceback), after listeners were told it failed.  Events already published by a
failing command handler stay published: they were delivered when they were
published.  When one subscriber of an event fails, the other subscribers still run;
one failure is then re-raised as it is, several as
:class:`~python_cqrs_core.EventHandlersFailed` (an ``ExceptionGroup``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast, overload
from uuid import UUID

from .context import _trace
from .errors import DuplicateHandlerError, EventHandlersFailed, HandlerNotFoundError
from .lifecycle import HandlerEvent, Listener
from .messages import BaseCommand, BaseEvent, BaseMessage, BaseQuery, MessageKind, message_kind
from .names import LOGGER
from .propagation import SETTLED, stamp, with_correlation
from .validation import validate_correlation_id

__all__ = ["CallNext", "HandlerMiddleware", "Mediator", "Middleware"]

logger = logging.getLogger(LOGGER)

CallNext = Callable[[BaseMessage], Awaitable[Any]]
"""What a middleware calls to run the rest of the pipeline."""
Middleware = Callable[[BaseMessage, CallNext], Awaitable[Any]]
"""``async def middleware(message, call_next) -> result``."""
HandlerMiddleware = Callable[[BaseMessage, str, CallNext], Awaitable[Any]]
"""``async def middleware(message, handler_name, call_next) -> result``: runs around
each handler of a message (each subscriber of an event), inside the message's own
middleware."""
_Invoke = Callable[[Any], Awaitable[Any]]

_H = TypeVar("_H")
_M = TypeVar("_M", bound=BaseMessage)
_R = TypeVar("_R")
_KIND_METHOD = {"command": "send", "query": "query", "event": "publish"}
_ARTICLE = {"command": "a", "query": "a", "event": "an"}
_perf_ns = time.perf_counter_ns


@dataclass(frozen=True, slots=True)
class _HandlerSpec:
    name: str
    invoke: _Invoke


@dataclass(frozen=True, slots=True)
class _MiddlewareEntry:
    middleware: Any  # Middleware or HandlerMiddleware
    kinds: frozenset[str] | None
    message_types: tuple[type, ...] | None

    def applies_to(self, kind: str, message_type: type) -> bool:
        if self.kinds is not None and kind not in self.kinds:
            return False
        return self.message_types is None or issubclass(message_type, self.message_types)


def _handler_spec(handler: object) -> _HandlerSpec:
    """Normalise what ``register``/``subscribe`` accept into one async callable.

    - an object with an ``async def handle(message)`` method: called directly;
    - an ``async def`` function taking the message, or an object whose
      ``async def __call__`` takes it: called directly;
    - a class, or any other zero-argument callable: a factory, called for every
      message to build the handler that handles it (a fresh instance per message).
    """
    if isinstance(handler, type) or not callable(getattr(handler, "handle", None)):
        if inspect.iscoroutinefunction(handler):
            return _HandlerSpec(_name_of(handler), cast(_Invoke, handler))
        call = getattr(type(handler), "__call__", None)  # noqa: B004 - the class's own method
        if not isinstance(handler, type) and inspect.iscoroutinefunction(call):
            # an instance with ``async def __call__(self, message)``
            return _HandlerSpec(_name_of(type(handler)), cast(_Invoke, handler))
        if not callable(handler):
            raise TypeError(
                f"a handler must have an async handle() method, be an async function or a "
                f"zero-argument factory; got {handler!r}"
            )
        if not isinstance(handler, type) and _takes_arguments(handler):
            raise TypeError(
                f"{_name_of(handler)} is a synchronous function taking arguments: a handler "
                "function must be `async def` (a synchronous callable is only accepted as a "
                "zero-argument factory that returns a handler)"
            )
        factory = cast(Callable[[], Any], handler)

        async def invoke_fresh(message: Any) -> Any:
            return await factory().handle(message)

        return _HandlerSpec(_name_of(handler), invoke_fresh)
    handle = handler.handle  # type: ignore[attr-defined]
    if not inspect.iscoroutinefunction(handle):
        raise TypeError(f"{_name_of(type(handler))}.handle must be an async def method")
    return _HandlerSpec(_name_of(type(handler)), handle)


def _takes_arguments(function: object) -> bool:
    """Whether calling ``function()`` with no arguments would fail for lack of one."""
    try:
        signature = inspect.signature(function)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a builtin without a signature: assume a factory
        return False
    return any(
        p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in signature.parameters.values()
    )


def _name_of(obj: object) -> str:
    return getattr(obj, "__qualname__", None) or repr(obj)


def _bind(middleware: Middleware, call_next: CallNext) -> CallNext:
    async def step(message: BaseMessage) -> Any:
        return await middleware(message, call_next)

    return step


def _bind_handler(middleware: HandlerMiddleware, name: str, call_next: CallNext) -> CallNext:
    async def step(message: BaseMessage) -> Any:
        return await middleware(message, name, call_next)

    return step


_trace_get, _trace_set, _trace_reset = _trace.get, _trace.set, _trace.reset


def _dispatcher(
    routes: dict[type, _Invoke],
    compile_route: Callable[[object], _Invoke],
    documented: Callable[..., Any],
    *,
    returns_result: bool = True,
) -> Callable[[Any], Awaitable[Any]]:
    """Build one dispatch function (send / query / publish) of one mediator.

    This is the hot path, so it is a closure over its own routes dict, stored on the
    instance where it shadows the documented method of the same name (``documented``,
    whose name, docstring and signature it takes): calling ``bus.send(cmd)`` then binds
    no method and looks up no attribute, and an extra coroutine layer is avoided.
    """

    async def dispatch(message: Any, /) -> Any:
        route = routes.get(type(message))
        if route is None:
            route = compile_route(message)
        if SETTLED not in message.__pydantic_fields_set__:  # propagation.is_settled, inlined
            stamp(message, _trace_get())
        token = _trace_set(message)
        try:
            result = await route(message)
        finally:
            _trace_reset(token)
        return result if returns_result else None

    dispatch.__name__ = documented.__name__
    dispatch.__qualname__ = documented.__qualname__
    dispatch.__doc__ = documented.__doc__
    signature = inspect.signature(documented)
    dispatch.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]  # bound: no ``self``
    )
    return dispatch


_KIND_INDEX: dict[MessageKind, int] = {"command": 0, "query": 1, "event": 2}
_INDEX_KIND: tuple[MessageKind, ...] = ("command", "query", "event")


class Mediator:
    """Routes commands and queries to their handler and events to their subscribers,
    propagating correlation and causation ids.  See the module documentation."""

    def __init__(
        self,
        *,
        middleware: Iterable[Middleware] = (),
        listeners: Iterable[Listener] = (),
    ) -> None:
        self._handlers: dict[type, _HandlerSpec] = {}
        self._subscribers: dict[type, list[_HandlerSpec]] = {}
        self._middleware: list[_MiddlewareEntry] = []
        self._handler_middleware: list[_MiddlewareEntry] = []
        self._listeners: list[Listener] = []
        # Compiled pipelines, one dict per kind, indexed by _KIND_INDEX.
        self._routes: tuple[dict[type, _Invoke], ...] = ({}, {}, {})
        # The dispatch functions shadow the documented methods below (see _dispatcher).
        methods: tuple[Callable[..., Any], ...] = (Mediator.send, Mediator.query, Mediator.publish)
        dispatchers = [
            _dispatcher(
                routes,
                functools.partial(self._compile, index=index),
                method,
                returns_result=method is not Mediator.publish,
            )
            for index, (routes, method) in enumerate(zip(self._routes, methods, strict=True))
        ]
        vars(self).update(zip(("send", "query", "publish"), dispatchers, strict=True))
        self._dispatch_by_kind: dict[MessageKind, Callable[[Any], Awaitable[Any]]] = dict(
            zip(_INDEX_KIND, dispatchers, strict=True)
        )
        for mw in middleware:
            self.add_middleware(mw)
        for listener in listeners:
            self.add_listener(listener)

    # -- registration ---------------------------------------------------------------

    def register(self, message_type: type[BaseMessage], handler: object) -> None:
        """Register the one handler of a command or query type.

        ``handler`` is an instance with ``async def handle(message)``, an ``async def``
        function, or a zero-argument factory (a class, a lambda) called per message.
        The handler also receives subclasses of ``message_type`` that have no handler
        of their own.  A second handler for the same type raises
        :class:`~python_cqrs_core.DuplicateHandlerError`.
        """
        kind = self._kind_of(message_type)
        if kind == "event":
            raise TypeError(
                f"{message_type.__name__} is an event: use subscribe() (events may have "
                "any number of handlers)"
            )
        if message_type in self._handlers:
            raise DuplicateHandlerError(
                f"{message_type.__name__} already has a handler "
                f"({self._handlers[message_type].name}); a {kind} has exactly one"
            )
        self._handlers[message_type] = _handler_spec(handler)
        self._invalidate()

    def subscribe(self, event_type: type[BaseEvent], handler: object) -> None:
        """Add a handler of an event type (and of its subclasses).

        Subscribers of one event run one after another: first those subscribed to
        the event's own class, then those of its base classes in method resolution
        order; within one class, in the order they were subscribed.
        """
        if self._kind_of(event_type) != "event":
            raise TypeError(f"{event_type.__name__} is not an event: use register()")
        self._subscribers.setdefault(event_type, []).append(_handler_spec(handler))
        self._invalidate()

    def handler(self, message_type: type[BaseMessage]) -> Callable[[_H], _H]:
        """Decorator form of :meth:`register` / :meth:`subscribe`::

            @bus.handler(CreateUserCommand)
            class CreateUserHandler(ICommandHandler[CreateUserCommand, int]):
                async def handle(self, command: CreateUserCommand) -> int: ...

        A decorated class is a factory (instantiated for every message); a decorated
        ``async def`` function is called with the message.  Returns it unchanged.
        """

        def decorate(obj: _H) -> _H:
            if self._kind_of(message_type) == "event":
                self.subscribe(cast(type[BaseEvent], message_type), obj)
            else:
                self.register(message_type, obj)
            return obj

        return decorate

    def add_middleware(
        self,
        middleware: Middleware,
        *,
        kinds: Iterable[MessageKind] | None = None,
        message_types: Iterable[type[BaseMessage]] | None = None,
    ) -> None:
        """Add ``async (message, call_next) -> result`` around every handler call.

        ``kinds`` (``"command"``, ``"query"``, ``"event"``) and ``message_types``
        (classes, subclasses included) restrict which messages it sees.  Middleware
        runs in the order added; it sees the message with its ids already resolved
        and the dispatch context set, so logging inside it is correlated.  For an
        event, middleware wraps the delivery to all subscribers once.
        """
        self._middleware.append(self._entry(middleware, kinds, message_types))
        self._invalidate()

    @staticmethod
    def _entry(
        middleware: object,
        kinds: Iterable[MessageKind] | None,
        message_types: Iterable[type[BaseMessage]] | None,
    ) -> _MiddlewareEntry:
        kind_set = None if kinds is None else frozenset(kinds)
        if kind_set is not None and not kind_set <= set(_KIND_INDEX):
            raise ValueError(f"kinds must be among {sorted(_KIND_INDEX)}, got {sorted(kind_set)}")
        types = None if message_types is None else tuple(message_types)
        return _MiddlewareEntry(middleware, kind_set, types)

    def add_handler_middleware(
        self,
        middleware: HandlerMiddleware,
        *,
        kinds: Iterable[MessageKind] | None = None,
        message_types: Iterable[type[BaseMessage]] | None = None,
    ) -> None:
        """Add ``async (message, handler_name, call_next) -> result`` around each handler.

        Where :meth:`add_middleware` wraps the dispatch of a message once (all the
        subscribers of an event together), handler middleware wraps every handler on
        its own: a span or a timer per subscriber.  It runs inside the message's
        middleware, in the order added, and is restricted like it.
        """
        self._handler_middleware.append(self._entry(middleware, kinds, message_types))
        self._invalidate()

    def remove_middleware(self, middleware: Middleware | HandlerMiddleware) -> None:
        """Remove middleware added with :meth:`add_middleware` or
        :meth:`add_handler_middleware` (every registration of it); raises
        :class:`ValueError` if it was never added."""
        removed = False
        for entries in (self._middleware, self._handler_middleware):
            kept = [entry for entry in entries if entry.middleware is not middleware]
            removed |= len(kept) != len(entries)
            entries[:] = kept
        if not removed:
            raise ValueError(f"{middleware!r} is not middleware of this mediator")
        self._invalidate()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(HandlerEvent)`` when a handler starts, completes or fails."""
        self._listeners.append(listener)
        self._invalidate()

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; raises :class:`ValueError` if it was not added."""
        self._listeners.remove(listener)
        self._invalidate()

    def handler_names(self, message_type: type[BaseMessage]) -> list[str]:
        """Names of the handlers a message of this type is delivered to, in order."""
        if self._kind_of(message_type) == "event":
            return [spec.name for spec in self._event_specs(message_type)]
        spec = self._command_spec(message_type)
        return [] if spec is None else [spec.name]

    # -- dispatch -------------------------------------------------------------------
    # send, query and publish are replaced on each instance by a faster closure with
    # the same name, signature and docstring (see _dispatcher); these bodies document
    # them and serve ``Mediator.send(bus, command)``.

    async def send(self, command: BaseCommand[_R], /) -> _R:
        """Send a command to its one handler and return the handler's result.

        The command's ids are decided first (see :mod:`python_cqrs_core.propagation`),
        then middleware and the handler run with the command as the current message.
        Raises :class:`~python_cqrs_core.HandlerNotFoundError` when the command type has
        no handler, :class:`TypeError` when ``command`` is not a command; a handler's
        own exception reaches the caller unchanged.  The result is typed by the
        command class: ``class CreateUser(BaseCommand[int])`` makes it ``int``, a plain
        ``BaseCommand`` subclass ``Any``.
        """
        result: _R = await self._dispatch_by_kind["command"](command)
        return result

    async def query(self, query: BaseQuery[_R], /) -> _R:
        """Send a query to its one handler and return what it read (see :meth:`send`)."""
        result: _R = await self._dispatch_by_kind["query"](query)
        return result

    async def publish(self, event: BaseEvent, /) -> None:
        """Deliver an event to every subscriber, one after another; returns ``None``.

        An event with no subscribers is fine (it still passes through middleware, so it
        is recorded).  One failing subscriber does not stop the others; see the module
        documentation for how failures are raised.
        """
        await self._dispatch_by_kind["event"](event)

    @overload
    async def process(
        self,
        message: BaseCommand[_R] | BaseQuery[_R],
        /,
        *,
        correlation_id: UUID | str | None = None,
    ) -> _R: ...

    @overload
    async def process(
        self, message: BaseEvent, /, *, correlation_id: UUID | str | None = None
    ) -> None: ...

    @overload
    async def process(
        self, message: BaseMessage, /, *, correlation_id: UUID | str | None = None
    ) -> Any: ...

    async def process(
        self, message: BaseMessage, /, *, correlation_id: UUID | str | None = None
    ) -> Any:
        """Dispatch any message by its kind, optionally with an explicit correlation id.

        An explicit ``correlation_id`` beats every other source (rule 1 of
        :mod:`python_cqrs_core.propagation`).  It is validated like the message field;
        if the message already carries a different one, the handler receives a copy
        with the explicit id (the original is left as it is).  Returns what
        :meth:`send` or :meth:`query` return, ``None`` for an event.
        """
        if correlation_id is not None:
            try:
                explicit = validate_correlation_id(correlation_id)
            except ValueError as exc:
                raise ValueError(f"correlation_id: {exc}") from None
            message = with_correlation(message, explicit)
        kind = message_kind(type(message))
        if kind is None:
            raise TypeError(f"{type(message).__name__} is not a command, query or event")
        return await self._dispatch_by_kind[kind](message)

    # -- internals ------------------------------------------------------------------

    @staticmethod
    def _kind_of(message_type: type) -> MessageKind:
        if not (isinstance(message_type, type) and issubclass(message_type, BaseMessage)):
            raise TypeError(
                f"expected a BaseCommand, BaseQuery or BaseEvent subclass, got {message_type!r}"
            )
        kind = message_kind(message_type)
        if kind is None:
            raise TypeError(f"{message_type.__name__} is not a command, query or event")
        return kind

    def _invalidate(self) -> None:
        for routes in self._routes:
            routes.clear()

    def _command_spec(self, message_type: type) -> _HandlerSpec | None:
        for cls in message_type.__mro__:
            spec = self._handlers.get(cls)
            if spec is not None:
                return spec
        return None

    def _event_specs(self, event_type: type) -> list[_HandlerSpec]:
        return [spec for cls in event_type.__mro__ for spec in self._subscribers.get(cls, ())]

    def _compile(self, message: object, index: int) -> _Invoke:
        """Build (and cache) the pipeline for the type of ``message``."""
        message_type = type(message)
        expected = _INDEX_KIND[index]
        if not isinstance(message, BaseMessage):
            raise TypeError(
                f"{_KIND_METHOD[expected]}() takes a Base{expected.capitalize()} instance, "
                f"got {message_type.__name__}"
            )
        kind = self._kind_of(message_type)
        if kind != expected:
            raise TypeError(
                f"{message_type.__name__} is {_ARTICLE[kind]} {kind}: use {_KIND_METHOD[kind]}(), "
                f"not {_KIND_METHOD[expected]}()"
            )
        terminal: _Invoke
        if kind == "event":
            terminal = self._fan_out(
                [
                    self._handler_pipeline(spec, kind, message_type)
                    for spec in self._event_specs(message_type)
                ],
                message_type,
            )
        else:
            spec = self._command_spec(message_type)
            if spec is None:
                raise HandlerNotFoundError(
                    f"no handler registered for {kind} {message_type.__name__}; "
                    f"register one with bus.register({message_type.__name__}, handler)"
                )
            terminal = self._handler_pipeline(spec, kind, message_type)
        route = terminal
        for entry in reversed(self._middleware):
            if entry.applies_to(kind, message_type):
                route = _bind(entry.middleware, route)
        self._routes[index][message_type] = route
        return route

    @staticmethod
    def _fan_out(invokers: list[_Invoke], event_type: type) -> _Invoke:
        if len(invokers) == 1:
            return invokers[0]

        async def deliver(event: BaseMessage) -> None:
            errors: list[Exception] = []
            for invoke in invokers:
                try:
                    await invoke(event)
                except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                    errors.append(exc)
            if len(errors) == 1:
                raise errors[0]
            if errors:
                raise EventHandlersFailed(
                    f"{len(errors)} of {len(invokers)} handlers of {event_type.__name__} failed",
                    errors,
                )

        return deliver

    def _handler_pipeline(
        self, spec: _HandlerSpec, kind: MessageKind, message_type: type
    ) -> _Invoke:
        """One handler with its lifecycle notifications (innermost, around the handler
        itself) and its handler middleware around them."""
        invoke = self._observed(spec, kind)
        for entry in reversed(self._handler_middleware):
            if entry.applies_to(kind, message_type):
                invoke = _bind_handler(entry.middleware, spec.name, invoke)
        return invoke

    def _observed(self, spec: _HandlerSpec, kind: MessageKind) -> _Invoke:
        """Wrap a handler with lifecycle notifications (or not, with no listeners)."""
        if not self._listeners:
            return spec.invoke
        invoke, name, emit = spec.invoke, spec.name, self._emit

        async def observed(message: BaseMessage) -> Any:
            emit(HandlerEvent("started", message, kind, name))
            start = _perf_ns()
            try:
                result = await invoke(message)
            except BaseException as exc:
                emit(HandlerEvent("failed", message, kind, name, _perf_ns() - start, exc))
                raise
            emit(HandlerEvent("completed", message, kind, name, _perf_ns() - start))
            return result

        return observed

    def _emit(self, event: HandlerEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("lifecycle listener %r failed on %s", listener, event.phase)
