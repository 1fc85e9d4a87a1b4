"""The response envelope: {"data": ..., "meta": {"request_id", "timestamp"}}; lists add
meta.next_cursor and meta.has_more, and the lists that count meta.total."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, Field
from starlette.responses import Response

T = TypeVar("T")

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Meta(BaseModel):
    request_id: str
    timestamp: datetime


class ListMeta(Meta):
    next_cursor: str | None = None
    has_more: bool = False
    total: int | None = Field(
        None,
        description="Items the list holds with its filters, counted up to 10,000 (see "
        "total_exact); null on lists that do not count",
    )
    total_exact: bool | None = Field(
        None, description="false when total stopped at 10,000 and the list holds more"
    )


class Envelope(BaseModel, Generic[T]):
    data: T
    meta: Meta


class ListEnvelope(BaseModel, Generic[T]):
    data: list[T]
    meta: ListMeta


class ErrorDetail(BaseModel):
    code: str
    number: int = Field(description="The code's stable number (docs/api.md, error catalogue)")
    message: str
    field: str | None = Field(
        description="The input refused: a dotted body path, a query or path parameter, a "
        "header; null only for 500 and 503"
    )


class ErrorEnvelope(BaseModel):
    error: ErrorDetail
    meta: Meta


class JsonResponse(Response):
    """JSON through orjson (datetimes, UUIDs and non-string keys included). UTC times end in
    `Z`, as the success responses pydantic writes do."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is sane, otherwise a new one."""
    if header and _CLIENT_REQUEST_ID.match(header):
        return header
    return f"req_{uuid.uuid4().hex}"


def meta(request: Request) -> dict[str, Any]:
    state = request.scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        rid = state["request_id"] = request_id_from(request.headers.get("x-request-id"))
    return {"request_id": rid, "timestamp": datetime.now(UTC)}


def ok(request: Request, data: Any) -> dict[str, Any]:
    return {"data": data, "meta": meta(request)}


# Counting stops here: a total costs at most this many index entries.
MAX_TOTAL = 10_000


def page(
    request: Request, items: list[Any], next_cursor: str | None, *, total: int | None = None
) -> dict[str, Any]:
    """A list page; `total` from a count bounded at MAX_TOTAL + 1 (more means capped)."""
    info = meta(request)
    info["next_cursor"] = next_cursor
    info["has_more"] = next_cursor is not None
    if total is not None:
        info["total"] = min(total, MAX_TOTAL)
        info["total_exact"] = total <= MAX_TOTAL
    return {"data": items, "meta": info}
