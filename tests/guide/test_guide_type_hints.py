"""The guide's "Type Hints" section, run as written.

The guide's code is copied verbatim; lines marked ``# filled in`` supply what it
leaves out (the handler's ``repo``).
"""

# ruff: noqa: UP006, UP035 - the guide writes typing.List; its code is kept verbatim

import typing

from python_cqrs_core import IQueryHandler as IQueryHandlerBase

from . import InMemoryUserRepository
from . import User as StoredUser


async def test_type_hints_example():
    from python_cqrs_core import IQueryHandler, BaseQuery  # noqa: I001
    from typing import List

    class ListUsersQuery(BaseQuery):
        status: str

    class User:
        id: int
        name: str

    # Handler with proper type hints
    class ListUsersHandler(IQueryHandler[ListUsersQuery, List[User]]):
        async def handle(self, query: ListUsersQuery) -> List[User]:
            # Type checker knows:
            # - query is ListUsersQuery
            # - Must return List[User]
            return await self.repo.list(status=query.status)

    handler = ListUsersHandler()  # filled in
    handler.repo = InMemoryUserRepository()  # filled in
    await handler.repo.create(name="Ada", email="ada@example.com")
    await handler.repo.create(name="Bob", email="bob@example.com")
    handler.repo.users[2].status = "suspended"

    users = await handler.handle(ListUsersQuery(status="active"))
    assert [u.name for u in users] == ["Ada"]
    assert all(isinstance(u, StoredUser) for u in users)

    # The generic parameters are real: a type checker and tools can read them.
    (base,) = ListUsersHandler.__orig_bases__
    assert typing.get_origin(base) is IQueryHandlerBase
    assert typing.get_args(base) == (ListUsersQuery, List[User])
    hints = typing.get_type_hints(ListUsersHandler.handle, localns=locals())
    assert hints == {"query": ListUsersQuery, "return": List[User]}
