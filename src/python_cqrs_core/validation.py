"""Validation of the tracing fields, shared by messages, scopes and HTTP headers.

Correlation ids arrive from outside (HTTP headers, broker headers, other services),
end up in logs, stores and response headers, and so are checked before they are
accepted anywhere:

- a :class:`uuid.UUID` is kept as it is;
- a string that parses as a UUID (``str(uuid)``, 32 hex digits, ``{...}``,
  ``urn:uuid:...``) becomes that :class:`uuid.UUID`, so
  ``correlation_id=str(cmd.request_id)`` equals ``cmd.request_id``;
- any other string is an *opaque* id (for example ``"req-abc-123"`` from an API
  gateway) and is kept as a string if it has 1 to 128 characters, all printable
  ASCII without whitespace (``!`` to ``~``); anything else is rejected.

``requested_by`` is free text of at most 256 characters with no control characters
(C0, DEL, C1, and the Unicode line and paragraph separators): it is written into
log lines, and a newline in it would let a caller forge a log line.
"""

from __future__ import annotations

import re
from uuid import UUID

__all__ = [
    "MAX_CORRELATION_ID_LENGTH",
    "MAX_REQUESTED_BY_LENGTH",
    "is_valid_opaque_id",
    "validate_correlation_id",
    "validate_request_id",
    "validate_requested_by",
    "validate_type_name",
]

MAX_CORRELATION_ID_LENGTH = 128
MAX_REQUESTED_BY_LENGTH = 256
MAX_TYPE_NAME_LENGTH = 256

_OPAQUE_ID = re.compile(f"[!-~]{{1,{MAX_CORRELATION_ID_LENGTH}}}")
_UUID_TEXT = re.compile(r"(?:urn:uuid:)?\{?[0-9a-fA-F-]{32,36}\}?")
_TYPE_NAME = re.compile(f"[!-~]{{1,{MAX_TYPE_NAME_LENGTH}}}")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def is_valid_opaque_id(value: str) -> bool:
    """Return whether ``value`` is an acceptable opaque id (1-128 chars, ``!``-``~``)."""
    return _OPAQUE_ID.fullmatch(value) is not None


def validate_correlation_id(value: object) -> UUID | str:
    """Return ``value`` as a correlation id, or raise :class:`ValueError` saying why.

    >>> validate_correlation_id("550e8400-e29b-41d4-a716-446655440000")
    UUID('550e8400-e29b-41d4-a716-446655440000')
    >>> validate_correlation_id("req-abc-123")
    'req-abc-123'
    """
    if type(value) is UUID:
        return value
    if isinstance(value, str):
        opaque = _OPAQUE_ID.fullmatch(value) is not None
        # UUID() tolerates whitespace, CR/LF and underscores (it ends in int(hex, 16)),
        # so only the textual forms of a UUID, hex digits and dashes, are parsed.
        if opaque and _UUID_TEXT.fullmatch(value) is not None:
            try:
                return UUID(value)
            except ValueError:
                pass
        if not opaque:
            if not value:
                raise ValueError("must not be empty")
            if len(value) > MAX_CORRELATION_ID_LENGTH:
                raise ValueError(
                    f"must be at most {MAX_CORRELATION_ID_LENGTH} characters, got {len(value)}"
                )
            raise ValueError(
                "must be a UUID or an opaque id of printable ASCII characters "
                "without whitespace or control characters"
            )
        return value
    if isinstance(value, UUID):  # a UUID subclass
        return UUID(int=value.int)
    raise ValueError(f"must be a UUID or a string, got {type(value).__name__}")


def validate_request_id(value: object) -> UUID:
    """Return ``value`` as a message id: a :class:`uuid.UUID`, or a string in one of the
    textual forms of a UUID; anything else (16 raw bytes, an int, an opaque string) is a
    :class:`ValueError`.

    >>> validate_request_id("550e8400-e29b-41d4-a716-446655440000")
    UUID('550e8400-e29b-41d4-a716-446655440000')
    """
    if type(value) is UUID:
        return value
    if isinstance(value, UUID):  # a UUID subclass
        return UUID(int=value.int)
    if isinstance(value, str):
        if _UUID_TEXT.fullmatch(value) is not None:
            try:
                return UUID(value)
            except ValueError:
                pass
        raise ValueError("must be a UUID or a UUID string such as 550e8400-e29b-41d4-...")
    raise ValueError(f"must be a UUID or a UUID string, got {type(value).__name__}")


def validate_requested_by(value: object) -> str:
    """Return ``value`` if it is a valid ``requested_by``, else raise :class:`ValueError`."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_REQUESTED_BY_LENGTH:
        raise ValueError(f"must be at most {MAX_REQUESTED_BY_LENGTH} characters, got {len(value)}")
    if _CONTROL.search(value) is not None:
        raise ValueError("must not contain control characters (they would end up in logs)")
    return value


def validate_type_name(value: object) -> str:
    """Return ``value`` if it can name a message type, else raise :class:`ValueError`.

    A type name travels in wire headers and store columns: 1 to 256 printable ASCII
    characters without whitespace, e.g. ``"orders.OrderPlaced"``.

    >>> validate_type_name("orders.OrderPlaced")
    'orders.OrderPlaced'
    """
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    if _TYPE_NAME.fullmatch(value) is None:
        raise ValueError(
            f"must be 1 to {MAX_TYPE_NAME_LENGTH} printable ASCII characters without whitespace"
        )
    return value
