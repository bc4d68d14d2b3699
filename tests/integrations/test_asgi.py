"""CorrelationIdMiddleware with a real FastAPI app through httpx, hostile headers included."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI, WebSocket

from python_cqrs_core import (
    BaseCommand,
    Mediator,
    current_correlation_id,
    current_requested_by,
)
from python_cqrs_core.integrations.asgi import CorrelationIdMiddleware, resolve_correlation_id
from python_cqrs_core.validation import is_valid_opaque_id, validate_correlation_id


class PlaceOrder(BaseCommand):
    sku: str


def build_app(**options: Any) -> FastAPI:
    bus = Mediator()

    async def place(command: PlaceOrder) -> dict[str, Any]:
        return {
            "correlation_id": str(command.correlation_id),
            "requested_by": command.requested_by,
        }

    bus.register(PlaceOrder, place)
    app = FastAPI()
    app.add_middleware(CorrelationIdMiddleware, **options)

    @app.post("/orders")
    async def place_order() -> dict[str, Any]:
        result: dict[str, Any] = await bus.send(PlaceOrder(sku="A-1"))
        return result

    @app.post("/orders-with-explicit-id")
    async def place_order_with_explicit_id() -> dict[str, Any]:
        result: dict[str, Any] = await bus.process(
            PlaceOrder(sku="A-1"), correlation_id="op-from-the-body"
        )
        return result

    @app.get("/ambient")
    async def ambient() -> dict[str, Any]:
        return {"correlation_id": str(current_correlation_id())}

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    @app.get("/own-header")
    async def own_header() -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse({}, headers={"X-Correlation-ID": "set-by-the-endpoint"})

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(str(current_correlation_id()))
        await websocket.close()

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def assert_valid_id(value: str) -> None:
    assert is_valid_opaque_id(value)
    validate_correlation_id(value)


async def test_the_header_becomes_the_correlation_id_of_root_messages(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/orders", headers={"X-Correlation-ID": "req-abc-123"})

    assert response.status_code == 200
    assert response.json()["correlation_id"] == "req-abc-123"
    assert response.headers["X-Correlation-ID"] == "req-abc-123"


async def test_x_request_id_is_the_fallback(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders", headers={"X-Request-ID": "gw-42"})

    assert response.json()["correlation_id"] == "gw-42"
    assert response.headers["X-Correlation-ID"] == "gw-42"


async def test_x_correlation_id_wins_over_x_request_id(client: httpx.AsyncClient) -> None:
    headers = {"X-Request-ID": "gw-42", "X-Correlation-ID": "corr-1"}
    response = await client.get("/ambient", headers=headers)

    assert response.json()["correlation_id"] == "corr-1"


async def test_without_a_header_a_uuid_is_generated_and_returned(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/orders")

    returned = response.headers["X-Correlation-ID"]
    assert UUID(returned).version == 4
    assert response.json()["correlation_id"] == returned


async def test_a_uuid_header_is_returned_in_canonical_form(client: httpx.AsyncClient) -> None:
    value = "{550E8400-E29B-41D4-A716-446655440000}"
    response = await client.get("/ambient", headers={"X-Correlation-ID": value})

    assert response.headers["X-Correlation-ID"] == "550e8400-e29b-41d4-a716-446655440000"


async def test_each_request_has_its_own_id(client: httpx.AsyncClient) -> None:
    first, second = await client.get("/ambient"), await client.get("/ambient")

    assert first.headers["X-Correlation-ID"] != second.headers["X-Correlation-ID"]


async def test_the_id_is_returned_on_a_500_from_an_unhandled_exception(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/crash", headers={"X-Correlation-ID": "req-crash-1"})

    assert response.status_code == 500
    assert response.headers["X-Correlation-ID"] == "req-crash-1"
    assert response.text == "Internal Server Error"


async def test_the_unhandled_exception_is_re_raised_after_the_500_is_sent() -> None:
    app = build_app()
    transport = httpx.ASGITransport(app=app)  # raise_app_exceptions=True
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(RuntimeError, match="boom"):
            await client.get("/crash")


async def test_the_header_set_by_the_application_is_replaced_by_the_id_used(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/own-header", headers={"X-Correlation-ID": "req-9"})

    assert response.headers.get_list("X-Correlation-ID") == ["req-9"]


async def test_requested_by_comes_from_the_given_callable() -> None:
    app = build_app(requested_by=lambda scope: dict(scope["headers"]).get(b"x-user", b"").decode())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/orders", headers={"X-User": "jane@example.com"})

    assert response.json()["requested_by"] == "jane@example.com"


async def test_an_invalid_requested_by_is_ignored_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = build_app(requested_by=lambda scope: "evil\nINFO forged line")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/orders")

    assert response.json()["requested_by"] is None
    assert "forged line" not in caplog.text
    assert "requested_by" in caplog.text


async def test_a_custom_header_name_is_read_and_returned() -> None:
    app = build_app(header="X-Trace-Token", fallback_headers=())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(
            "/ambient", headers={"X-Trace-Token": "tok-1", "X-Request-ID": "ignored"}
        )
        no_header = await client.get("/ambient", headers={"X-Request-ID": "ignored"})

    assert response.headers["X-Trace-Token"] == "tok-1"
    assert no_header.headers["X-Trace-Token"] != "ignored"


# -- hostile headers -------------------------------------------------------------------

HOSTILE = {
    "crlf injection": b"abc\r\nSet-Cookie: session=stolen",
    "crlf around a uuid": b"\r" + b"a" * 30 + b"\n",
    "10 KB": b"A" * 10_240,
    "129 characters": b"x" * 129,
    "non-ascii utf-8": "caf\u00e9-\u2603".encode(),
    "latin-1 bytes": b"\xe9\xff\xfe-id",
    "empty": b"",
    "space inside": b"two words",
    "nul byte": b"id\x00x",
    "tab": b"\tid",
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
async def test_an_invalid_header_is_replaced_by_a_generated_id_never_echoed(
    raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = build_app()
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/orders", "raw_path": b"/orders", "query_string": b"",
        "root_path": "", "headers": [(b"x-correlation-id", raw)], "server": ("test", 80),
        "client": ("127.0.0.1", 1234),
    }  # fmt: skip
    await app(scope, receive, send)

    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    [returned] = [v for k, v in start["headers"] if k.lower() == b"x-correlation-id"]
    assert UUID(returned.decode()).version == 4  # a generated id
    assert_valid_id(returned.decode())
    if raw:
        assert raw not in body and raw not in returned
        assert raw.decode("latin-1") not in caplog.text
    assert "ignored the x-correlation-id request header" in caplog.text
    assert f"({len(raw)} bytes)" in caplog.text


async def test_a_hostile_header_falls_back_to_a_valid_x_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = [(b"x-correlation-id", b"bad\r\nvalue"), (b"x-request-id", b"gw-7")]

    assert resolve_correlation_id(headers) == "gw-7"
    assert "bad" not in caplog.text


async def test_a_header_sent_twice_is_ambiguous_and_not_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(
            "/ambient", headers=[("X-Correlation-ID", "first"), ("X-Correlation-ID", "second")]
        )

    returned = response.headers["X-Correlation-ID"]
    assert returned not in {"first", "second"}
    assert UUID(returned).version == 4
    assert "sent 2 times" in caplog.text
    assert "first" not in caplog.text


# -- other scopes ----------------------------------------------------------------------


async def test_a_websocket_runs_in_the_scope_and_its_accept_carries_the_header() -> None:
    sent: list[dict[str, Any]] = []
    incoming = iter([{"type": "websocket.connect"}, {"type": "websocket.disconnect"}])

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "scheme": "ws", "path": "/ws", "raw_path": b"/ws", "query_string": b"",
        "root_path": "", "headers": [(b"x-correlation-id", b"ws-1")], "server": ("test", 80),
        "client": ("127.0.0.1", 1234), "subprotocols": [],
    }  # fmt: skip
    await build_app()(scope, receive, send)

    accept, text = sent[0], sent[1]
    assert accept["type"] == "websocket.accept"
    assert (b"x-correlation-id", b"ws-1") in accept["headers"]
    assert text == {"type": "websocket.send", "text": "ws-1"}


async def test_lifespan_and_unknown_scopes_pass_through_untouched() -> None:
    seen: list[tuple[str, object]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["type"], current_correlation_id()))

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        return None

    middleware = CorrelationIdMiddleware(app)
    await middleware({"type": "lifespan"}, receive, send)

    assert seen == [("lifespan", None)]
    assert current_requested_by() is None


async def test_the_warning_is_logged_inside_the_scope_of_the_generated_id(
    client: httpx.AsyncClient,
) -> None:
    seen: list[object] = []

    class RecordCorrelation(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(current_correlation_id())

    handler = RecordCorrelation()
    logging.getLogger("python_cqrs_core.asgi").addHandler(handler)
    try:
        response = await client.get("/ambient", headers={"X-Correlation-ID": "bad value"})
    finally:
        logging.getLogger("python_cqrs_core.asgi").removeHandler(handler)

    assert [str(cid) for cid in seen] == [response.headers["X-Correlation-ID"]]


def test_the_docstring_examples_run() -> None:
    import doctest

    from python_cqrs_core.integrations import asgi as module

    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


# -- the id actually used, failing callables, the application's own error handler -----------


async def test_an_explicit_correlation_id_used_by_the_endpoint_is_the_one_answered(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/orders-with-explicit-id", headers={"X-Correlation-ID": "req-from-header"}
    )
    assert response.json()["correlation_id"] == "op-from-the-body"
    assert response.headers["X-Correlation-ID"] == "op-from-the-body"


async def test_without_a_dispatch_the_answered_id_is_the_header_one(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/ambient", headers={"X-Correlation-ID": "req-5"})
    assert response.headers["X-Correlation-ID"] == "req-5"


async def test_a_raising_requested_by_callable_still_answers_with_a_valid_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(scope: Any) -> str:
        raise KeyError("user")

    app = build_app(requested_by=broken)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/orders", headers={"X-Correlation-ID": "req-7"})

    assert response.status_code == 200
    assert response.headers["X-Correlation-ID"] == "req-7"
    assert response.json() == {"correlation_id": "req-7", "requested_by": None}
    assert "requested_by callable raised" in caplog.text


def app_with_its_own_error_handler() -> FastAPI:
    from fastapi import Request
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.exception_handler(Exception)
    async def own_handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": "ours, not the middleware's"}, status_code=503)

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    return app


async def test_wrapping_the_app_keeps_its_own_exception_handler_and_adds_the_id() -> None:
    wrapped = CorrelationIdMiddleware(app_with_its_own_error_handler())
    transport = httpx.ASGITransport(app=wrapped, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/crash", headers={"X-Correlation-ID": "req-err"})

    assert (response.status_code, response.json()) == (503, {"error": "ours, not the middleware's"})
    assert response.headers["X-Correlation-ID"] == "req-err"


async def test_added_as_middleware_it_answers_500_and_warns_that_the_handler_is_bypassed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = app_with_its_own_error_handler()
    app.add_middleware(CorrelationIdMiddleware)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/crash", headers={"X-Correlation-ID": "req-err"})

    assert response.status_code == 500
    assert response.headers["X-Correlation-ID"] == "req-err"
    assert "app = CorrelationIdMiddleware(app)" in caplog.text
