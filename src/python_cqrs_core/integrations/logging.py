"""Correlated logs: every record carries the ids of the message being handled.

Add :class:`CorrelationFilter` to a handler and any format string may use
``%(request_id)s``, ``%(correlation_id)s``, ``%(causation_id)s``,
``%(requested_by)s``, ``%(message_type)s``, ``%(trace_id)s`` and ``%(span_id)s``::

    handler = logging.StreamHandler()
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(logging.Formatter(REQUEST_ID_FORMAT))
    logging.getLogger().addHandler(handler)

A handler that just calls ``logger.info("Starting user creation")`` then logs
``[550e8400-e29b-41d4-a716-446655440000] Starting user creation``: the guide's
"Log with request_id" with no code in the handler.

Outside any handler every field is ``""`` (so a format string never raises), except
``correlation_id`` and ``requested_by`` inside a
:class:`~python_cqrs_core.correlation_scope`, which are the scope's.  ``trace_id`` and
``span_id`` (hex) are set when ``opentelemetry-api`` is installed and a span is
recording; this module needs neither OpenTelemetry nor structlog.

:func:`configure_logging` wires it all in one call, for the standard library and, when
it is installed, structlog (whose processor is
:func:`python_cqrs_core.integrations.structlog.correlation_processor`).

Note: this module is ``python_cqrs_core.integrations.logging``; the ``import logging`` below is the
standard library (imports are absolute).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Final

from .._optional_otel import recording_span
from ..context import current_correlation_id, current_message, current_requested_by
from ..messages import tracing_fields
from ..names import LOG_FIELDS

if TYPE_CHECKING:
    from ..messages import BaseMessage

__all__ = [
    "CORRELATION_FIELDS",
    "CONSOLE_FORMAT",
    "REQUEST_ID_FORMAT",
    "CorrelationFilter",
    "JsonFormatter",
    "configure_logging",
    "correlation_fields",
    "merge_correlation_fields",
    "record_extras",
]

CORRELATION_FIELDS: Final = LOG_FIELDS
"""The keys added to every record, in this order (:data:`python_cqrs_core.names.LOG_FIELDS`)."""

REQUEST_ID_FORMAT: Final = "[%(request_id)s] %(message)s"
"""The guide's ``[<request_id>] message`` log lines."""

CONSOLE_FORMAT: Final = (
    "%(asctime)s %(levelname)s %(name)s %(message)s request_id=%(request_id)s "
    "correlation_id=%(correlation_id)s causation_id=%(causation_id)s "
    "requested_by=%(requested_by)s message_type=%(message_type)s"
)
"""The text format of :func:`configure_logging`: ``key=value`` pairs, so the guide's
``grep 'correlation_id=550e8400' app.log`` finds every line of an operation."""


def _trace_ids() -> tuple[str, str]:
    span = recording_span()
    if span is None:
        return "", ""
    span_context = span.get_span_context()
    return format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")


# The string fields of the last message seen.  A message's ids are final before it
# becomes the current message (the mediator stamps, then sets the context), so an
# identity check is exact; it saves three str(UUID) per log line of a handler.
_last: tuple[BaseMessage | None, dict[str, str]] = (None, {})


def _message_fields(message: BaseMessage) -> dict[str, str]:
    global _last
    cached_message, cached = _last
    if cached_message is message:
        return dict(cached)
    ids = tracing_fields(message)  # a log record holds text: None is written as ""
    fields = {
        "correlation_id": ids.correlation_id,
        "causation_id": ids.causation_id or "",
        "request_id": ids.request_id,
        "requested_by": ids.requested_by or "",
        "message_type": ids.message_type,
    }
    _last = (message, fields)
    return dict(fields)


def correlation_fields() -> dict[str, str]:
    """The ids of the current context, as strings (``""`` when unknown).

    Inside a handler: ``request_id``, ``correlation_id``, ``causation_id``,
    ``requested_by`` and ``message_type`` of the message being handled.  Outside one:
    the ``correlation_id`` and ``requested_by`` of the enclosing
    :class:`~python_cqrs_core.correlation_scope`, if any.  Plus ``trace_id`` and
    ``span_id`` of the recording OpenTelemetry span, if any.

    >>> correlation_fields()["request_id"]
    ''
    """
    message = current_message()
    if message is not None:
        fields = _message_fields(message)
    else:
        correlation_id = current_correlation_id()
        fields = {
            "correlation_id": "" if correlation_id is None else str(correlation_id),
            "causation_id": "",
            "request_id": "",
            "requested_by": current_requested_by() or "",
            "message_type": "",
        }
    fields["trace_id"], fields["span_id"] = _trace_ids()
    return fields


