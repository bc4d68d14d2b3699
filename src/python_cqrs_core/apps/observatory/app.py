"""The Observatory's web application: the pages, the ``/api/...`` endpoints behind them,
the live stream and ``/metrics``, as one FastAPI app.

:func:`create_app` builds it around a store (a URL it opens read-only, on its own
connection, or a store object the caller owns); serve it with any ASGI server, or with
:func:`python_cqrs_core.apps.observatory.serve`::

    app = create_app("sqlite:///cqrs.db")            # uvicorn.run(app, port=9000)

=========================================  =============================================
page                                        JSON behind it
=========================================  =============================================
``/timeline`` (filters: kind, type,         ``/api/records`` (newest first),
outcome, requested_by, service)             ``/api/stream`` (server-sent events),
                                            ``/api/operations``
``/timeline?correlation=ID``                ``/api/operations/{correlation_id}``
``/messages/{message_id}``                  ``/api/messages/{message_id}``
``/search?q=``                              ``/api/search?q=``
``/failures``                               ``/api/failures``, ``/api/dead-letters``
=========================================  =============================================

plus ``/api/feed`` (the store's feed, oldest first, after a position), ``/api/status``,
``/metrics`` (Prometheus) and ``/openapi.json`` (the OpenAPI document of the API).
Everything is read-only: the Observatory changes nothing, anywhere.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import parse_qs, urlencode
from uuid import UUID

import jinja2
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.responses import StreamingResponse

from ..._version import __version__
from ...store import (
    CorrelationSummary,
    MessageRecord,
    MessageStore,
    RecordFilter,
    open_store,
    url_without_password,
)
from ...transports import Transport, TransportError
from ...validation import validate_correlation_id, validate_request_id, validate_requested_by
from .feed import FeedFollower, filter_arguments, newest_records, record_events
from .metrics import (
    CONTENT_TYPE,
    METRIC_DEAD_LETTERS,
    METRIC_FEED_ERRORS,
    METRIC_RECORDS_SEEN,
    METRIC_STORE_POSITION,
    METRIC_STREAM_CLIENTS,
    METRIC_STREAM_EVENTS,
    MetricFamily,
    render,
)
from .models import (
    DeadLettersModel,
    FailuresModel,
    FeedPageModel,
    MessageModel,
    OperationModel,
    OperationsPageModel,
    RecordPageModel,
    SearchModel,
    StatusModel,
)
from .security import (
    SESSION_COOKIE,
    AccessGate,
    SecurityHeaders,
    check_token,
    safe_next,
    session_value,
)
from .views import (
    ApmLinks,
    dead_letter_view,
    message_view,
    operation_view,
    record_view,
    summary_view,
)

__all__ = ["Filters", "Observatory", "create_app", "open_transport"]

HERE: Final = Path(__file__).resolve().parent
TEMPLATES: Final = HERE / "templates"
STATIC: Final = HERE / "static"

TIMELINE_ROWS: Final = 100
"""Records the timeline opens with (older ones page in with "older")."""
OPERATIONS_LISTED: Final = 15
"""Operations the timeline's side list opens with."""
MIN_PREFIX_DIGITS: Final = 4
"""The fewest hex digits of a message id a search looks up as a prefix."""
_PREFIX_CANDIDATES: Final = 20
_DEAD_LETTERS_SHOWN: Final = 50
_LOGIN_BODY_LIMIT: Final = 4096
_HEX: Final = frozenset("0123456789abcdef")
_UUID_GROUPS: Final = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))


