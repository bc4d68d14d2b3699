"""The Observatory: a live web view of every business operation in a message store
(the ``[observatory]`` extra).

It reads the store the application records into (``sqlite:///...``, the embedded
default, or PostgreSQL), read-only and on its own connection, and shows:

- the **timeline** of recorded messages and their handler events, newest first, live
  (server-sent events follow the store's feed, so chains recorded by other processes
  appear as they commit), filtered by kind, type, outcome, requested_by and service;
- an **operation** (``/timeline?correlation=ID``, the correlation guide's deep link):
  every causation tree of the correlation id, each node with its type, short id,
  handlers, duration, outcome and service, failed nodes marked, and a waterfall of
  the handlers on one time axis;
- a **message**: its payload with personal data redacted, its headers (the
  ``traceparent`` linking to an APM when configured), its causes and effects;
- **search** by message id or prefix, correlation id and requested_by, and the
  **failures**: failed operations and dead-lettered messages;
- ``/api/...`` JSON behind every view (``/openapi.json`` describes it) and
  ``/metrics`` for Prometheus.

Run it with ``cqrs observatory`` or :func:`serve`; embed it with :func:`create_app`::

    serve("sqlite:///cqrs.db")                       # http://127.0.0.1:9000/timeline

See ``docs/observatory.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from types import FrameType

import uvicorn
from fastapi import FastAPI

from ...store import open_store, url_without_password
from ...transports import Transport
from .app import create_app, open_transport
from .security import check_bind, check_token

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "create_app", "serve"]

DEFAULT_HOST = "127.0.0.1"
"""The Observatory listens on this machine only unless told otherwise."""
DEFAULT_PORT = 9000


def serve(
    store_url: str | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    transport_url: str | None = None,
    transport_prefix: str = "",
    dead_letter_destinations: Sequence[str] = (),
    apm_url_template: str | None = None,
    poll_interval: float = 0.25,
) -> None:
    """Serve the Observatory until interrupted (Ctrl-C) or terminated (``SIGTERM``):
    what ``cqrs observatory`` runs.  Either way the live streams end, the store is
    closed, and then Ctrl-C raises :class:`KeyboardInterrupt` while ``SIGTERM``
    returns.

    ``store_url`` is opened read-only (``None``: ``CQRS_STORE_URL``, else
    ``sqlite:///cqrs.db``).  ``host`` other than a loopback address requires a
    ``token`` (see :mod:`~python_cqrs_core.apps.observatory.security`).
    ``transport_url`` (``redis://...``, its keys under ``transport_prefix``) and
    ``dead_letter_destinations`` show the dead letters of those destinations;
    ``apm_url_template`` links traces to an APM.

    Everything is checked before the server starts: a bad setting is a
    :class:`ValueError`, a store that cannot be opened a
    :class:`~python_cqrs_core.store.StoreOpenError`, an address that cannot be
    listened on an :class:`OSError`, each saying what is wrong.  The token is never
    printed or logged; nor is a request (uvicorn's access log is off: addresses hold
    searched ids and names).
    """
    token = check_token(token)
    check_bind(host, token)
    listener = _listen(host, port)
    try:
        stopped_by = asyncio.run(
            _serve(
                listener,
                store_url,
                token=token,
                transport_url=transport_url,
                transport_prefix=transport_prefix,
                destinations=dead_letter_destinations,
                apm_url_template=apm_url_template,
                poll_interval=poll_interval,
            )
        )
    finally:
        listener.close()
    if signal.SIGINT in stopped_by:
        raise KeyboardInterrupt


class _Server(uvicorn.Server):
    """uvicorn's server, which also ends the live streams when asked to stop: a
    browser's open stream would otherwise hold the shutdown for its whole grace
    period."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self.loop = asyncio.get_running_loop()
        self.stopped_by: list[int] = []
        """The signals that stopped the server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's signal handling, except that the signal that stopped the server is
        not raised again as soon as the server stops: uvicorn does that, and
        ``SIGTERM``'s default action then ends the process before the store is
        closed (a SQLite store's ``-wal`` and ``-shm`` files stayed behind).  The
        signals are kept in :attr:`stopped_by` for :func:`serve`."""
        with super().capture_signals():
            try:
                yield
            finally:
                captured: list[int] = getattr(self, "_captured_signals", [])
                self.stopped_by.extend(captured)
                captured.clear()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        observatory = getattr(self.app.state, "observatory", None)
        if observatory is not None:
            self.loop.call_soon_threadsafe(observatory.follower.stop)
        super().handle_exit(sig, frame)


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``, so that an address in use is an error here,
    before anything else starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return listener


async def _serve(
    listener: socket.socket,
    store_url: str | None,
    *,
    token: str | None,
    transport_url: str | None,
    transport_prefix: str,
    destinations: Sequence[str],
    apm_url_template: str | None,
    poll_interval: float,
) -> list[int]:
    """Serve until stopped; returns the signals that stopped the server."""
    store = await open_store(store_url, read_only=True)
    transport: Transport | None = None
    try:
        if transport_url is not None:
            transport = open_transport(transport_url, prefix=transport_prefix)
        app = create_app(
            store,
            token=token,
            transport=transport,
            dead_letter_destinations=destinations,
            apm_url_template=apm_url_template,
            poll_interval=poll_interval,
        )
        host, port = listener.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        sys.stderr.write(
            f"Observatory on http://{shown}:{port}/timeline  "
            f"(store {url_without_password(store.url)}, read-only"
            f"{'; token required' if token else ''}); Ctrl-C stops it\n"
        )
        config = uvicorn.Config(
            app,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=2,
            lifespan="on",
        )
        server = _Server(config, app)
        await server.serve(sockets=[listener])
        return server.stopped_by
    finally:
        if transport is not None:
            await transport.close()
        await store.close()