CONFLICT_PREFIX: Final = "cqrs_"
"""Where a field goes when the record or event already holds another value under its
name: ``request_id`` -> ``cqrs_request_id`` (see :func:`merge_correlation_fields`)."""


def merge_correlation_fields(target: MutableMapping[str, Any], fields: Mapping[str, str]) -> None:
    """Add ``fields`` to ``target`` (a log record's ``__dict__`` or a structlog event
    dict) without overwriting anything, and without losing anything either.

    A key ``target`` does not have is added.  A key it already has keeps the caller's
    value (one bound with ``structlog.contextvars``, passed with ``extra=``, or bound
    with ``log.bind``); when ours differs, ours is added under ``cqrs_<key>``.  The
    usual case is an application that binds its HTTP request id as ``request_id``: its
    value stays ``request_id``, the message's id is ``cqrs_request_id``.

    >>> event = {"request_id": "http-7"}
    >>> merge_correlation_fields(event, {"request_id": "6c1f0d1e", "correlation_id": "op-1"})
    >>> event
    {'request_id': 'http-7', 'cqrs_request_id': '6c1f0d1e', 'correlation_id': 'op-1'}
    """
    for key, value in fields.items():
        existing = target.get(key, _MISSING)
        if existing is _MISSING:
            target[key] = value
        elif value != "" and existing != value:
            target[CONFLICT_PREFIX + key] = value


_MISSING: Final = object()


class CorrelationFilter(logging.Filter):
    """Add the :data:`CORRELATION_FIELDS` of the current context to every record.

    A value the record already has (from ``extra=``) is kept, and a different value of
    ours is then added as ``cqrs_<name>`` (:func:`merge_correlation_fields`).  The
    filter never drops a record.  Attach it to a handler (it runs for every record the
    handler emits, whichever logger made it) or to a logger (records of that logger
    only).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        merge_correlation_fields(record.__dict__, correlation_fields())
        return True


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES: Final = {*vars(logging.makeLogRecord({})), "message", "asctime"}


_ISO_UTC: Final = "%Y-%m-%dT%H:%M:%S.%fZ"  # structlog's TimeStamper(fmt="iso", utc=True)


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The attributes of ``record`` that are not standard ones: ``extra=`` values and
    the correlation fields added by :class:`CorrelationFilter`."""
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``timestamp``, ``level``, ``logger``, ``message``,
    the correlation fields, any ``extra=`` values and ``exception`` when there is one.

    The keys are those of the structlog pipeline of :func:`configure_logging`, so the
    log schema does not depend on whether structlog is installed.  Standard library
    only; values that are not JSON types are written with ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).strftime(_ISO_UTC),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(record_extras(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str)


class _CorrelatedHandler(logging.StreamHandler[IO[str]]):
    """The handler :func:`configure_logging` installs (its class marks it as ours)."""


def configure_logging(
    *,
    json: bool = False,
    level: int | str = logging.INFO,
    extra_processors: Sequence[Callable[..., Any]] = (),
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send correlated logs of the whole application to ``stream`` (default stderr).

    Installs one handler on the root logger, with :class:`CorrelationFilter`, writing
    :data:`CONSOLE_FORMAT` lines, or JSON lines when ``json=True``.  When structlog is
    installed it is configured too: its events go through the same handler, after
    :func:`~python_cqrs_core.integrations.structlog.correlation_processor` and
    ``extra_processors``, rendered by structlog's ``JSONRenderer`` or
    ``ConsoleRenderer``; standard library records get the same processing.

    Calling it again replaces the handler it installed before (never two of them);
    handlers installed by others are left alone.  Returns the handler.

    ::

        configure_logging(json=True)
        logging.getLogger(__name__).info("order placed")
        # {"timestamp": "...", "level": "info", "logger": "shop", "message": "order
        #  placed", "correlation_id": "...", "request_id": "...", ...}
    """
    target = sys.stderr if stream is None else stream
    handler = _CorrelatedHandler(target)
    handler.addFilter(CorrelationFilter())
    try:
        import structlog  # noqa: F401 - only probing whether it is installed
    except ImportError:
        handler.setFormatter(JsonFormatter() if json else logging.Formatter(CONSOLE_FORMAT))
    else:
        from .structlog import configure_structlog

        handler.setFormatter(
            configure_structlog(
                json=json, extra_processors=extra_processors, colors=target.isatty()
            )
        )
    root = logging.getLogger()
    for previous in [h for h in root.handlers if isinstance(h, _CorrelatedHandler)]:
        root.removeHandler(previous)
        previous.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
