"""Messages: the markers, the handler ABCs, and the pydantic bases with their tracing fields."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from python_cqrs_core import (
    BaseCommand,
    BaseEvent,
    BaseMessage,
    BaseQuery,
    FrozenInstanceError,
    ICommand,
    ICommandHandler,
    IEvent,
    IEventHandler,
    IQuery,
    IQueryHandler,
    PaginatedQuery,
    correlation_scope,
    message_kind,
)


class CreateUser(BaseCommand):
    name: str
    email: str


class GetUser(BaseQuery):
    user_id: int


class UserCreated(BaseEvent):
    user_id: int


class ListUsers(PaginatedQuery):
    status: str = "active"


ALL_KINDS = [
    pytest.param(lambda **kw: CreateUser(name="Ada", email="ada@example.com", **kw), id="command"),
    pytest.param(lambda **kw: GetUser(user_id=7, **kw), id="query"),
    pytest.param(lambda **kw: UserCreated(user_id=7, **kw), id="event"),
    pytest.param(lambda **kw: ListUsers(page=3, page_size=25, **kw), id="paginated-query"),
]


def error_locations(exc_info: pytest.ExceptionInfo[ValidationError]) -> list[tuple[object, ...]]:
    return [error["loc"] for error in exc_info.value.errors()]


# -- markers and handler interfaces --------------------------------------------------------


def test_marker_subclasses_need_no_body_and_instantiate():
    class MyCommand(ICommand):
        pass

    class MyQuery(IQuery):
        pass

    class MyEvent(IEvent):
        pass

    assert isinstance(MyCommand(), ICommand)
    assert isinstance(MyQuery(), IQuery)
    assert isinstance(MyEvent(), IEvent)


def test_a_command_is_an_icommand_and_not_an_iquery_or_ievent():
    cmd = CreateUser(name="Ada", email="ada@example.com")
    assert isinstance(cmd, ICommand)
    assert not isinstance(cmd, IQuery)
    assert not isinstance(cmd, IEvent)


def test_a_query_is_an_iquery_and_not_an_icommand_or_ievent():
    query = GetUser(user_id=1)
    assert isinstance(query, IQuery)
    assert not isinstance(query, ICommand)
    assert not isinstance(query, IEvent)


def test_an_event_is_an_ievent_and_not_a_command_or_query():
    event = UserCreated(user_id=1)
    assert isinstance(event, IEvent)
    assert not isinstance(event, ICommand)
    assert not isinstance(event, IQuery)


def test_every_message_kind_is_a_base_message():
    for message in (CreateUser(name="a", email="b"), GetUser(user_id=1), UserCreated(user_id=1)):
        assert isinstance(message, BaseMessage)


@pytest.mark.parametrize("handler_base", [ICommandHandler, IQueryHandler, IEventHandler])
def test_a_handler_without_handle_cannot_be_instantiated(handler_base):
    class Forgetful(handler_base):  # type: ignore[misc, valid-type]
        pass

    with pytest.raises(TypeError, match="handle"):
        Forgetful()


async def test_a_handler_implementing_handle_can_be_instantiated_and_called():
    class CreateUserHandler(ICommandHandler[CreateUser, str]):
        async def handle(self, command: CreateUser) -> str:
            return command.name.upper()

    class GetUserHandler(IQueryHandler[GetUser, int]):
        async def handle(self, query: GetUser) -> int:
            return query.user_id * 2

    class OnUserCreated(IEventHandler[UserCreated]):
        seen: list[int] = []

        async def handle(self, event: UserCreated) -> None:
            self.seen.append(event.user_id)

    assert await CreateUserHandler().handle(CreateUser(name="ada", email="e")) == "ADA"
    assert await GetUserHandler().handle(GetUser(user_id=21)) == 42
    on_created = OnUserCreated()
    assert await on_created.handle(UserCreated(user_id=3)) is None
    assert on_created.seen == [3]


@pytest.mark.parametrize(
    ("message_type", "kind"),
    [
        (BaseCommand, "command"),
        (CreateUser, "command"),
        (BaseQuery, "query"),
        (ListUsers, "query"),
        (BaseEvent, "event"),
        (UserCreated, "event"),
        (BaseMessage, None),
        (int, None),
    ],
)
def test_message_kind_is_read_from_the_marker(message_type, kind):
    assert message_kind(message_type) == kind
    assert message_kind(message_type) == kind  # second call answers from the cache


def test_message_kind_class_attribute_matches_the_kind():
    assert (BaseCommand.message_kind, BaseQuery.message_kind, BaseEvent.message_kind) == (
        "command",
        "query",
        "event",
    )


# -- defaults --------------------------------------------------------------------------


@pytest.mark.parametrize("build", ALL_KINDS)
def test_tracing_fields_have_their_defaults_outside_any_dispatch(build):
    before = datetime.now(UTC)
    message = build()
    after = datetime.now(UTC)

    assert isinstance(message.request_id, UUID)
    assert message.request_id.version == 4
    assert message.correlation_id is None
    assert message.causation_id is None
    assert message.requested_by is None
    assert before <= message.requested_at <= after
    assert message.requested_at.utcoffset() == timedelta(0)


def test_every_message_gets_its_own_request_id():
    first, second = CreateUser(name="a", email="b"), CreateUser(name="a", email="b")
    assert first.request_id != second.request_id


def test_effective_correlation_id_falls_back_to_the_request_id():
    cmd = CreateUser(name="a", email="b")
    assert cmd.effective_correlation_id == cmd.request_id
    linked = CreateUser(name="a", email="b", correlation_id="req-abc-123")
    assert linked.effective_correlation_id == "req-abc-123"


def test_messages_built_in_a_correlation_scope_take_its_correlation_and_requested_by():
    with correlation_scope("ext-123", requested_by="gateway"):
        cmd = CreateUser(name="a", email="b")
        explicit = CreateUser(name="a", email="b", correlation_id="mine", requested_by="me")
    assert (cmd.correlation_id, cmd.causation_id, cmd.requested_by) == ("ext-123", None, "gateway")
    assert (explicit.correlation_id, explicit.requested_by) == ("mine", "me")


def test_an_explicit_none_beats_the_ambient_correlation_at_construction():
    with correlation_scope("ext-123"):
        cmd = CreateUser(name="a", email="b", correlation_id=None)
    assert cmd.correlation_id is None


# -- immutability ----------------------------------------------------------------------


@pytest.mark.parametrize("build", ALL_KINDS)
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("request_id", uuid4()),
        ("correlation_id", "other"),
        ("requested_by", "mallory"),
        ("requested_at", datetime.now(UTC)),
        ("not_a_field", 1),
    ],
)
def test_assigning_any_attribute_raises_frozen_instance_error(build, field, value):
    message = build()
    before = message.model_dump()
    with pytest.raises(FrozenInstanceError, match=repr(field)):
        setattr(message, field, value)
    assert message.model_dump() == before


@pytest.mark.parametrize("build", ALL_KINDS)
def test_deleting_a_field_raises_frozen_instance_error(build):
    message = build()
    with pytest.raises(FrozenInstanceError, match="requested_by"):
        del message.requested_by
    assert "requested_by" in message.model_dump()


def test_frozen_instance_error_is_the_dataclasses_error_and_an_attribute_error():
    assert issubclass(FrozenInstanceError, dataclasses.FrozenInstanceError)
    assert issubclass(FrozenInstanceError, AttributeError)
    cmd = CreateUser(name="a", email="b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmd.name = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cmd.name = "b"  # type: ignore[misc]


def test_model_copy_with_update_copies_the_message_and_leaves_the_original():
    cmd = CreateUser(name="a", email="b")
    renamed = cmd.model_copy(update={"name": "c"})
    assert (cmd.name, renamed.name) == ("a", "c")
    assert (renamed.request_id, renamed.requested_at) == (cmd.request_id, cmd.requested_at)
    assert renamed.model_fields_set == cmd.model_fields_set | {"name"}


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"correlation_id": "ext\r\nforged: yes"}, "correlation_id"),
        ({"causation_id": ""}, "causation_id"),
        ({"requested_by": "a\nb"}, "requested_by"),
        ({"name": 42}, "name"),
        ({"nmae": "typo"}, "nmae"),
    ],
)
def test_model_copy_validates_what_it_updates(update, field):
    cmd = CreateUser(name="a", email="b")
    with pytest.raises(ValidationError) as exc_info:
        cmd.model_copy(update=update)
    assert field in str(exc_info.value)


def test_derive_makes_a_new_message_with_fresh_identity_and_validated_fields():
    cmd = CreateUser(name="a", email="b", requested_by="alice", correlation_id="op-1")
    derived = cmd.derive(name="c")
    assert type(derived) is CreateUser
    assert (derived.name, derived.email) == ("c", "b")
    assert derived.request_id != cmd.request_id
    assert derived.requested_at >= cmd.requested_at
    # a new message: its tracing fields are decided afresh, not copied
    assert (derived.correlation_id, derived.requested_by) == (None, None)
    with pytest.raises(ValidationError, match="email"):
        cmd.derive(email=None)
    with pytest.raises(ValidationError, match="correlation_id"):
        cmd.derive(correlation_id="bad id\r\n")


def test_derive_keeps_tracing_fields_passed_explicitly():
    cmd = CreateUser(name="a", email="b", correlation_id="op-1", requested_by="alice")
    derived = cmd.derive(correlation_id=cmd.correlation_id, requested_by=cmd.requested_by)
    assert (derived.correlation_id, derived.requested_by) == ("op-1", "alice")


def test_derive_inside_a_scope_inherits_like_any_new_message():
    cmd = CreateUser(name="a", email="b", correlation_id="op-1")
    with correlation_scope("op-2", requested_by="bob"):
        derived = cmd.derive()
    assert (derived.correlation_id, derived.requested_by) == ("op-2", "bob")


def test_the_frozen_error_recommends_derive():
    cmd = CreateUser(name="a", email="b")
    with pytest.raises(FrozenInstanceError, match=r"derive\(name=\.\.\.\)"):
        cmd.name = "c"  # type: ignore[misc]


# -- stable type names ------------------------------------------------------------------


def test_a_message_type_name_is_module_and_qualname_by_default():
    from python_cqrs_core import message_type_name

    assert message_type_name(CreateUser) == f"{__name__}.CreateUser"
    assert message_type_name(CreateUser(name="a", email="b")) == f"{__name__}.CreateUser"


def test_a_class_attribute_overrides_the_type_name_and_subclasses_get_their_own():
    from python_cqrs_core import message_type_name

    class OrderPlaced(BaseEvent):
        __message_type__ = "orders.OrderPlaced"

    class ExpressOrderPlaced(OrderPlaced):
        pass

    assert message_type_name(OrderPlaced) == "orders.OrderPlaced"
    assert message_type_name(ExpressOrderPlaced).endswith(
        "test_a_class_attribute_overrides_the_type_name_and_subclasses_get_their_own"
        ".<locals>.ExpressOrderPlaced"
    )
    assert "__message_type__" not in OrderPlaced.model_fields


@pytest.mark.parametrize("bad", ["", "orders Placed", "orders\nPlaced", "x" * 257, 42])
def test_an_invalid_type_name_fails_when_the_class_is_defined(bad):
    with pytest.raises(TypeError, match="__message_type__"):

        class Bad(BaseEvent):
            __message_type__ = bad


def test_tracing_fields_is_the_one_text_form_of_the_ids():
    from python_cqrs_core import tracing_fields

    cmd = CreateUser(name="a", email="b")
    fields = tracing_fields(cmd)
    assert fields.request_id == str(cmd.request_id)
    assert fields.correlation_id == str(cmd.request_id)  # effective before dispatch
    assert (fields.causation_id, fields.requested_by) == (None, None)
    assert fields.requested_at == cmd.requested_at.isoformat()
    assert (fields.message_type, fields.kind) == (f"{__name__}.CreateUser", "command")


# -- extra fields ----------------------------------------------------------------------


@pytest.mark.parametrize("build", ALL_KINDS)
def test_an_unknown_field_is_rejected_naming_it(build):
    with pytest.raises(ValidationError) as exc_info:
        build(corelation_id="typo")
    assert error_locations(exc_info) == [("corelation_id",)]
    assert exc_info.value.errors()[0]["type"] == "extra_forbidden"


def test_a_missing_required_field_is_named():
    with pytest.raises(ValidationError) as exc_info:
        CreateUser(name="a")  # type: ignore[call-arg]
    assert error_locations(exc_info) == [("email",)]


# -- PaginatedQuery --------------------------------------------------------------------


def test_paginated_query_defaults_to_the_first_page_of_ten():
    query = ListUsers()
    assert (query.page, query.page_size, query.offset) == (1, 10, 0)


@pytest.mark.parametrize(
    ("page", "page_size", "offset"),
    [(1, 20, 0), (2, 20, 20), (3, 20, 40), (5, 1, 4), (2, 100, 100), (10, 7, 63)],
)
def test_offset_is_page_minus_one_times_page_size(page, page_size, offset):
    query = ListUsers(page=page, page_size=page_size)
    assert query.offset == offset == (page - 1) * page_size


@pytest.mark.parametrize("page_size", [1, 100])
def test_page_size_accepts_its_bounds(page_size):
    assert ListUsers(page_size=page_size).page_size == page_size


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": -1}, "page"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"page": "first"}, "page"),
    ],
)
def test_out_of_range_pagination_is_a_validation_error_naming_the_field(kwargs, field):
    with pytest.raises(ValidationError) as exc_info:
        ListUsers(**kwargs)
    assert error_locations(exc_info) == [(field,)]


def test_paginated_query_is_a_query():
    assert isinstance(ListUsers(), BaseQuery)
    assert isinstance(ListUsers(), IQuery)
    assert message_kind(ListUsers) == "query"


# -- requested_at ----------------------------------------------------------------------


def test_requested_at_keeps_an_aware_timestamp_given_by_the_caller():
    paris = timezone(timedelta(hours=2))
    at = datetime(2026, 2, 26, 10, 30, 45, 123456, tzinfo=paris)
    cmd = CreateUser(name="a", email="b", requested_at=at)
    assert cmd.requested_at == at
    assert cmd.requested_at.utcoffset() == timedelta(hours=2)


def test_a_naive_requested_at_is_rejected():
    with pytest.raises(ValidationError) as exc_info:
        CreateUser(name="a", email="b", requested_at=datetime(2026, 2, 26, 10, 30))
    assert error_locations(exc_info) == [("requested_at",)]
    assert exc_info.value.errors()[0]["type"] == "timezone_aware"


def test_a_naive_requested_at_in_json_is_rejected():
    payload = CreateUser(name="a", email="b").model_dump(mode="json")
    payload["requested_at"] = "2026-02-26T10:30:45"
    with pytest.raises(ValidationError) as exc_info:
        CreateUser.model_validate(payload)
    assert error_locations(exc_info) == [("requested_at",)]


# -- requested_by ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["admin@example.com", "service:billing", "Zoë Ünicode", "x" * 256, ""]
)
def test_requested_by_accepts_printable_text_up_to_256_characters(value):
    assert CreateUser(name="a", email="b", requested_by=value).requested_by == value


@pytest.mark.parametrize(
    "value",
    [
        "x" * 257,
        "admin\nINFO forged log line",
        "admin\r",
        "nul\x00",
        "del\x7f",
        "nel\x85",
        "line\u2028separator",
        "para\u2029separator",
        "tab\there",
    ],
)
def test_requested_by_rejects_overlong_values_and_control_characters(value):
    with pytest.raises(ValidationError) as exc_info:
        CreateUser(name="a", email="b", requested_by=value)
    assert error_locations(exc_info) == [("requested_by",)]


@pytest.mark.parametrize("value", [5, ["admin"], object()])
def test_requested_by_rejects_non_strings(value):
    with pytest.raises(ValidationError) as exc_info:
        CreateUser(name="a", email="b", requested_by=value)
    assert error_locations(exc_info) == [("requested_by",)]


# -- correlation_id and causation_id ---------------------------------------------------


@pytest.mark.parametrize("field", ["correlation_id", "causation_id"])
def test_a_uuid_is_kept(field):
    value = uuid4()
    assert getattr(CreateUser(name="a", email="b", **{field: value}), field) is value


@pytest.mark.parametrize("field", ["correlation_id", "causation_id"])
def test_a_uuid_string_of_another_message_equals_its_request_id(field):
    first = CreateUser(name="a", email="b")
    linked = CreateUser(name="a", email="b", **{field: str(first.request_id)})
    assert getattr(linked, field) == first.request_id
    assert isinstance(getattr(linked, field), UUID)


@pytest.mark.parametrize(
    "form",
    [
        lambda u: u.hex,
        lambda u: str(u).upper(),
        lambda u: "{" + str(u) + "}",
        lambda u: u.urn,
    ],
    ids=["hex", "upper", "braces", "urn"],
)
def test_other_uuid_spellings_are_parsed_to_the_same_uuid(form):
    value = uuid4()
    assert CreateUser(name="a", email="b", correlation_id=form(value)).correlation_id == value


@pytest.mark.parametrize(
    "value",
    [
        "req-abc-123",
        "x" * 128,
        "!",
        "~",
        "gw:2026-02-26/abc_DEF.123",
        "0123456789abcdef0123456789abcdeg",  # 32 characters but not hex: opaque
    ],
)
def test_an_opaque_correlation_string_is_kept_as_a_string(value):
    cmd = CreateUser(name="a", email="b", correlation_id=value)
    assert cmd.correlation_id == value
    assert type(cmd.correlation_id) is str


@pytest.mark.parametrize("field", ["correlation_id", "causation_id"])
@pytest.mark.parametrize(
    "value",
    [
        "x" * 129,
        "",
        "req abc",
        "req\tabc",
        "req\r\nX-Injected: 1",
        "caf\u00e9",
        "\u00a0",
        "null\x00",
        "del\x7f",
    ],
    ids=["129-chars", "empty", "space", "tab", "crlf", "non-ascii", "nbsp", "nul", "del"],
)
def test_bad_correlation_strings_are_rejected_naming_the_field(field, value):
    with pytest.raises(ValidationError) as exc_info:
        CreateUser(name="a", email="b", **{field: value})
    assert error_locations(exc_info) == [(field,)]


@pytest.mark.parametrize("value", [123, 1.5, b"req-abc", ["req"], True, object()])
def test_non_string_correlation_ids_are_rejected(value):
    with pytest.raises(ValidationError) as exc_info:
        CreateUser(name="a", email="b", correlation_id=value)
    assert error_locations(exc_info) == [("correlation_id",)]


def test_the_error_message_says_why_an_id_was_rejected():
    with pytest.raises(ValidationError, match="at most 128 characters"):
        CreateUser(name="a", email="b", correlation_id="x" * 129)
    with pytest.raises(ValidationError, match="must not be empty"):
        CreateUser(name="a", email="b", correlation_id="")
    with pytest.raises(ValidationError, match="without whitespace"):
        CreateUser(name="a", email="b", correlation_id="a b")


def test_a_uuid_subclass_is_normalised_to_a_plain_uuid():
    class TaggedUUID(UUID):
        pass

    value = uuid4()
    cmd = CreateUser(name="a", email="b", correlation_id=TaggedUUID(int=value.int))
    assert type(cmd.correlation_id) is UUID
    assert cmd.correlation_id == value


def test_several_bad_fields_are_all_reported():
    with pytest.raises(ValidationError) as exc_info:
        CreateUser(
            name="a",
            email="b",
            correlation_id="a b",
            requested_by="x\n",
            requested_at=datetime(2026, 1, 1),
        )
    assert set(error_locations(exc_info)) == {
        ("correlation_id",),
        ("requested_by",),
        ("requested_at",),
    }


# -- JSON round trip -------------------------------------------------------------------


def assert_identical(restored: BaseMessage, original: BaseMessage) -> None:
    assert type(restored) is type(original)
    assert restored == original
    assert restored.model_dump() == original.model_dump()
    for name in type(original).model_fields:
        got, want = getattr(restored, name), getattr(original, name)
        assert got == want, name
        assert type(got) is type(want), name
    assert restored.requested_at.utcoffset() == original.requested_at.utcoffset()
    assert restored.requested_at.microsecond == original.requested_at.microsecond


@pytest.mark.parametrize("build", ALL_KINDS)
def test_json_round_trip_preserves_every_field_with_defaults(build):
    original = build()
    assert_identical(type(original).model_validate_json(original.model_dump_json()), original)


@pytest.mark.parametrize("build", ALL_KINDS)
@pytest.mark.parametrize(
    ("correlation_id", "causation_id"),
    [(uuid4(), uuid4()), ("req-abc-123", "evt:42"), (None, None), ("gw-1", uuid4())],
    ids=["uuids", "opaque", "none", "mixed"],
)
def test_json_round_trip_preserves_ids_and_a_callers_timestamp(build, correlation_id, causation_id):
    tz = timezone(timedelta(hours=-3, minutes=-30))
    original = build(
        correlation_id=correlation_id,
        causation_id=causation_id,
        requested_by="ops@example.com",
        requested_at=datetime(2026, 2, 26, 10, 30, 45, 987654, tzinfo=tz),
    )
    restored = type(original).model_validate_json(original.model_dump_json())
    assert_identical(restored, original)
    assert restored.requested_at.isoformat() == "2026-02-26T10:30:45.987654-03:30"


def test_json_round_trip_inside_a_scope_does_not_pick_up_the_ambient_ids():
    original = CreateUser(name="a", email="b")
    with correlation_scope("ext-123", requested_by="gateway"):
        restored = CreateUser.model_validate_json(original.model_dump_json())
    assert_identical(restored, original)
    assert restored.correlation_id is None


def test_json_mode_dump_gives_strings_for_every_id():
    cmd = CreateUser(name="a", email="b", correlation_id=uuid4(), causation_id="evt-1")
    dumped = cmd.model_dump(mode="json")
    assert dumped["request_id"] == str(cmd.request_id)
    assert dumped["correlation_id"] == str(cmd.correlation_id)
    assert dumped["causation_id"] == "evt-1"


# -- equality and hashing --------------------------------------------------------------


def test_a_message_equals_its_copy_and_its_json_round_trip_with_equal_hashes():
    cmd = CreateUser(name="a", email="b")
    for twin in (cmd.model_copy(), CreateUser.model_validate_json(cmd.model_dump_json())):
        assert twin == cmd
        assert hash(twin) == hash(cmd)


def test_messages_with_equal_payloads_but_distinct_ids_are_different():
    first, second = CreateUser(name="a", email="b"), CreateUser(name="a", email="b")
    assert first != second
    assert len({first, second}) == 2


def test_messages_are_usable_as_set_members_and_dict_keys():
    cmd = CreateUser(name="a", email="b")
    seen = {cmd: "handled"}
    assert seen[cmd.model_copy()] == "handled"
    assert {cmd, cmd.model_copy()} == {cmd}


def test_messages_of_different_types_are_never_equal():
    cmd = CreateUser(name="a", email="b")

    class CreateAdmin(CreateUser):
        pass

    twin = CreateAdmin.model_validate(cmd.model_dump())
    assert twin.request_id == cmd.request_id
    assert twin != cmd
    assert hash(twin) != hash(cmd)


def test_model_construct_fills_the_generated_tracing_fields():
    # model_construct skips validation but still runs the default factories.
    first, second = (CreateUser.model_construct(name="a", email="b") for _ in range(2))
    assert first.request_id.version == 4 and first.request_id != second.request_id
    assert first.requested_at.tzinfo is not None
    assert (first.correlation_id, first.causation_id, first.requested_by) == (None, None, None)


# -- request_id input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"0123456789abcdef", bytearray(16), 2**100, "req-abc-123", "", " 550e8400-e29b-41d4-a716"],
)
def test_request_id_rejects_anything_but_a_uuid_or_uuid_text(value):
    with pytest.raises(ValidationError) as exc_info:
        CreateUser(name="a", email="b", request_id=value)
    assert exc_info.value.errors()[0]["loc"] == ("request_id",)


@pytest.mark.parametrize(
    "spelling",
    [
        lambda u: u,
        str,
        lambda u: u.hex,
        lambda u: str(u).upper(),
        lambda u: f"{{{u}}}",
        lambda u: f"urn:uuid:{u}",
    ],
)
def test_request_id_accepts_a_uuid_and_its_textual_forms(spelling):
    given = uuid4()
    assert CreateUser(name="a", email="b", request_id=spelling(given)).request_id == given


def test_request_id_text_with_control_characters_is_rejected():
    with pytest.raises(ValidationError):
        CreateUser(name="a", email="b", request_id=f"{uuid4()}\r\n")
