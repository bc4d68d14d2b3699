"""Checked by mypy in tests/typing/test_typing.py: what a type checker sees of the API."""

from __future__ import annotations

from typing import Any, assert_type

from python_cqrs_core import BaseCommand, BaseEvent, BaseQuery, Mediator, PaginatedQuery


class CreateUser(BaseCommand[int]):
    name: str


class GetUserName(BaseQuery[str]):
    user_id: int


class ListNames(PaginatedQuery[list[str]]):
    pass


class Untyped(BaseCommand):  # the guide's spelling: no result type, no complaint
    pass


class UserCreated(BaseEvent):
    user_id: int


async def dispatch(bus: Mediator) -> None:
    assert_type(await bus.send(CreateUser(name="Ada")), int)
    assert_type(await bus.query(GetUserName(user_id=1)), str)
    assert_type(await bus.query(ListNames(page=2)), list[str])
    assert_type(await bus.send(Untyped()), Any)
    assert_type(await bus.publish(UserCreated(user_id=1)), None)
    assert_type(await bus.process(CreateUser(name="Bo")), int)
    assert_type(await bus.process(UserCreated(user_id=2)), None)
