"""HTTP correlation ids for any ASGI application (FastAPI, Starlette, Litestar, ...).

::

    from fastapi import FastAPI
    from python_cqrs_core.integrations.asgi import CorrelationIdMiddleware

    app = FastAPI()
    app.add_middleware(CorrelationIdMiddleware)

    @app.post("/orders")
    async def place_order(body: PlaceOrderBody) -> dict[str, str]:
        await bus.send(PlaceOrder(**body.model_dump()))  # correlation_id = the header
        ...

For every HTTP request (and WebSocket connection) the middleware:

1. reads ``X-Correlation-ID``, else ``X-Request-ID`` (``header=`` and
   ``fallback_headers=`` change them); the first *valid* value wins: a UUID, or an
   opaque id of 1 to 128 printable ASCII characters without spaces
   (:func:`~python_cqrs_core.validation.validate_correlation_id`).  A header sent
   several times is ambiguous and is not used;
2. without a valid value, generates a UUID.  An invalid value is logged as a warning
   on the ``python_cqrs_core.integrations.asgi`` logger *without the value* (only the header name,
   its length and the reason; the record is logged inside the scope, so a correlated
   formatter shows the id used instead), since it came from an untrusted client: it
   never reaches a log line, a message or a response;
3. runs the application inside :class:`~python_cqrs_core.correlation_scope` with that
   id (and ``requested_by=callable(scope)`` when given), so every root message
   dispatched by the endpoint carries it;
4. adds ``X-Correlation-ID: <the id actually used>`` to the response, replacing any
   the application set.

**Errors.**  When the application raises before it started a response, the middleware
sends a ``500 Internal Server Error`` carrying the header itself, then re-raises the
exception, so the server and any outer middleware (Sentry's, an error reporter) still
see it, and the client still gets the id to quote in a bug report.  When a response
was already started, the exception is re-raised as it is.

Added with ``app.add_middleware`` it sits inside Starlette's ``ServerErrorMiddleware``,
which then finds the response started and only re-raises.  Wrapping the whole app
(``app = CorrelationIdMiddleware(fastapi_app)``) works as well.  Lifespan events pass
through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final
from uuid import UUID

from .._ids import uuid4
from ..context import correlation_scope
from ..names import ASGI_LOGGER, REQUEST_ID_HEADER
from ..names import CORRELATION_HEADER as _CORRELATION_HEADER
from ..validation import is_valid_opaque_id, validate_correlation_id, validate_requested_by

__all__ = ["CORRELATION_HEADER", "CorrelationIdMiddleware", "resolve_correlation_id"]

CORRELATION_HEADER: Final = _CORRELATION_HEADER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(ASGI_LOGGER)

_ERROR_BODY: Final = b"Internal Server Error"


def resolve_correlation_id(
    headers: Iterable[tuple[bytes, bytes]],
    names: Iterable[str] = (CORRELATION_HEADER, REQUEST_ID_HEADER),
) -> UUID | str:
    """Return the correlation id of a request from its raw ASGI ``headers``.

    The first header of ``names`` (in order) present once with a valid value wins;
    without one, a fresh UUID.  Invalid values are logged without the value.

    >>> resolve_correlation_id([(b"x-request-id", b"req-abc-123")])
    'req-abc-123'
    >>> isinstance(resolve_correlation_id([(b"x-correlation-id", b"bad value")]), UUID)
    True
    """
    correlation_id, rejected = _resolve(headers, names)
    _log_rejected(rejected)
    return correlation_id


_Rejection = tuple[bytes, int, str]  # header name, length of the value, reason


def _resolve(
    headers: Iterable[tuple[bytes, bytes]], names: Iterable[str]
) -> tuple[UUID | str, list[_Rejection]]:
    wanted = [name.lower().encode("latin-1") for name in names]
    found: dict[bytes, list[bytes]] = {name: [] for name in wanted}
    for key, value in headers:
        values = found.get(key.lower())
        if values is not None:
            values.append(value)
    rejected: list[_Rejection] = []
    for name in wanted:
        values = found[name]
        if not values:
            continue
        if len(values) > 1:
            rejected.append((name, len(values[0]), f"sent {len(values)} times"))
            continue
        raw = values[0]
        try:
            text = raw.decode("ascii")
            if not is_valid_opaque_id(text):
                # Checked first: UUID() alone would accept "\r<30 hex digits>\n".
                validate_correlation_id(text)  # raises with the reason
                raise ValueError("must be printable ASCII without whitespace")
            return validate_correlation_id(text), rejected
        except UnicodeDecodeError:
            rejected.append((name, len(raw), "not ASCII"))
        except ValueError as exc:  # the reasons never quote the value
            rejected.append((name, len(raw), str(exc)))
    return uuid4(), rejected


def _log_rejected(rejected: list[_Rejection]) -> None:
    for name, length, reason in rejected:
        logger.warning(
            "ignored the %s request header (%d bytes): %s; the value is not logged",
            name.decode("latin-1"),
            length,
            reason,
        )


class CorrelationIdMiddleware:
    """Give every HTTP request a correlation id, from its headers or a fresh one.

    ``requested_by``: an optional ``callable(scope) -> str | None`` (for example the
    authenticated user from ``scope["user"]``), the ``requested_by`` of the root
    messages dispatched by the request.  An invalid value is logged and ignored.
    See the module documentation for the rules.
    """

    __slots__ = ("_names", "app", "header", "requested_by")

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = CORRELATION_HEADER,
        fallback_headers: Iterable[str] = (REQUEST_ID_HEADER,),
        requested_by: Callable[[Scope], str | None] | None = None,
    ) -> None:
        self.app = app
        self.header = header.lower().encode("latin-1")
        self._names = (header, *fallback_headers)
        self.requested_by = requested_by

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type != "http" and scope_type != "websocket":
            await self.app(scope, receive, send)
            return
        correlation_id, rejected = _resolve(scope.get("headers", ()), self._names)
        started = False
        name = self.header
        request_scope = correlation_scope(correlation_id, requested_by=self._requested_by(scope))

        async def send_with_header(message: Message) -> None:
            nonlocal started
            message_type = message["type"]
            if message_type == "http.response.start" or message_type == "websocket.accept":
                started = True
                # The id actually used: the header's (or the generated one), unless the
                # application dispatched its root message with an explicit one.
                used = str(request_scope.used_correlation_id).encode("ascii")
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != name]
                headers.append((name, used))
                message = {**message, "headers": headers}
            await send(message)

        async with request_scope:
            _log_rejected(rejected)  # inside the scope: the line carries the id used
            try:
                await self.app(scope, receive, send_with_header)
            except Exception:
                if scope_type == "http" and not started:
                    _warn_if_handler_is_replaced(scope)
                    await self._send_error(send_with_header)
                raise

    def _requested_by(self, scope: Scope) -> str | None:
        if self.requested_by is None:
            return None
        try:
            value = self.requested_by(scope)
        except Exception:
            # A bug in the application's callable must not cost the request its
            # correlation id: the request goes on without a requested_by.
            logger.exception("the requested_by callable raised; the request has none")
            return None
        if value is None:
            return None
        try:
            return validate_requested_by(value)
        except ValueError as exc:
            logger.warning("ignored the requested_by of the request: %s", exc)
            return None

    @staticmethod
    async def _send_error(send: Send) -> None:
        """A ``500`` carrying the correlation id header (added by ``send``)."""
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(_ERROR_BODY)).encode("ascii")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _ERROR_BODY})


_warned_apps: set[int] = set()


def _warn_if_handler_is_replaced(scope: Scope) -> None:
    """Say, once per application, that its own 500 handler is bypassed.

    Added with ``app.add_middleware``, this middleware sits inside Starlette's
    ``ServerErrorMiddleware``, where an ``@app.exception_handler(Exception)`` runs: our
    500 is sent first, so that handler's response cannot be.  Wrapping the whole
    application (``app = CorrelationIdMiddleware(app)``) keeps it.
    """
    app = scope.get("app")
    handlers = getattr(app, "exception_handlers", None)
    if not isinstance(handlers, dict) or id(app) in _warned_apps:
        return
    if Exception in handlers or 500 in handlers:
        _warned_apps.add(id(app))
        logger.warning(
            "an unhandled exception was answered with this middleware's 500, not the "
            "application's own exception handler: wrap the application "
            "(app = CorrelationIdMiddleware(app)) instead of app.add_middleware(...) to keep it"
        )
