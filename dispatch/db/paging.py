"""Keyset paging: a page is the rows after the last one the client saw, in a total order
(the list's own order, ended by a unique column). Unlike OFFSET it is stable while rows are
added (nothing is shown twice or skipped) and costs the same on the last page as on the first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

T = TypeVar("T")

Key = tuple[Any, ...]


@dataclass(frozen=True)
class PageRequest:
    """Where a page starts (`after`: the key of the last row already seen) and its size."""

    limit: int
    after: Key | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_after: Key | None  # the key to ask the next page with; None on the last page


@dataclass(frozen=True)
class Keyset:
    """The columns a list is ordered by, the last one unique, all the same direction."""

    columns: tuple[ColumnElement[Any], ...]
    descending: bool = False

    def apply(self, stmt: Select[Any], request: PageRequest) -> Select[Any]:
        """`stmt` ordered by the key, after `request.after`, one row more than a page (to
        know whether another page follows)."""
        order = [c.desc() if self.descending else c.asc() for c in self.columns]
        stmt = stmt.order_by(*order).limit(request.limit + 1)
        if request.after is not None:
            bound = tuple_(*[_typed(c, v) for c, v in zip(self.columns, request.after,
                                                         strict=True)])
            here = tuple_(*self.columns)
            stmt = stmt.where(here < bound if self.descending else here > bound)
        return stmt

    def page(self, session: Session, stmt: Select[Any], request: PageRequest,
             key_of: Callable[[Any], Key], scalars: bool = True) -> Page[Any]:
        result = session.execute(self.apply(stmt, request))
        rows = list(result.scalars() if scalars else result.all())
        return cut(rows, request.limit, key_of)


def cut(rows: Sequence[T], limit: int, key_of: Callable[[T], Key]) -> Page[T]:
    """A page from `limit + 1` fetched rows: the extra row only says that more follow."""
    items = list(rows[:limit])
    more = len(rows) > limit and items
    return Page(items, key_of(items[-1]) if more else None)


def _typed(column: ColumnElement[Any], value: Any) -> Any:
    """A key value as the column holds it (cursors carry times as ISO text)."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return value
    if python_type is datetime and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value
