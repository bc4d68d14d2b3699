"""The guide's code examples, run as tests.

Each ``test_guide_*`` module copies the code of one section of
``python-cqrs-core-guide.txt`` verbatim into its tests.  This package module holds the
only things the guide leaves out: the collaborators its examples use without defining
(a ``User``, an in-memory user repository, a ``db.query(...)`` session, ``metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class User:
    """The guide's domain model, as its Complete Example defines it."""

    def __init__(self, id: int, name: str, email: str, status: str = "active") -> None:
        self.id = id
        self.name = name
        self.email = email
        self.status = status

    def __repr__(self) -> str:
        return f"User(id={self.id}, name={self.name!r})"


class InMemoryUserRepository:
    """The user repository the guide's handlers call.

    ``create`` accepts both forms the guide uses: ``create(name=..., email=...)`` and
    ``create(command)``.
    """

    def __init__(self) -> None:
        self.users: dict[int, User] = {}
        self.created_from: list[Any] = []

    async def create(self, command: Any = None, /, **fields: Any) -> int:
        if command is not None:
            self.created_from.append(command)
            fields = {"name": command.name, "email": command.email}
        user_id = len(self.users) + 1
        self.users[user_id] = User(user_id, fields["name"], fields["email"])
        return user_id

    async def get(self, user_id: int) -> User:
        return self.users[user_id]

    async def list(self, status: str) -> list[User]:
        return [user for user in self.users.values() if user.status == status]


@dataclass
class FakeQuery:
    """``db.query(User).offset(n).limit(m).all()``, over a list of rows."""

    rows: list[Any]
    applied: list[tuple[str, int]]
    _offset: int = 0
    _limit: int | None = None

    def offset(self, offset: int) -> FakeQuery:
        self.applied.append(("offset", offset))
        self._offset = offset
        return self

    def limit(self, limit: int) -> FakeQuery:
        self.applied.append(("limit", limit))
        self._limit = limit
        return self

    async def all(self) -> list[Any]:
        end = None if self._limit is None else self._offset + self._limit
        return self.rows[self._offset : end]


@dataclass
class FakeDb:
    """A ``db`` whose ``query(Model)`` reads from in-memory tables."""

    tables: dict[type, list[Any]]
    applied: list[tuple[str, int]] = field(default_factory=list)

    def query(self, model: type) -> FakeQuery:
        return FakeQuery(self.tables[model], self.applied)


@dataclass
class RecordingMetrics:
    """``metrics.record_query_duration(...)``, in both call forms the guide uses."""

    recorded: list[dict[str, Any]] = field(default_factory=list)

    def record_query_duration(
        self, query_type: str, duration: float, request_id: str | None = None
    ) -> None:
        self.recorded.append(
            {"query_type": query_type, "duration": duration, "request_id": request_id}
        )
