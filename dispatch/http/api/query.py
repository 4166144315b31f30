"""Query parameters, declared as pydantic models like bodies are (`registry.route(query=)`),
so they are validated by name and documented as `in: query` parameters. Values arrive as
text; numbers are read from ASCII digits only, booleans from `true`/`false` only.

Every list pages by cursor (`PageQuery`): the cursor is the key of the last row shown,
signed with the app's secret and bound to the list's path, so a client cannot forge a
position or carry one to another list."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from flask import current_app, request
from itsdangerous import BadData, URLSafeSerializer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from dispatch.db.paging import Key, Page, PageRequest
from dispatch.domain.commands import refuse_unplain_text

_INT = re.compile(r"[0-9]{1,19}")
_FLOAT = re.compile(r"-?[0-9]{1,10}(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?")


def _whole(value: object) -> object:
    if isinstance(value, str):
        if not _INT.fullmatch(value):
            raise PydanticCustomError("number.whole", "must be a whole number")
        return int(value)
    return value


def _decimal(value: object) -> object:
    if isinstance(value, str):
        if not _FLOAT.fullmatch(value):
            raise PydanticCustomError("number.expected", "must be a number")
        return float(value)
    return value


def _yes_no(value: object) -> object:
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise PydanticCustomError("choice.yes_no", "must be true or false")
        return value == "true"
    return value


# Put bounds before these (`Annotated[int, Field(ge=1), ASCII_INT]`): pydantic then checks
# them on the number, and documents them as JSON-schema minimum/maximum.
ASCII_INT = BeforeValidator(_whole)
ASCII_FLOAT = BeforeValidator(_decimal)
QueryBool = Annotated[bool, BeforeValidator(_yes_no)]


class QueryParams(BaseModel):
    """Unknown parameters are refused by name: a misspelt filter must not silently list
    everything."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    _no_nul = field_validator("*")(refuse_unplain_text)


DEFAULT_PAGE = 50
MAX_PAGE = 200


class PageQuery(QueryParams):
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="items per page"),
                     ASCII_INT] = DEFAULT_PAGE
    cursor: Annotated[str | None, Field(
        max_length=1000, description="`next_cursor` of the previous page; none for the "
                                     "first")] = None

    @field_validator("cursor")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        read_cursor(value)
        return value

    def page(self) -> PageRequest:
        return PageRequest(self.limit, read_cursor(self.cursor))


def _signer(path: str | None = None) -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key or "", salt=f"page:{path or request.path}")


def read_cursor(cursor: str | None) -> Key | None:
    if cursor is None:
        return None
    try:
        key = _signer().loads(cursor)
    except BadData:
        key = None
    if not isinstance(key, list) or not key:
        raise PydanticCustomError("cursor.invalid", "is not a cursor this list gave out")
    return tuple(key)


def next_cursor(page: Page[Any], path: str | None = None) -> str | None:
    """The cursor of the page after `page`, or None when it was the last; for the list at
    `path` when that is not this request's."""
    if page.next_after is None:
        return None
    return str(_signer(path).dumps([v.isoformat() if isinstance(v, datetime) else v
                                for v in page.next_after]))