# -- filters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The timeline's filters, as the query string names them (``type`` is the stable
    type name); empty values, as an HTML form sends them, mean "no filter"."""

    kind: str | None = None
    type: str | None = None
    outcome: str | None = None
    requested_by: str | None = None
    service: str | None = None

    def record_filter(self) -> RecordFilter:
        """The store filter; a bad value is an :class:`HTTPException` 400 naming it."""
        try:
            return RecordFilter(
                kind=self.kind,  # type: ignore[arg-type]  # checked by RecordFilter
                message_type=self.type,
                outcome=self.outcome,  # type: ignore[arg-type]
                requested_by=self.requested_by,
                service=self.service,
            )
        except ValueError as exc:
            detail = str(exc).replace("message_type", "type", 1)
            raise HTTPException(400, detail=detail) from None

    def query(self) -> dict[str, str]:
        """The filters that are set, for links that keep them."""
        return {name: value for name, value in vars(self).items() if value}


def timeline_filters(
    kind: Annotated[str | None, Query(description="command, query or event")] = None,
    type: Annotated[
        str | None, Query(description="a stable type name, e.g. shop.PlaceOrder")
    ] = None,
    outcome: Annotated[str | None, Query(description="succeeded or failed")] = None,
    requested_by: Annotated[str | None, Query(description="who asked, e.g. user:ada")] = None,
    service: Annotated[str | None, Query(description="the recording service")] = None,
) -> Filters:
    """The filters of a request (a FastAPI dependency)."""
    filters = Filters(
        kind=kind or None,
        type=type or None,
        outcome=outcome or None,
        requested_by=requested_by or None,
        service=service or None,
    )
    filters.record_filter()  # checked now, so that every endpoint answers 400 alike
    return filters


FiltersDep = Annotated[Filters, Depends(timeline_filters)]


# -- the application's state -----------------------------------------------------------------


@dataclass
class Observatory:
    """What the application works with: the store, the feed follower, the optional
    transport whose dead letters it shows, the APM links, and its counters."""

    store: MessageStore
    follower: FeedFollower
    transport: Transport | None = None
    dead_letter_destinations: tuple[str, ...] = ()
    apm: ApmLinks | None = None
    token: str | None = None
    stream_clients: int = 0
    stream_events: int = 0

    @property
    def store_shown(self) -> str:
        """The store's URL with its password masked."""
        return url_without_password(self.store.url)

    async def dead_letters(self) -> dict[str, Any]:
        """The dead letters of every configured destination, as the failures page and
        ``/api/dead-letters`` show them."""
        letters: list[dict[str, Any]] = []
        error = None
        if self.transport is not None:
            try:
                for destination in self.dead_letter_destinations:
                    found = await self.transport.dead_letters(
                        destination, limit=_DEAD_LETTERS_SHOWN
                    )
                    letters.extend(dead_letter_view(letter) for letter in found)
            except TransportError as exc:
                error = f"cannot read the dead letters ({type(exc).__name__})"
        return {
            "transport": None if self.transport is None else repr(self.transport),
            "destinations": list(self.dead_letter_destinations),
            "dead_letters": letters,
            "error": error,
        }


def _observatory(request: Request) -> Observatory:
    state: Observatory = request.app.state.observatory
    return state


ObservatoryDep = Annotated[Observatory, Depends(_observatory)]


# -- pages ---------------------------------------------------------------------------------

