"""The response envelope: {"data": ..., "meta": {"request_id", "timestamp"}}; lists add
meta.next_cursor and meta.has_more."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel
from starlette.responses import Response

T = TypeVar("T")

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class Meta(BaseModel):
    request_id: str
    timestamp: datetime


class ListMeta(Meta):
    next_cursor: str | None = None
    has_more: bool = False


class Envelope(BaseModel, Generic[T]):
    data: T
    meta: Meta


class ListEnvelope(BaseModel, Generic[T]):
    data: list[T]
    meta: ListMeta


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None


class ErrorEnvelope(BaseModel):
    error: ErrorDetail
    meta: Meta


class JsonResponse(Response):
    """JSON through orjson (datetimes, UUIDs and non-string keys included)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


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


def page(request: Request, items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    info = meta(request)
    info["next_cursor"] = next_cursor
    info["has_more"] = next_cursor is not None
    return {"data": items, "meta": info}
