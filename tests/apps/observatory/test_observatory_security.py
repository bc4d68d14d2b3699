"""Who may look: the token (bearer header for machines, a login form and a session
cookie for people), local host names only without one, the bind rule, and a token that
is never shown, logged or put in an address."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import httpx
import pytest
from observatory_testing import free_port, running

from python_cqrs_core.apps.observatory import create_app, serve
from python_cqrs_core.apps.observatory.security import SESSION_COOKIE, session_value
from python_cqrs_core.store import MemoryStore, open_store

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture
async def guarded():
    async with running(create_app(MemoryStore(), token=TOKEN)) as client:
        yield client


async def test_without_the_token_machines_get_401_and_people_the_login_page(guarded):
    for path in ("/api/records", "/api/stream", "/metrics", "/openapi.json"):
        response = await guarded.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
    page = await guarded.get("/timeline?correlation=req-1")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Ftimeline%3Fcorrelation%3Dreq-1"
    login = await guarded.get(page.headers["location"])
    assert login.status_code == 200 and 'type="password"' in login.text
    assert "memory://" not in login.text  # nothing about the store before logging in


async def test_a_bearer_token_opens_the_api(guarded):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert (await guarded.get("/api/records", headers=headers)).status_code == 200
    wrong = {"Authorization": f"Bearer {TOKEN[:-1]}x"}
    assert (await guarded.get("/api/records", headers=wrong)).status_code == 401


async def test_logging_in_sets_a_session_cookie_that_is_not_the_token(guarded):
    response = await guarded.post(
        "/login", data={"token": TOKEN, "next": "/timeline?correlation=req-1"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/timeline?correlation=req-1"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={session_value(TOKEN)};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert TOKEN not in cookie
    assert (await guarded.get("/timeline")).status_code == 200  # the client kept the cookie
    assert (await guarded.get("/api/status")).status_code == 200


async def test_a_wrong_token_is_refused_and_not_echoed(guarded):
    response = await guarded.post("/login", data={"token": "guess-guess-guess-guess", "next": "/"})
    assert response.status_code == 401
    assert "That is not the token" in response.text and "guess-guess" not in response.text
    assert "set-cookie" not in response.headers


async def test_login_never_sends_anyone_to_another_site(guarded):
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        response = await guarded.post("/login", data={"token": TOKEN, "next": target})
        assert response.headers["location"] == "/"


async def test_the_static_files_need_no_token(guarded):
    assert (await guarded.get("/static/observatory.css")).status_code == 200


async def test_without_a_token_only_local_host_names_are_answered():
    async with running(create_app(MemoryStore())) as client:
        for host in ("127.0.0.1:9000", "localhost", "[::1]:9000"):
            assert (await client.get("/api/status", headers={"Host": host})).status_code == 200
        rebound = await client.get("/api/status", headers={"Host": "evil.example"})
        assert rebound.status_code == 403


def test_a_non_local_bind_without_a_token_is_refused_before_anything_starts():
    with pytest.raises(ValueError, match=r"to bind 0\.0\.0\.0 .* give it a token"):
        serve("memory://", host="0.0.0.0")


def test_a_short_token_is_refused_without_being_repeated():
    with pytest.raises(ValueError, match="at least 16") as caught:
        serve("memory://", token="short-one")
    assert "short-one" not in str(caught.value)
    with pytest.raises(ValueError, match="at least 16"):
        create_app(MemoryStore(), token="has spaces in it, see")


def test_a_port_in_use_is_an_error_saying_so():
    taken = free_port()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve("memory://", port=port)
    finally:
        taken.close()


def test_bad_settings_name_themselves():
    with pytest.raises(ValueError, match="apm_url_template must contain"):
        create_app(MemoryStore(), apm_url_template="https://apm.example/")
    with pytest.raises(ValueError, match="dead_letter_destinations: name the destinations"):
        create_app(MemoryStore(), transport="redis://127.0.0.1:6379/0")
    with pytest.raises(
        ValueError, match="transport: the Observatory reads dead letters from"
    ) as caught:
        serve(
            "memory://",
            transport_url="amqp://guest:hunter2@rabbit/",
            dead_letter_destinations=["x"],
        )
    assert "hunter2" not in str(caught.value)


async def _create(url: str) -> None:
    store = await open_store(url)
    await store.close()


_SERVE = """
import sys
from python_cqrs_core.apps.observatory import serve
serve(sys.argv[1], port=int(sys.argv[2]), token=sys.argv[3])
"""


def test_a_served_observatory_never_prints_its_token_nor_the_requests(tmp_path):
    url = f"sqlite:///{tmp_path / 'cqrs.db'}"
    asyncio.run(_create(url))
    listener = free_port()
    port = listener.getsockname()[1]
    listener.close()
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, url, str(port), TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        httpx.get(
            f"{base}/api/records?q=secret-search", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        httpx.post(f"{base}/login", data={"token": TOKEN})
        httpx.get(f"{base}/timeline?requested_by=user:someone")
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert "Observatory on http://127.0.0.1:" in output and "token required" in output
    assert TOKEN not in output
    assert "secret-search" not in output and "user:someone" not in output
