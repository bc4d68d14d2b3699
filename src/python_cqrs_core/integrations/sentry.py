"""Sentry error reports that carry the message's business context.

Install the ``[sentry]`` extra (``sentry-sdk`` 2.x), initialise Sentry as usual, then::

    from python_cqrs_core.integrations.sentry import SentryMiddleware

    bus.add_middleware(SentryMiddleware())

For every dispatched message the middleware forks the current Sentry scope
(:func:`sentry_sdk.new_scope`) and sets on it:

- the tags ``business.request_id``, ``correlation_id``, ``causation_id`` (left out for a
  root message), ``requested_by`` (when set), ``cqrs.type`` (command/query/event),
  ``cqrs.name`` (the class) and ``cqrs.message_type`` (the stable type name);
- a context named after the kind (``command``, ``query`` or ``event``) with the type,
  the ids, ``requested_by`` and ``requested_at`` (and the payload with
  ``include_payload=True``, with the fields declared :data:`~python_cqrs_core.PII`
  replaced by ``"***"``);
- the user ``{"id": requested_by}``, only when the client may send personal data
  (``send_default_pii=True``, or ``data_collection={"user_info": True}`` in the
  sentry-sdk versions that replace ``send_default_pii`` with ``data_collection``).

Everything sent to Sentry while the handler runs (breadcrumbs, messages, errors)
carries them, and nothing leaks to other messages: each message has its own scope,
so concurrent dispatches (``asyncio.gather``) never see each other's tags.

When the handler raises, the exception is captured *inside* that scope, so the event
is tagged, then re-raised unchanged.  It is captured once: a message dispatched by a
handler that fails inside its parent's handler is reported with the innermost (most
precise) tags, and the outer middleware and Sentry's own integrations (ASGI, FastAPI)
skip it.

The guide's ``with sentry_sdk.configure_scope() as scope:`` is deprecated in 2.x and,
worse, writes to the scope shared by everything that follows; see
``docs/observability/sentry.md`` for the mapping.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

import sentry_sdk
from sentry_sdk.scope import add_global_event_processor
from sentry_sdk.utils import event_from_exception

from ..mediator import CallNext
from ..messages import BaseMessage, tracing_fields
from ..names import (
    SENTRY_MECHANISM,
    TAG_CAUSATION_ID,
    TAG_CORRELATION_ID,
    TAG_CQRS_NAME,
    TAG_CQRS_TYPE,
    TAG_MESSAGE_TYPE,
    TAG_REQUEST_ID,
    TAG_REQUESTED_BY,
)
from ..pii import redacted_payload

__all__ = ["MECHANISM", "SentryMiddleware", "message_context"]

MECHANISM: Final = SENTRY_MECHANISM
"""The ``mechanism.type`` of the error events this middleware captures."""

# Set on an exception once captured, so that outer middleware (a parent message) and
# Sentry integrations do not report it a second time.
_CAPTURED_FLAG: Final = "__cqrs_sentry_captured__"


def _drop_recaptured(event: Any, hint: Any) -> Any:
    """Global event processor: drop a second report of an exception we captured.

    Sentry's integrations (ASGI, FastAPI, logging) report the unhandled exception
    again when it reaches them; the event we captured already has the message tags.
    """
    exc_info = hint.get("exc_info") if hint else None
    if exc_info and getattr(exc_info[1], _CAPTURED_FLAG, False):
        return None
    return event


_processor_installed = False


def _install_processor() -> None:
    global _processor_installed
    if not _processor_installed:
        add_global_event_processor(_drop_recaptured)
        _processor_installed = True


def message_context(message: BaseMessage, *, include_payload: bool = False) -> dict[str, Any]:
    """The Sentry context of a message: what the guide puts in ``set_context("command", ...)``.

    >>> from python_cqrs_core import BaseCommand
    >>> class Ping(BaseCommand):
    ...     pass
    >>> sorted(message_context(Ping()))  # doctest: +NORMALIZE_WHITESPACE
    ['causation_id', 'correlation_id', 'message_type', 'request_id', 'requested_at',
     'requested_by', 'type']

    A context is JSON: a missing id is ``null`` there (a tag is left out instead).
    """
    fields = tracing_fields(message)
    context: dict[str, Any] = {
        "type": type(message).__name__,
        "message_type": fields.message_type,
        "request_id": fields.request_id,
        "correlation_id": fields.correlation_id,
        "causation_id": fields.causation_id,
        "requested_by": fields.requested_by,
        "requested_at": fields.requested_at,
    }
    if include_payload:
        context["payload"] = redacted_payload(message)
    return context


class SentryMiddleware:
    """Tag Sentry events with the message being handled, and report handler errors.

    ``include_payload=True`` adds the message's fields to the context, with declared
    personal data redacted.  Without an active Sentry client (``sentry_sdk.init`` never
    called) the middleware only forwards the call.
    """

    __slots__ = ("include_payload",)

    def __init__(self, *, include_payload: bool = False) -> None:
        self.include_payload = include_payload
        _install_processor()

    async def __call__(self, message: BaseMessage, call_next: CallNext) -> Any:
        client = sentry_sdk.get_client()
        if not client.is_active():
            return await call_next(message)
        fields = tracing_fields(message)
        kind = fields.kind
        with sentry_sdk.new_scope() as scope:
            scope.set_tag(TAG_REQUEST_ID, fields.request_id)
            scope.set_tag(TAG_CORRELATION_ID, fields.correlation_id)
            if fields.causation_id is not None:  # a tag is left out, never "None"
                scope.set_tag(TAG_CAUSATION_ID, fields.causation_id)
            scope.set_tag(TAG_CQRS_TYPE, kind)
            scope.set_tag(TAG_CQRS_NAME, type(message).__name__)
            scope.set_tag(TAG_MESSAGE_TYPE, fields.message_type)
            if fields.requested_by is not None:
                scope.set_tag(TAG_REQUESTED_BY, fields.requested_by)
                if _may_send_user(client):
                    scope.set_user({"id": fields.requested_by, "username": fields.requested_by})
            scope.set_context(kind, message_context(message, include_payload=self.include_payload))
            try:
                return await call_next(message)
            except Exception as exc:
                _capture_once(client, exc)
                raise


def _may_send_user(client: Any) -> bool:
    """Whether the client may send user identity: ``data_collection["user_info"]``
    (sentry-sdk >= 2.5x resolves ``send_default_pii`` into it), else the older
    ``send_default_pii`` option."""
    collection = client.options.get("data_collection")
    if isinstance(collection, dict) and "user_info" in collection:
        return bool(collection["user_info"])
    return bool(client.should_send_default_pii())


def _capture_once(client: Any, exc: Exception) -> None:
    """Capture ``exc`` on the current scope unless it was captured already."""
    if getattr(exc, _CAPTURED_FLAG, False):
        return
    event, hint = event_from_exception(
        exc, client_options=client.options, mechanism={"type": MECHANISM, "handled": False}
    )
    sentry_sdk.capture_event(event, hint=hint)
    with contextlib.suppress(AttributeError, TypeError):  # an exception with __slots__
        setattr(exc, _CAPTURED_FLAG, True)
