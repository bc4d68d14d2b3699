"""The shared validators of the tracing fields (used by messages, scopes and headers)."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from python_cqrs_core.validation import (
    MAX_CORRELATION_ID_LENGTH,
    MAX_REQUESTED_BY_LENGTH,
    is_valid_opaque_id,
    validate_correlation_id,
    validate_requested_by,
)


def test_limits_are_the_documented_ones():
    assert (MAX_CORRELATION_ID_LENGTH, MAX_REQUESTED_BY_LENGTH) == (128, 256)


def test_a_uuid_is_returned_as_the_same_object():
    value = uuid4()
    assert validate_correlation_id(value) is value


@pytest.mark.parametrize(
    "spelling",
    [str, lambda u: u.hex, lambda u: f"{{{u}}}", lambda u: u.urn, lambda u: str(u).upper()],
    ids=["dashed", "hex", "braces", "urn", "upper"],
)
def test_uuid_strings_become_uuids(spelling):
    value = uuid4()
    parsed = validate_correlation_id(spelling(value))
    assert type(parsed) is UUID
    assert parsed == value


@pytest.mark.parametrize(
    "value",
    [
        "req-abc-123",
        "a",
        "x" * 128,
        "".join(chr(c) for c in range(0x21, 0x7F)),  # every printable ASCII character
        "550e8400-e29b-41d4-a716-44665544000g",  # UUID length, not a UUID: opaque
    ],
)
def test_opaque_ids_are_kept_as_strings(value):
    assert is_valid_opaque_id(value)
    assert validate_correlation_id(value) == value
    assert type(validate_correlation_id(value)) is str


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "must not be empty"),
        ("x" * 129, "at most 128 characters, got 129"),
        ("a b", "without whitespace"),
        ("a\tb", "without whitespace"),
        ("a\r\nb", "control characters"),
        ("\u00e9t\u00e9", "printable ASCII"),
        ("a\x7f", "printable ASCII"),
    ],
)
def test_bad_strings_are_rejected_with_the_reason(value, reason):
    assert not is_valid_opaque_id(value)
    with pytest.raises(ValueError, match=reason):
        validate_correlation_id(value)


@pytest.mark.parametrize("value", [None, 42, 4.2, b"abc", ("a",), True])
def test_non_string_non_uuid_values_are_rejected_naming_their_type(value):
    with pytest.raises(ValueError, match=f"got {type(value).__name__}"):
        validate_correlation_id(value)


def test_a_uuid_subclass_becomes_a_plain_equal_uuid():
    class MyUUID(UUID):
        pass

    value = uuid4()
    parsed = validate_correlation_id(MyUUID(int=value.int))
    assert type(parsed) is UUID
    assert parsed == value


@pytest.mark.parametrize("value", ["", "admin@example.com", "Zoë", "x" * 256, "a b\u00a0c"])
def test_requested_by_accepts_text_without_control_characters(value):
    assert validate_requested_by(value) == value


@pytest.mark.parametrize(
    "value",
    ["\n", "\r", "\x00", "\x1b[31m", "\x7f", "\x85", "\x9f", "\u2028", "\u2029", "\t"],
    ids=repr,
)
def test_requested_by_rejects_each_kind_of_control_character(value):
    with pytest.raises(ValueError, match="control characters"):
        validate_requested_by(f"admin{value}forged")


def test_requested_by_rejects_257_characters_saying_how_many():
    with pytest.raises(ValueError, match="at most 256 characters, got 257"):
        validate_requested_by("x" * 257)


@pytest.mark.parametrize("value", [None, 1, b"admin"])
def test_requested_by_rejects_non_strings(value):
    with pytest.raises(ValueError, match="must be a string"):
        validate_requested_by(value)


@pytest.mark.parametrize(
    "value",
    [
        "\r" + "a" * 30 + "\n",  # UUID() would strip the whitespace
        " " + "1" * 32,
        "550e8400-e29b-41d4-a716-44665544000\n",
    ],
)
def test_uuid_like_strings_with_whitespace_are_rejected_not_parsed(value):
    with pytest.raises(ValueError, match="printable ASCII"):
        validate_correlation_id(value)


def test_a_uuid_like_string_with_underscores_stays_an_opaque_string():
    value = "a" * 8 + "_" + "b" * 23  # int(x, 16) would accept the underscore
    assert validate_correlation_id(value) == value
