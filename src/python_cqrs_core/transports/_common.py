"""Checks and conversions every transport and the consumer share (package-private).

Names of destinations, groups and consumers become Redis keys, queue or subject names
and log fields, so they are checked once, here, with one rule: 1 to 256 printable
ASCII characters without whitespace.  Reasons (why a message was retried or
dead-lettered) often quote exception texts that came from outside, so they are made
safe to store and to log before they go anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from ..validation import validate_type_name

MAX_REASON_LENGTH: Final = 1000
"""The longest reason kept with a retry or a dead letter; a longer one is cut."""

_UNPRINTABLE: Final = re.compile(r"[^\t\x20-\x7e\u00a0-\u2027\u202a-\uffff]")


def check_name(value: str, what: str) -> str:
    """``value`` if it can name a destination, a group or a consumer, else a
    :class:`ValueError` that says which (``what``) and why."""
    try:
        return validate_type_name(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def check_headers(headers: Mapping[str, str]) -> None:
    """Refuse headers that are not text to text: a transport stores them as they are."""
    for name, value in headers.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"header names must be non-empty strings, got {name!r}")
        if not isinstance(value, str):
            raise TypeError(f"header {name!r} must be a string, got {type(value).__name__}")


def safe_reason(text: str) -> str:
    """``text`` fit for a log line and a store column: control characters (line breaks
    included, so a reason cannot forge a log line) become ``?``, and it is cut at
    :data:`MAX_REASON_LENGTH` characters."""
    cleaned = _UNPRINTABLE.sub("?", text)
    if len(cleaned) > MAX_REASON_LENGTH:
        return cleaned[: MAX_REASON_LENGTH - 3] + "..."
    return cleaned
