"""The guide's "Immutability" section, run as written."""

import dataclasses
import threading

import pytest

from python_cqrs_core import BaseQuery, FrozenInstanceError


class GetUserQuery(BaseQuery):
    user_id: int


def test_immutability_example():
    query = GetUserQuery(user_id=123)
    with pytest.raises(FrozenInstanceError):
        query.user_id = 456  # ❌ Raises: FrozenInstanceError

    # Must create new instance
    new_query = GetUserQuery(user_id=456)  # ✅ OK

    assert query.user_id == 123
    assert new_query.user_id == 456


def test_the_error_is_the_frozen_instance_error_the_guide_names():
    query = GetUserQuery(user_id=123)
    with pytest.raises(dataclasses.FrozenInstanceError, match="user_id"):
        query.user_id = 456  # type: ignore[misc]


def test_tracing_fields_cannot_be_modified_either():
    query = GetUserQuery(user_id=123, requested_by="alice")
    for field, value in [("requested_by", "mallory"), ("correlation_id", "forged")]:
        with pytest.raises(FrozenInstanceError):
            setattr(query, field, value)
    assert (query.requested_by, query.correlation_id) == ("alice", None)


async def test_prevents_accidental_mutation_in_handlers():
    class SloppyHandler:
        async def handle(self, query: GetUserQuery) -> int:
            query.user_id += 1  # type: ignore[misc]
            return query.user_id

    query = GetUserQuery(user_id=1)
    with pytest.raises(FrozenInstanceError):
        await SloppyHandler().handle(query)
    assert query.user_id == 1


def test_thread_safety_many_threads_read_the_same_query():
    query = GetUserQuery(user_id=7)
    seen: list[tuple[int, object]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        for _ in range(200):
            try:
                query.user_id = 0  # type: ignore[misc]
            except FrozenInstanceError as exc:
                errors.append(exc)
            seen.append((query.user_id, query.request_id))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(seen) == {(7, query.request_id)}
    assert len(errors) == 800
