"""Input the store cannot keep, refused at the edge with the field that holds it.

PostgreSQL text and jsonb cannot hold U+0000; UTF-8 has no lone surrogates; jsonb goes
through orjson, which takes 64-bit integers only, writes NaN and Infinity as null (a silent
change) and stops at 255 levels. Left alone, such a value fails deep in the store as a 500 or
is stored changed. `storable_input` checks the query, the path and the decoded JSON body of
every request first; `problem` is the walk, also used per row by the bulk import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute

from herald.api.errors import ApiError, ErrorCode

MAX_DEPTH = 64
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1
_JSON_TYPES = ("application/json",)


def text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store this text, or None."""
    if "\x00" in value:
        return "must not contain the NUL character (U+0000)"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must not contain a lone UTF-16 surrogate"
    return None


def problem(value: object, path: str = "", depth: int = 0) -> tuple[str | None, str] | None:
    """(field path or None, reason) of the first value JSON-in-PostgreSQL cannot keep."""
    if isinstance(value, str):
        reason = text_problem(value)
        return None if reason is None else (path or None, reason)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            return path or None, "integers must fit in 64 bits"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or None, "must be a finite number")
    if depth >= MAX_DEPTH:
        return path or None, f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            sub = f"{path}.{name}" if path else name
            reason = text_problem(name)
            if reason is not None:
                return sub, f"a key {reason}"
            found = problem(item, sub, depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = problem(item, f"{path}.{index}" if path else str(index), depth + 1)
            if found is not None:
                return found
    return None


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return True  # FastAPI reads a body without a content type as JSON
    main = content_type.split(";", 1)[0].strip().lower()
    return main in _JSON_TYPES or main.endswith("+json")


async def storable_input(request: Request) -> None:
    """An app-wide dependency: 422 naming the query parameter or body field, 404 for a path
    (no resource can have such an id), 415 for a body that is not JSON."""
    for name, value in request.query_params.multi_items():
        reason = text_problem(value)
        if reason is not None:
            raise ApiError(ErrorCode.VALIDATION_FAILED, reason, field=name)
    for value in request.path_params.values():
        if isinstance(value, str) and text_problem(value) is not None:
            raise ApiError(ErrorCode.NOT_FOUND)
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is None:
        return
    if not await request.body():
        return
    if not _is_json(request):
        # FastAPI would hand a form or text body to the model as bytes: a 422 on `body`.
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            "send the body as application/json",
            field="Content-Type",
        )
    try:
        # FastAPI decoded the body before the dependencies ran; this returns that copy.
        body: Any = await request.json()
    except (ValueError, RecursionError):
        return  # not JSON: the endpoint's own validation answers it
    found = problem(body)
    if found is not None:
        field, reason = found
        raise ApiError(ErrorCode.VALIDATION_FAILED, reason, field=field)
