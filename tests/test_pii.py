"""PII: declaring personal data on messages, and redacting it wherever payloads leave."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from python_cqrs_core import PII, REDACTED, BaseCommand, BaseEvent, pii_fields, redacted_payload


class Address(BaseModel):
    street: Annotated[str, PII]
    city: str


class CreateInvite(BaseCommand):
    email: Annotated[str, PII]
    phone: Annotated[str | None, PII] = None
    nickname: Annotated[str, Field(min_length=1), PII] = "friend"
    address: Address | None = None
    expires_in_days: int


class InviteSent(BaseEvent):
    invite_id: int


def test_the_marker_reads_as_pii_and_redaction_is_three_stars():
    assert repr(PII) == "PII"
    assert REDACTED == "***"


def test_pii_fields_lists_exactly_the_annotated_fields():
    assert pii_fields(CreateInvite) == frozenset({"email", "phone", "nickname"})


def test_a_message_without_pii_has_no_pii_fields():
    assert pii_fields(InviteSent) == frozenset()


def test_pii_fields_are_inherited_and_extended_by_subclasses():
    class CreateVipInvite(CreateInvite):
        sponsor_email: Annotated[str, PII]

    assert pii_fields(CreateVipInvite) == {"email", "phone", "nickname", "sponsor_email"}
    assert pii_fields(CreateInvite) == {"email", "phone", "nickname"}


def test_the_value_on_the_message_is_untouched():
    invite = CreateInvite(email="jane@example.com", expires_in_days=7)
    assert invite.email == "jane@example.com"


def test_redacted_payload_replaces_pii_and_keeps_everything_else():
    invite = CreateInvite(
        email="jane@example.com",
        phone="+33 1 23 45 67 89",
        expires_in_days=7,
        correlation_id="req-1",
        requested_by="admin@example.com",
    )
    payload = redacted_payload(invite)
    expected = invite.model_dump(mode="json")
    expected.update(email=REDACTED, phone=REDACTED, nickname=REDACTED)
    assert payload == expected
    assert payload["request_id"] == str(invite.request_id)
    assert payload["correlation_id"] == "req-1"
    assert payload["expires_in_days"] == 7


def test_a_pii_field_that_is_none_stays_none():
    payload = redacted_payload(CreateInvite(email="a@b.c", expires_in_days=1))
    assert payload["phone"] is None
    assert payload["email"] == REDACTED


def test_nested_models_are_not_redacted_from_the_outside_but_redact_themselves():
    invite = CreateInvite(
        email="a@b.c", expires_in_days=1, address=Address(street="1 Main St", city="Paris")
    )
    assert redacted_payload(invite)["address"] == {"street": "1 Main St", "city": "Paris"}
    assert redacted_payload(invite.address) == {"street": REDACTED, "city": "Paris"}


def test_redacted_payload_is_json_ready():
    import json

    payload = redacted_payload(CreateInvite(email="a@b.c", expires_in_days=1))
    assert json.loads(json.dumps(payload)) == payload


def test_pii_fields_answers_from_its_cache():
    assert pii_fields(CreateInvite) is pii_fields(CreateInvite)
