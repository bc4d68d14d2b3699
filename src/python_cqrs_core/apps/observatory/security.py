"""Who may look: the bind rule, the optional token, and the headers every answer carries.

The Observatory shows payloads, errors and who asked for what: business data.  So:

- **Local unless told otherwise.**  It binds ``127.0.0.1`` by default.  Binding any
  other address (``0.0.0.0``, a LAN address) *requires* a token:
  :func:`check_bind` refuses to start without one, and says how to make one.
- **Token.**  With a token, every page and endpoint but the login page and the static
  files needs it: machines send ``Authorization: Bearer <token>``; people type it once
  into ``/login``, which sets an ``HttpOnly``, ``SameSite=Strict`` cookie holding a
  keyed hash of the token (never the token itself).  Both are compared in constant
  time (:func:`hmac.compare_digest`).  The token is never logged, never put in an
  address, and never sent back.
- **No token, local only.**  Without a token, requests must name a loopback host
  (``Host: 127.0.0.1:9000``, ``localhost``, ``[::1]``): a web page elsewhere that
  points its own host name at 127.0.0.1 (DNS rebinding) gets ``403``.
- **Headers.**  Every answer carries a Content-Security-Policy that allows only the
  Observatory's own scripts and styles (no inline script, so even a value that escaped
  escaping could not run), ``X-Content-Type-Options: nosniff``, no framing, and no
  referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "MIN_TOKEN_LENGTH",
    "SESSION_COOKIE",
    "AccessGate",
    "SecurityHeaders",
    "check_bind",
    "check_token",
    "is_loopback",
    "safe_next",
    "session_value",
]

MIN_TOKEN_LENGTH: Final = 16
SESSION_COOKIE: Final = "cqrs_observatory"
_OPEN_PATHS: Final = ("/login", "/static/", "/favicon.ico")
_LOOPBACK_NAMES: Final = frozenset(("localhost",))
_MACHINE_PATHS: Final = ("/api/", "/metrics", "/openapi.json")
_HEADERS: Final = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
_HOW_TO_MAKE_ONE: Final = (
    "export CQRS_OBSERVATORY_TOKEN="
    "\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\""
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("[::1]"), is_loopback("localhost")
    (True, True, True)
    >>> is_loopback("0.0.0.0"), is_loopback("192.168.1.4"), is_loopback("example.com")
    (False, False, False)
    """
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_token(token: str | None) -> str | None:
    """``token`` if it is usable: at least :data:`MIN_TOKEN_LENGTH` printable ASCII
    characters without spaces (it travels in a header and a form); ``None`` stays
    ``None``.  A bad token is a :class:`ValueError` that does not repeat it."""
    if token is None:
        return None
    if len(token) < MIN_TOKEN_LENGTH or not all("!" <= c <= "~" for c in token):
        raise ValueError(
            f"token must be at least {MIN_TOKEN_LENGTH} printable ASCII characters without "
            f"spaces (got {len(token)} characters); make one with: {_HOW_TO_MAKE_ONE}"
        )
    return token


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token.

    >>> check_bind("127.0.0.1", None)
    >>> check_bind("0.0.0.0", None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: the Observatory shows business data: to bind 0.0.0.0 (reachable from ...
    """
    if not is_loopback(host) and token is None:
        raise ValueError(
            f"the Observatory shows business data: to bind {host} (reachable from other "
            f"machines) give it a token (--token, or the CQRS_OBSERVATORY_TOKEN "
            f"environment variable); make one with: {_HOW_TO_MAKE_ONE}"
        )


def session_value(token: str) -> str:
    """What the session cookie holds: a keyed hash of the token, so a cookie that leaks
    (a browser profile, a proxy log) does not reveal the token itself."""
    return hmac.new(token.encode(), b"cqrs-observatory-session", hashlib.sha256).hexdigest()


def safe_next(target: str | None) -> str:
    """Where to go after logging in: ``target`` if it is a path of this site, else
    ``/`` (never another site: ``//evil.example`` and ``https://...`` are refused).

    >>> safe_next("/timeline?correlation=req-1"), safe_next("//evil.example"), safe_next(None)
    ('/timeline?correlation=req-1', '/', '/')
    """
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    cookies = _header(scope, b"cookie")
    if cookies is None:
        return None
    for part in cookies.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _host_name(host_header: str) -> str:
    """The host of a ``Host`` header, without its port (``[::1]:9000`` -> ``[::1]``)."""
    if host_header.startswith("["):
        return host_header.partition("]")[0] + "]"
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


async def _send_plain(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})


def _allowed(scope: Scope, token: bytes, session: bytes) -> bool:
    """Whether the request carries the token (bearer) or the session cookie; both
    compared in constant time."""
    authorization = _header(scope, b"authorization") or ""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token):
        return True
    cookie = _cookie(scope, SESSION_COOKIE)
    return cookie is not None and hmac.compare_digest(cookie.encode(), session)


class AccessGate:
    """ASGI middleware letting through only who may look (see the module docs).

    With ``token``: a request with the right bearer token or session cookie passes;
    otherwise a machine path (``/api/...``, ``/metrics``, ``/openapi.json``) gets
    ``401`` and a page redirects to ``/login``.  Without: only loopback ``Host``
    headers pass.
    """

    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        # (the token, the session cookie's value), or None: no token, local only
        self._secrets = None if token is None else (token.encode(), session_value(token).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._secrets is None:
            if not is_loopback(_host_name(_header(scope, b"host") or "")):
                body = b"the Observatory answers only to a local host name without a token"
                await _send_plain(send, 403, body, [(b"content-type", b"text/plain")])
                return
        elif not scope["path"].startswith(_OPEN_PATHS) and not _allowed(scope, *self._secrets):
            await self._refuse(scope, send)
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith(_MACHINE_PATHS):
            body = json.dumps({"detail": "a token is required: Authorization: Bearer <token>"})
            await _send_plain(
                send,
                401,
                body.encode(),
                [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            )
            return
        query = scope.get("query_string", b"").decode("latin-1")
        target = path + (f"?{query}" if query else "")
        location = f"/login?next={quote(target, safe='')}"
        await _send_plain(send, 303, b"", [(b"location", location.encode("latin-1"))])


class SecurityHeaders:
    """ASGI middleware adding the Observatory's security headers to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
