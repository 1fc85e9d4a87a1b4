"""Cursor pagination: opaque cursors over keyset positions, limit 20 by default, 100 at most.

A cursor names the list it belongs to, so one list's cursor is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Query

from herald.api.errors import ApiError, ErrorCode
from herald.api.guard import MAX_INT, text_problem

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

Row = TypeVar("Row")


@dataclass(frozen=True, kw_only=True)
class PageParams:
    limit: int
    cursor: str | None


def _page_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Results per page (max 100)")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor from the previous page")
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)


Page = Annotated[PageParams, Depends(_page_params)]


def encode(kind: str, position: Sequence[Any]) -> str:
    raw = orjson.dumps([kind, *position])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(kind: str, cursor: str | None, size: int) -> list[Any] | None:
    """The position a cursor names (None for the first page); ApiError when it is not ours."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise ApiError(ErrorCode.INVALID_CURSOR, field="cursor") from None
    if not isinstance(value, list) or len(value) != size + 1 or value[0] != kind:
        raise ApiError(ErrorCode.INVALID_CURSOR, field="cursor")
    return value[1:]


def time_id(
    kind: str, cursor: str | None, *, uuid_ids: bool = True
) -> tuple[datetime | None, str | None]:
    """A (created_at, id) keyset position; the id must be a UUID unless uuid_ids is off.

    Cursors come back from clients, so a forged one is checked like any other input.
    """
    position = decode(kind, cursor, 2)
    if position is None:
        return None, None
    stamp, ident = position
    return moment(stamp), text_key(ident, uuid_ids=uuid_ids)


def text_key(value: object, *, uuid_ids: bool = False) -> str:
    """A cursor's text part: storable text (and a UUID when uuid_ids)."""
    if not isinstance(value, str) or text_problem(value) is not None:
        raise ApiError(ErrorCode.INVALID_CURSOR, field="cursor")
    if uuid_ids:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ApiError(ErrorCode.INVALID_CURSOR, field="cursor") from None
    return value


def serial(value: object, *, maximum: int = MAX_INT) -> int:
    """A cursor's integer part: from 0 to `maximum` (what the keyed column holds)."""
    if type(value) is not int or not 0 <= value <= maximum:
        raise ApiError(ErrorCode.INVALID_CURSOR, field="cursor")
    return value


def moment(value: object) -> datetime:
    """A cursor's time: an ISO time with a zone that PostgreSQL can take (in UTC range)."""
    if not isinstance(value, str):
        raise ApiError(ErrorCode.INVALID_CURSOR, field="cursor")
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("no zone")
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ApiError(ErrorCode.INVALID_CURSOR, field="cursor") from None


def split(
    rows: Sequence[Row], limit: int, kind: str, position: Callable[[Row], Sequence[Any]]
) -> tuple[list[Row], str | None]:
    """Rows of one page (the query fetched limit + 1) and the cursor of the next, if any."""
    if len(rows) <= limit:
        return list(rows), None
    items = list(rows[:limit])
    return items, encode(kind, position(items[-1]))


def time_id_position(row: Any) -> Sequence[Any]:
    return (row["created_at"].isoformat(), str(row["id"]))
