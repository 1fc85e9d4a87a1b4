"""Herald's API error catalogue and the handlers that put every error in one envelope.

Each code is stable and carries a stable number: clients switch on `error.code` or
`error.number`; numbers group the codes like seed 003's catalogue and reuse its numbers where
the meaning is the same (docs/api.md lists them all). Messages are for people and may change.
Every refusal names its `field`: the input's own path, or (`default_field`) the header, body
or path parameter the refusal is about; only 500 and 503 leave it null.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from herald.api.envelope import JsonResponse, meta
from herald.store.db import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Spec:
    number: int
    status: int
    message: str


class ErrorCode(Enum):
    # 1000s: requests in general
    MALFORMED_REQUEST = _Spec(1000, 400, "The request body is not valid JSON")
    VALIDATION_FAILED = _Spec(1001, 422, "A field has a value herald cannot use")
    UNKNOWN_PARAMETER = _Spec(1002, 422, "The request names a parameter this endpoint lacks")
    INVALID_CURSOR = _Spec(1003, 400, "The cursor is not one herald issued for this list")
    PAYLOAD_TOO_LARGE = _Spec(1004, 413, "The request body is too large")
    RATE_LIMITED = _Spec(1005, 429, "Too many requests for this API key; see Retry-After")
    IDEMPOTENCY_KEY_REUSED = _Spec(
        1006, 422, "This Idempotency-Key was used for a different request"
    )
    IDEMPOTENCY_KEY_IN_FLIGHT = _Spec(
        1007, 409, "A request with this Idempotency-Key is still running; retry shortly"
    )
    UNAUTHORIZED = _Spec(1010, 401, "A valid X-API-Key header is required")
    ADMIN_REQUIRED = _Spec(1011, 403, "This needs an admin API key (herald keys create makes one)")
    NOT_FOUND = _Spec(1020, 404, "No such resource")
    METHOD_NOT_ALLOWED = _Spec(1021, 405, "The resource does not accept this method")
    UNSUPPORTED_MEDIA_TYPE = _Spec(1022, 415, "The body's content type is not accepted here")
    INTERNAL = _Spec(1090, 500, "Herald failed to answer; the request may be retried")
    UNAVAILABLE = _Spec(1091, 503, "The database is unavailable; retry shortly")
    # 1100s: contacts, lists, segments, templates
    CONTACT_NOT_FOUND = _Spec(1101, 404, "Contact not found")
    INVALID_PHONE = _Spec(1102, 422, "Phone numbers must be E.164 (+ and country code)")
    INVALID_EMAIL = _Spec(1103, 422, "Not a valid email address")
    CONTACT_NEEDS_ADDRESS = _Spec(1104, 422, "A contact needs a phone or an email")
    LIST_NOT_FOUND = _Spec(1111, 404, "List not found")
    SEGMENT_NOT_FOUND = _Spec(1121, 404, "Segment not found")
    INVALID_SEGMENT_RULES = _Spec(1122, 422, "The segment rules cannot be compiled")
    TEMPLATE_NOT_FOUND = _Spec(1131, 404, "Template not found")
    INVALID_TEMPLATE = _Spec(1132, 422, "The template is not valid for its channel")
    TEMPLATE_NEEDS_NO_APPROVAL = _Spec(1133, 409, "Only WhatsApp templates are approved")
    IMPORT_FAILED = _Spec(1141, 400, "The import stream cannot be read")
    # 1500s-1600s: campaigns (numbers follow seed 003 where the meaning matches)
    SCHEDULE_IN_PAST = _Spec(1522, 422, "The schedule date must be after the current time")
    CAMPAIGN_NOT_FOUND = _Spec(1601, 404, "Campaign not found")
    SENDER_REQUIRED = _Spec(1603, 422, "The campaign's content needs a sender")
    SENDER_INVALID = _Spec(1604, 422, "The sender is not valid for its channel")
    AUDIENCE_REQUIRED = _Spec(1605, 422, "The campaign names no audience")
    AUDIENCE_INVALID = _Spec(1606, 422, "The campaign's audience names something unknown")
    CONTENT_REQUIRED = _Spec(1607, 422, "The campaign lacks content for one of its channels")
    TEMPLATE_INVALID = _Spec(1608, 422, "The campaign's template cannot be used")
    SCHEDULE_INVALID = _Spec(1609, 422, "The schedule is not a date and time with a zone")
    CAMPAIGN_STATE_CONFLICT = _Spec(1611, 409, "The campaign's status does not allow this")
    CAMPAIGN_NOT_DELETABLE = _Spec(1612, 409, "Only draft and scheduled campaigns can be deleted")
    AUDIENCE_CHANNEL_MISMATCH = _Spec(
        1613, 422, "The campaign's audience cannot be reached on any of its channels"
    )
    TEMPLATE_CHANNEL_MISMATCH = _Spec(1616, 422, "The template belongs to another channel")
    AUDIENCE_NOT_REACHABLE = _Spec(
        1617, 422, "No contact of the audience has an address on the campaign's channels"
    )
    TEMPLATE_NOT_APPROVED = _Spec(1618, 422, "The WhatsApp template is not approved")
    CAMPAIGN_NOT_EDITABLE = _Spec(1619, 409, "Only draft and scheduled campaigns can be changed")
    NOTHING_TO_RETRY = _Spec(1620, 409, "The campaign has no failed recipients to retry")
    AB_TEST_NOT_FOUND = _Spec(1621, 404, "The campaign has no A/B test")
    API_KEY_LIMIT = _Spec(1623, 409, "The account holds as many live API keys as it may")
    CHANNEL_DISABLED = _Spec(1622, 422, "No channel of the campaign is enabled in this deployment")
    # Seed 002's confirm workflow, for accounts that ask for it (accounts.confirm_requires_goal).
    CAMPAIGN_NOT_READY = _Spec(1624, 422, "The campaign is not marked ready_to_send")
    GOAL_REQUIRED = _Spec(1625, 422, "The campaign's cost has not been calculated (calculate-goal)")
    GOAL_OUTDATED = _Spec(
        1626, 409, "The campaign's recipients or cost changed since calculate-goal"
    )
    PROVIDER_ACCOUNT_INVALID = _Spec(
        1627, 422, "The account owns no such provider account for that channel"
    )
    RECIPIENTS_ARCHIVED = _Spec(
        1628,
        410,
        "The campaign's recipient rows were archived after the retention; its counters remain",
    )

    @property
    def code(self) -> str:
        return self.name.lower()

    @property
    def number(self) -> int:
        return self.value.number

    @property
    def status(self) -> int:
        return self.value.status


class ApiError(Exception):
    """An error with a catalogue code; `field` names the offending input, if any."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or code.value.message)
        self.code = code
        self.message = message or code.value.message
        self.field = field
        self.headers = dict(headers or {})


