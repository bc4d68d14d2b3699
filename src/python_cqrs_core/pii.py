"""Declaring personal data on messages, and redacting it wherever payloads leave.

Mark a field as personal data with ``Annotated[..., PII]``::

    class CreateInviteCommand(BaseCommand):
        email: Annotated[str, PII]
        expires_in_days: int

The value itself is untouched (the handler needs the real email); but every place the
library *emits* a payload, span attributes, log records, audit events and, when asked,
the message store, uses :func:`redacted_payload`, which replaces each declared field
with ``"***"``::

    >>> from typing import Annotated
    >>> from python_cqrs_core import BaseCommand
    >>> class Invite(BaseCommand):
    ...     email: Annotated[str, PII]
    ...     days: int
    >>> payload = redacted_payload(Invite(email="a@example.com", days=7))
    >>> payload["email"], payload["days"]
    ('***', 7)

Only top-level fields of the message are considered; a nested model that holds
personal data declares its own fields, and is redacted when it is itself emitted.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel

__all__ = ["PII", "REDACTED", "pii_fields", "redacted_payload"]

REDACTED: Final = "***"


class _PersonalData:
    """The ``PII`` marker; use the module-level instance, not this class."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PII"


PII: Final = _PersonalData()

_cache: dict[type[BaseModel], frozenset[str]] = {}


def pii_fields(model_type: type[BaseModel]) -> frozenset[str]:
    """Names of the fields of ``model_type`` annotated with :data:`PII` (cached)."""
    try:
        return _cache[model_type]
    except KeyError:
        names = frozenset(
            name
            for name, info in model_type.model_fields.items()
            if any(item is PII for item in info.metadata)
        )
        _cache[model_type] = names
        return names


def redacted_payload(message: BaseModel) -> dict[str, Any]:
    """``message.model_dump(mode="json")`` with every :data:`PII` field set to ``"***"``."""
    payload = message.model_dump(mode="json")
    for name in pii_fields(type(message)):
        if name in payload and payload[name] is not None:
            payload[name] = REDACTED
    return payload