_jinja = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _page(
    request: Request, name: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    observatory = _observatory(request)
    context = {
        "store": observatory.store_shown,
        "feed_error": observatory.follower.error,
        "version": __version__,
        "path": request.url.path,
        "public": False,
        **context,
    }
    return HTMLResponse(_jinja.get_template(name).render(context), status_code=status)


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/metrics", "/openapi.json"))


# -- reading helpers -----------------------------------------------------------------------


def _message_ref(text: str) -> UUID | str | None:
    """A whole message id, the dashed prefix of one (at least
    :data:`MIN_PREFIX_DIGITS` hex digits), or ``None``."""
    text = text.strip().lower()
    try:
        return validate_request_id(text)
    except ValueError:
        pass
    digits = text.replace("-", "")
    if MIN_PREFIX_DIGITS <= len(digits) < 32 and set(digits) <= _HEX:
        return "-".join(digits[a:b] for a, b in _UUID_GROUPS if digits[a:b])
    return None


async def _search(store: MessageStore, query: str) -> dict[str, Any]:
    """Messages whose id is ``query`` or starts with it, the operation whose
    correlation id it is, and the operations it requested (as ``requested_by``)."""
    query = query.strip()
    messages: list[MessageRecord] = []
    operations: list[CorrelationSummary] = []
    problem = None
    if not query:
        return {"query": query, "messages": [], "operations": [], "problem": None}
    ref = _message_ref(query)
    if isinstance(ref, UUID):
        record = await store.get(ref)
        messages = [] if record is None else [record]
    elif ref is not None:
        ids = await store.message_ids_with_prefix(ref, limit=_PREFIX_CANDIDATES)
        found = await asyncio.gather(*(store.get(i) for i in ids))
        messages = [record for record in found if record is not None]
    try:
        correlation_id = validate_correlation_id(query)
    except ValueError:
        correlation_id = None
    if correlation_id is not None:
        records = await store.by_correlation(correlation_id)
        if records:
            operations.append(CorrelationSummary.of(records))
    try:
        validate_requested_by(query)
    except ValueError as exc:
        problem = f"not a requested_by: {exc}"
    else:
        requested = await store.correlations(limit=50, requested_by=query)
        known = {summary.correlation_id for summary in operations}
        operations.extend(s for s in requested if s.correlation_id not in known)
    return {
        "query": query,
        "messages": [record_view(record) for record in messages],
        "operations": [summary_view(summary) for summary in operations],
        "problem": problem if not messages and not operations else None,
    }


async def _failures(observatory: Observatory, before: int | None, limit: int) -> dict[str, Any]:
    store = observatory.store
    summaries = await store.correlations(limit=limit, before=before, outcome="failed")
    chains = await asyncio.gather(*(store.by_correlation(s.correlation_id) for s in summaries))
    return {
        "operations": [
            {
                "operation": summary_view(summary),
                "failures": [record_view(record) for record in records if record.failed],
            }
            for summary, records in zip(summaries, chains, strict=True)
        ],
        "next_before": summaries[-1].position if len(summaries) == limit else None,
        "dead_letters": await observatory.dead_letters(),
    }


async def _operation(
    store: MessageStore, correlation_id: str, filters: Filters | None = None
) -> dict[str, Any] | None:
    try:
        checked = validate_correlation_id(correlation_id)
    except ValueError as exc:
        raise HTTPException(400, detail=f"correlation: {exc}") from None
    trees = await store.build_causation_tree(checked)
    if not trees:
        return None
    query = {} if filters is None else filters.query()
    return operation_view(str(checked), trees, **query)


async def _message(observatory: Observatory, message_id: str) -> dict[str, Any]:
    try:
        checked = validate_request_id(message_id)
    except ValueError as exc:
        raise HTTPException(400, detail=f"message_id: {exc}") from None
    store = observatory.store
    record = await store.get(checked)
    if record is None:
        raise HTTPException(404, detail=f"no message {checked} in the store")
    causes, effects = await asyncio.gather(
        store.trace_causation(checked), store.trace_effects(checked)
    )
    return message_view(record, causes, effects, observatory.apm)


def _last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not text.isdigit() or len(text) > 19:
        raise HTTPException(400, detail="Last-Event-ID must be a position, a whole number")
    return int(text)


# -- the application -------------------------------------------------------------------------


def create_app(
    store: MessageStore | str | None = None,
    *,
    token: str | None = None,
    transport: Transport | str | None = None,
    dead_letter_destinations: Sequence[str] = (),
    apm_url_template: str | None = None,
    poll_interval: float = 0.25,
) -> FastAPI:
    """The Observatory as an ASGI application.

    - ``store``: a URL, opened read-only when the application starts (its own
      connection: the application that records is never slowed by it), closed when
      it stops; or a store object the caller opened and closes; ``None`` reads
      ``CQRS_STORE_URL`` (else ``sqlite:///cqrs.db``), as the ``cqrs`` command does.
    - ``token``: required by every page and endpoint when set (see
      :mod:`~python_cqrs_core.apps.observatory.security`); without it, only local host
      names are answered.
    - ``transport`` and ``dead_letter_destinations``: where dead letters are read (a
      :class:`~python_cqrs_core.transports.Transport`, or a ``redis://`` URL opened
      and closed with the application) and which destinations' dead letters to show.
    - ``apm_url_template``: an ``http(s)://`` address with ``{trace_id}`` (and
      optionally ``{span_id}``); a record's ``traceparent`` then links to it.
    - ``poll_interval``: how often the live feed reads the store, in seconds.

    Bad settings raise :class:`ValueError` naming the setting.
    """
    token = check_token(token)
    apm = None if apm_url_template is None else ApmLinks(apm_url_template)
    destinations = tuple(dead_letter_destinations)
    if transport is not None and not destinations:
        raise ValueError(
            "dead_letter_destinations: name the destinations whose dead letters the "
            "Observatory shows (a transport keeps dead letters per destination)"
        )
    if destinations and transport is None:
        raise ValueError("dead_letter_destinations need a transport to read them from")
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned: list[Any] = []
        opened = (
            store if isinstance(store, MessageStore) else await open_store(store, read_only=True)
        )
        if opened is not store:
            owned.append(opened)
        broker = open_transport(transport) if isinstance(transport, str) else transport
        if broker is not transport:
            owned.append(broker)
        follower = FeedFollower(opened, poll_interval=poll_interval)
        try:
            await follower.start()
            app.state.observatory = Observatory(
                store=opened,
                follower=follower,
                transport=broker,
                dead_letter_destinations=destinations,
                apm=apm,
                token=token,
            )
            yield
        finally:
            await follower.close()
            for resource in reversed(owned):
                await resource.close()

    app = FastAPI(
        title="python-cqrs-core Observatory",
        version=__version__,
        summary="Every recorded business operation, live: records, causation trees, "
        "handler events, failures and dead letters.",
        docs_url=None,  # the interactive docs load scripts from a CDN: none here
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(AccessGate, token=token)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _routes(app)
    return app


def open_transport(url: str, *, prefix: str = "") -> Transport:
    """The transport a URL names: ``redis://``, ``rediss://`` or ``unix://`` (Redis
    Streams, the ``[redis]`` extra), its keys under ``prefix`` as the application's
    transport has them (``RedisTransport(prefix=...)``)."""
    if url.split(":", 1)[0].lower() not in ("redis", "rediss", "unix"):
        raise ValueError(
            "transport: the Observatory reads dead letters from Redis Streams "
            f"(redis://, rediss:// or unix://), got {url_without_password(url)}"
        )
    from ...transports.redis import RedisTransport

    return RedisTransport.from_url(url, prefix=prefix)


def _routes(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if not _is_page(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        return _page(
            request,
            "error.html",
            {"status": exc.status_code, "detail": str(exc.detail)},
            status=exc.status_code,
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:])}: {error['msg']}"
            for error in exc.errors()
        )
        if not _is_page(request):
            return JSONResponse({"detail": problems}, status_code=400)
        return _page(request, "error.html", {"status": 400, "detail": problems}, status=400)

    # -- pages ----------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/timeline", status_code=303)

    @app.get("/timeline", include_in_schema=False, response_class=HTMLResponse)
    async def timeline(
        request: Request,
        observatory: ObservatoryDep,
        filters: FiltersDep,
        correlation: str | None = None,
        before: Annotated[int | None, Query(ge=1)] = None,
    ) -> HTMLResponse:
        store = observatory.store
        where = filters.record_filter()
        # The page shows the records up to ``position``, and its stream starts after
        # it: each record is on the page exactly once.
        position = await store.last_position()
        ceiling = position + 1 if before is None else before
        records = await newest_records(store, TIMELINE_ROWS, ceiling, where)
        summaries = await store.correlations(limit=OPERATIONS_LISTED, **filter_arguments(where))
        operation = None
        if correlation:
            operation = await _operation(store, correlation, filters)
        query = filters.query()
        stream = f"/api/stream?{urlencode({'after': position, **query})}"
        older = None
        if len(records) == TIMELINE_ROWS:
            older = f"/timeline?{urlencode({**query, 'before': records[-1].position})}"
        return _page(
            request,
            "timeline.html",
            {
                "filters": filters,
                "records": [record_view(record, **query) for record in records],
                "operations": [summary_view(summary) for summary in summaries],
                "correlation": correlation,
                "operation": operation,
                "stream": stream if before is None else None,
                "older": older,
                "position": position,
            },
        )

    @app.get("/messages/{message_id}", include_in_schema=False, response_class=HTMLResponse)
    async def message_page(
        request: Request, observatory: ObservatoryDep, message_id: str
    ) -> HTMLResponse:
        return _page(request, "message.html", {"view": await _message(observatory, message_id)})

    @app.get("/search", include_in_schema=False, response_class=HTMLResponse)
    async def search_page(request: Request, observatory: ObservatoryDep, q: str = "") -> Response:
        found = await _search(observatory.store, q)
        hits = found["messages"] + found["operations"]
        if len(hits) == 1:  # one answer: go there
            links = hits[0]["links"]
            return RedirectResponse(links.get("message") or links["operation"], status_code=303)
        return _page(request, "search.html", {"found": found})

    @app.get("/failures", include_in_schema=False, response_class=HTMLResponse)
    async def failures_page(
        request: Request,
        observatory: ObservatoryDep,
        before: Annotated[int | None, Query(ge=1)] = None,
    ) -> HTMLResponse:
        found = await _failures(observatory, before, 20)
        return _page(request, "failures.html", {"found": found})

    @app.get("/login", include_in_schema=False, response_class=HTMLResponse)
    async def login_page(request: Request, next: str | None = None) -> HTMLResponse:
        return _page(
            request, "login.html", {"next": safe_next(next), "wrong": False, "public": True}
        )

    @app.post("/login", include_in_schema=False)
    async def login(request: Request, observatory: ObservatoryDep) -> Response:
        body = await request.body()
        form = parse_qs(body[:_LOGIN_BODY_LIMIT].decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        target = safe_next((form.get("next") or ["/"])[0])
        expected = observatory.token
        if expected is None or not hmac.compare_digest(given.encode(), expected.encode()):
            await asyncio.sleep(0.25)  # slows guessing down; the token is long anyway
            context = {"next": target, "wrong": expected is not None, "public": True}
            return _page(request, "login.html", context, status=401 if expected else 404)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session_value(expected),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    # -- the API --------------------------------------------------------------------------

    @app.get("/api/records", response_model=RecordPageModel, tags=["timeline"])
    async def api_records(
        observatory: ObservatoryDep,
        filters: FiltersDep,
        before: Annotated[int | None, Query(ge=1, description="older than this position")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = TIMELINE_ROWS,
    ) -> dict[str, Any]:
        """The newest records that match the filters, newest first (the timeline)."""
        position = await observatory.store.last_position()
        ceiling = position + 1 if before is None else before
        records = await newest_records(observatory.store, limit, ceiling, filters.record_filter())
        return {
            "records": [record_view(record, **filters.query()) for record in records],
            "next_before": records[-1].position if len(records) == limit else None,
            "position": position,
        }

    @app.get("/api/feed", response_model=FeedPageModel, tags=["timeline"])
    async def api_feed(
        observatory: ObservatoryDep,
        filters: FiltersDep,
        after: Annotated[int, Query(ge=0, description="a position; 0: from the start")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """The store's feed: records after a position, oldest first (a cursor: pass
        ``next_after`` as the next ``after``)."""
        where = filters.record_filter()
        records = await observatory.store.read(after, limit, **filter_arguments(where))
        return {
            "records": [record_view(record, **filters.query()) for record in records],
            "next_after": records[-1].position if records else after,
        }

    @app.get(
        "/api/stream",
        response_class=StreamingResponse,
        tags=["timeline"],
        responses={
            200: {
                "description": "Server-sent events: one `record` event per record (its "
                "`id` is the record's position, its `data` a Record as JSON), and "
                "keep-alive comments.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def api_stream(
        observatory: ObservatoryDep,
        filters: FiltersDep,
        after: Annotated[
            int | None, Query(ge=0, description="stream records after this position")
        ] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> StreamingResponse:
        """The records that match the filters, live, as they are recorded (by any
        process).  A reconnecting client's ``Last-Event-ID`` (the position of the last
        event it received) wins over ``after``; without either, the stream starts with
        the next record recorded."""
        resume = _last_event_id(last_event_id)
        start = resume if resume is not None else after
        follower = observatory.follower
        if start is None:
            start = follower.position
        query = filters.query()
        events = record_events(
            follower, start, filters.record_filter(), lambda r: record_view(r, **query)
        )

        async def counted() -> AsyncIterator[str]:
            observatory.stream_clients += 1
            try:
                async for event in events:
                    if event.startswith("id:"):
                        observatory.stream_events += 1
                    yield event
            finally:
                observatory.stream_clients -= 1

        return StreamingResponse(
            counted(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    @app.get("/api/operations", response_model=OperationsPageModel, tags=["operations"])
    async def api_operations(
        observatory: ObservatoryDep,
        filters: FiltersDep,
        before: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 20,
    ) -> dict[str, Any]:
        """Business operations, newest first; the filters apply to the record that
        opened each (``outcome``: to the whole operation)."""
        where = filters.record_filter()
        summaries = await observatory.store.correlations(
            limit=limit, before=before, **filter_arguments(where)
        )
        return {
            "operations": [summary_view(summary) for summary in summaries],
            "next_before": summaries[-1].position if len(summaries) == limit else None,
        }

    @app.get(
        "/api/operations/{correlation_id:path}",
        response_model=OperationModel,
        tags=["operations"],
    )
    async def api_operation(observatory: ObservatoryDep, correlation_id: str) -> dict[str, Any]:
        """One business operation: every causation tree of the correlation id, and the
        waterfall of its handlers."""
        found = await _operation(observatory.store, correlation_id)
        if found is None:
            raise HTTPException(404, detail=f"no operation {correlation_id!r} in the store")
        return found

    @app.get("/api/messages/{message_id}", response_model=MessageModel, tags=["messages"])
    async def api_message(observatory: ObservatoryDep, message_id: str) -> dict[str, Any]:
        """One message: its record (personal data redacted), headers, causes and
        effects."""
        return await _message(observatory, message_id)

    @app.get("/api/search", response_model=SearchModel, tags=["messages"])
    async def api_search(
        observatory: ObservatoryDep,
        q: Annotated[
            str,
            Query(
                description="a message id or its first hex digits (at least 4), a "
                "correlation id, or a requested_by",
                max_length=512,
            ),
        ],
    ) -> dict[str, Any]:
        """Messages by id or unique id prefix; operations by correlation id or by who
        requested them."""
        return await _search(observatory.store, q)

    @app.get("/api/failures", response_model=FailuresModel, tags=["failures"])
    async def api_failures(
        observatory: ObservatoryDep,
        before: Annotated[int | None, Query(ge=1)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> dict[str, Any]:
        """Failed operations, newest first, with their failed messages; and the dead
        letters of the configured destinations."""
        return await _failures(observatory, before, limit)

    @app.get("/api/dead-letters", response_model=DeadLettersModel, tags=["failures"])
    async def api_dead_letters(observatory: ObservatoryDep) -> dict[str, Any]:
        """Dead-lettered messages of the configured destinations, oldest first."""
        return await observatory.dead_letters()

    @app.get("/api/status", response_model=StatusModel, tags=["observatory"])
    async def api_status(observatory: ObservatoryDep) -> dict[str, Any]:
        """The Observatory's own state: which store, how far the live feed has read."""
        return {
            "store": observatory.store_shown,
            "position": observatory.follower.position,
            "feed_error": observatory.follower.error,
            "stream_clients": observatory.stream_clients,
            "transport": None if observatory.transport is None else repr(observatory.transport),
            "version": __version__,
        }

    @app.get(
        "/metrics",
        tags=["observatory"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
    )
    async def metrics(observatory: ObservatoryDep) -> Response:
        """What the Observatory has seen, in the Prometheus text format."""
        return Response(await _metrics(observatory), media_type=CONTENT_TYPE)


async def _metrics(observatory: Observatory) -> str:
    follower = observatory.follower
    seen = MetricFamily(
        METRIC_RECORDS_SEEN,
        "counter",
        "Records the Observatory followed in the store since it started.",
    )
    for (kind, message_type, outcome, service), count in sorted(follower.seen.items()):
        seen.add(count, kind=kind, message_type=message_type, outcome=outcome, service=service)
    position = MetricFamily(
        METRIC_STORE_POSITION, "gauge", "Position of the newest record in the store."
    )
    position.add(follower.position)
    errors = MetricFamily(METRIC_FEED_ERRORS, "counter", "Reads of the store's feed that failed.")
    errors.add(follower.errors)
    clients = MetricFamily(METRIC_STREAM_CLIENTS, "gauge", "Live streams open (browsers watching).")
    clients.add(observatory.stream_clients)
    events = MetricFamily(METRIC_STREAM_EVENTS, "counter", "Record events sent on live streams.")
    events.add(observatory.stream_events)
    families = [seen, position, errors, clients, events]
    if observatory.transport is not None:
        letters = await observatory.dead_letters()
        dead = MetricFamily(
            METRIC_DEAD_LETTERS,
            "gauge",
            f"Dead letters per destination (at most {_DEAD_LETTERS_SHOWN} counted).",
        )
        for destination in observatory.dead_letter_destinations:
            dead.add(
                sum(1 for d in letters["dead_letters"] if d["destination"] == destination),
                destination=destination,
            )
        families.append(dead)
    return render(families)
