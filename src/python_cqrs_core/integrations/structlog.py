"""structlog integration: the correlation ids in every event dict.

Add :func:`correlation_processor` to the processor chain (``[structlog]`` extra)::

    import structlog
    from python_cqrs_core.integrations.structlog import correlation_processor

    structlog.configure(processors=[correlation_processor, structlog.dev.ConsoleRenderer()])

Every event then carries ``correlation_id``, ``causation_id``, ``request_id``,
``requested_by``, ``message_type``, ``trace_id`` and ``span_id`` of the message being
handled (``""`` outside any handler, see
:func:`python_cqrs_core.integrations.logging.correlation_fields`), so the guide's
Best Practice 4 needs no ``logger.bind(request_id=...)`` in handlers.  Keys already
bound are kept.

:func:`configure_structlog` builds the whole pipeline, routed through the standard
library; :func:`python_cqrs_core.integrations.logging.configure_logging` calls it for you.

Note: this module is ``python_cqrs_core.integrations.structlog``; ``import structlog`` below is the
structlog package (imports are absolute).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from .logging import (
    CORRELATION_FIELDS,
    correlation_fields,
    merge_correlation_fields,
    record_extras,
)

__all__ = ["configure_structlog", "correlation_processor"]


def correlation_processor(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """structlog processor adding the ids of the current context to ``event_dict``.

    Keys already bound keep their value; when ours differs it is added as
    ``cqrs_<key>`` (see :func:`~python_cqrs_core.integrations.logging.merge_correlation_fields`),
    so an application's own ``request_id`` and the message's both survive.

    >>> correlation_processor(None, "info", {"event": "hi", "request_id": "bound"})["request_id"]
    'bound'
    """
    merge_correlation_fields(event_dict, correlation_fields())
    return event_dict


def _add_record_extras(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Copy ``extra=`` values (and filter-added ids) of a standard library record."""
    record = event_dict.get("_record")
    if record is not None:
        for key, value in record_extras(record).items():
            event_dict.setdefault(key, value)
    return event_dict


def _drop_empty_ids(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Console output: leave out the ids that are empty (outside any handler)."""
    for key in CORRELATION_FIELDS:
        if event_dict.get(key) == "":
            del event_dict[key]
    return event_dict


def configure_structlog(
    *, json: bool = False, extra_processors: Sequence[Processor] = (), colors: bool = False
) -> structlog.stdlib.ProcessorFormatter:
    """Configure structlog to log through the standard library, and return the
    formatter that renders both structlog events and standard library records.

    Both go through the same chain: context variables bound with
    ``structlog.contextvars``, logger name, level, ISO timestamp (UTC),
    :func:`correlation_processor`, then ``extra_processors``; finally
    ``JSONRenderer`` (``json=True``, with the event under ``"message"`` as in
    :class:`~python_cqrs_core.integrations.logging.JsonFormatter`) or ``ConsoleRenderer`` (which
    leaves out the ids that are empty, and prints plain tracebacks: rich ones would
    show local variables, personal data included).  Standard library records also keep their
    ``extra=`` values.
    Put the formatter on a handler::

        handler = logging.StreamHandler()
        handler.setFormatter(configure_structlog(json=True))
        logging.getLogger().addHandler(handler)

    Loggers are not cached on first use, so calling it again takes effect everywhere.
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        correlation_processor,
        *extra_processors,
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    renderer: list[Processor]
    if json:
        renderer = [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ]
    else:
        # Plain tracebacks: a rich one would print local variables, i.e. message
        # fields, PII included.
        console = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
        renderer = [_drop_empty_ids, console]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[_add_record_extras, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