# The field a refusal is about when the code itself says which: a header, the body as a whole.
_CODE_FIELDS = {
    ErrorCode.MALFORMED_REQUEST: "body",
    ErrorCode.PAYLOAD_TOO_LARGE: "body",
    ErrorCode.UNAUTHORIZED: "X-API-Key",
    ErrorCode.RATE_LIMITED: "X-API-Key",
    ErrorCode.IDEMPOTENCY_KEY_REUSED: "Idempotency-Key",
    ErrorCode.IDEMPOTENCY_KEY_IN_FLIGHT: "Idempotency-Key",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "Content-Type",
    ErrorCode.METHOD_NOT_ALLOWED: "method",
}
# Not refusals of the request's input: nothing to name.
_NO_FIELD = frozenset({ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE})


def default_field(request: Request, code: ErrorCode) -> str | None:
    """What a refusal raised without a field is about: the code's header or body, the key
    for 401 and 403, for a 404 the path parameter naming the resource (the last one) or the
    path itself, else the body."""
    if code in _NO_FIELD:
        return None
    known = _CODE_FIELDS.get(code)
    if known is not None:
        return known
    if code.status in (401, 403):
        return "X-API-Key"  # who the key is, or what it may do
    params = list(request.scope.get("path_params") or {})
    if code.status == 404 and params:
        return str(params[-1])
    return "path" if code.status == 404 else "body"


def error_body(request: Request, code: ErrorCode, message: str, field: str | None) -> Any:
    return {
        "error": {
            "code": code.code,
            "number": code.number,
            "message": message,
            "field": field or default_field(request, code),
        },
        "meta": meta(request),
    }


def error_response(request: Request, code: ErrorCode, message: str, field: str | None) -> Any:
    return JsonResponse(error_body(request, code, message, field), status_code=code.status)


def field_of(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """A dotted field name from a pydantic location, without where it came from."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        # The body itself (missing, or not an object) is named `body`.
        parts = parts[1:] or parts[:1]
    return ".".join(parts) or None


# Fields whose every problem has its own code (seed 003 numbers a bad schedule).
_FIELD_CODES = {"scheduled_at": ErrorCode.SCHEDULE_INVALID}


def validation_error(errors: list[dict[str, Any]] | Any) -> tuple[ErrorCode, str, str | None]:
    """The first problem of a pydantic error list as (code, message, field)."""
    first = errors[0] if errors else {"type": "value_error", "loc": (), "msg": "invalid"}
    kind = str(first.get("type", ""))
    loc = tuple(first.get("loc", ()))
    if kind == "json_invalid":
        return ErrorCode.MALFORMED_REQUEST, ErrorCode.MALFORMED_REQUEST.value.message, None
    if kind == "extra_forbidden":
        return ErrorCode.VALIDATION_FAILED, "not a field of this resource", field_of(loc)
    ctx = first.get("ctx") or {}
    inner = ctx.get("error") if isinstance(ctx, dict) else None
    if isinstance(inner, ApiError):
        return inner.code, inner.message, inner.field or field_of(loc)
    message = str(first.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    custom = ErrorCode.__members__.get(kind.upper())
    if custom is not None and custom.status == 422:
        return custom, message, field_of(loc)
    field = field_of(loc)
    return _FIELD_CODES.get(field or "", ErrorCode.VALIDATION_FAILED), message, field


def model_error(errors: list[Any]) -> tuple[ErrorCode, str, str | None]:
    """validation_error for a model validated outside a request: its locations start at a
    field (one may be called `body`), not at where in the request it came from."""
    return validation_error([{**e, "loc": ("body", *e.get("loc", ()))} for e in errors])


_HTTP_CODES = {
    # FastAPI answers a body it cannot decode at all (e.g. nested past the parser's limit)
    # with a bare 400.
    400: ErrorCode.MALFORMED_REQUEST,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    401: ErrorCode.UNAUTHORIZED,
    429: ErrorCode.RATE_LIMITED,
}


def install(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, ApiError)
        response = error_response(request, exc.code, exc.message, exc.field)
        response.headers.update(exc.headers)
        return response

    async def on_validation(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, RequestValidationError)
        code, message, field = validation_error(list(exc.errors()))
        return error_response(request, code, message, field)

    async def on_http(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, ErrorCode.INTERNAL)
        return error_response(request, code, code.value.message, None)

    async def on_store(request: Request, exc: Exception) -> Any:
        retryable = isinstance(exc, StoreError) and exc.retryable
        retryable = retryable or isinstance(exc, OSError | asyncpg.InterfaceError)
        log.warning("request failed in the store: %s", exc, extra={"event": "api_store_error"})
        code = ErrorCode.UNAVAILABLE if retryable else ErrorCode.INTERNAL
        return error_response(request, code, code.value.message, None)

    async def on_other(request: Request, exc: Exception) -> Any:
        log.exception("unhandled API error", extra={"event": "api_unhandled"})
        return error_response(request, ErrorCode.INTERNAL, ErrorCode.INTERNAL.value.message, None)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(StoreError, on_store)
    app.add_exception_handler(asyncpg.PostgresError, on_store)
    app.add_exception_handler(asyncpg.InterfaceError, on_store)
    app.add_exception_handler(OSError, on_store)
    app.add_exception_handler(Exception, on_other)
