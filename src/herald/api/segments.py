"""/v1/contacts/segments: dynamic segments whose rules compile to parameterised SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from herald.api import pagination
from herald.api.auth import Account, Pool
from herald.api.contacts import Contact, contact_out
from herald.api.envelope import Envelope, ListEnvelope, ok, page
from herald.api.errors import ApiError, ErrorCode
from herald.api.fields import STRICT, LongText, ResourceName, parse_uuid
from herald.domain.segments import RuleError, validate_rules
from herald.store import segments

router = APIRouter(prefix="/v1/contacts/segments", tags=["segments"])

Rules = Annotated[
    dict[str, Any],
    Field(
        description=(
            "Filter rules: field equality, $eq $ne $in $nin $gt $gte $lt $lte $contains "
            "$exists, combined with $and $or $not; custom data as metadata.<key>"
        ),
        examples=[{"country_code": "US", "tags": {"$contains": "enterprise"}}],
    ),
]


class SegmentIn(BaseModel):
    model_config = STRICT
    name: ResourceName
    description: LongText = ""
    rules: Rules


class SegmentUpdate(BaseModel):
    model_config = STRICT
    name: ResourceName | None = None
    description: LongText | None = None
    rules: Rules | None = None


class Segment(BaseModel):
    id: UUID
    name: str
    description: str
    rules: dict[str, Any]
    contact_count: int
    created_at: datetime
    updated_at: datetime


def _checked(rules: dict[str, Any]) -> dict[str, Any]:
    try:
        validate_rules(rules)
    except RuleError as exc:
        raise ApiError(ErrorCode.INVALID_SEGMENT_RULES, exc.message, field=exc.path) from None
    return rules


async def _counted(pool: Pool, account: str, row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "contact_count": await segments.count_members(pool, account, row["rules"])}


async def _existing(pool: Pool, account: str, segment_id: str) -> dict[str, Any]:
    row = await segments.get(pool, account, parse_uuid(segment_id, ErrorCode.SEGMENT_NOT_FOUND))
    if row is None:
        raise ApiError(ErrorCode.SEGMENT_NOT_FOUND)
    return row


@router.post("", status_code=201, response_model=Envelope[Segment])
async def create_segment(
    request: Request, body: SegmentIn, account: Account, pool: Pool
) -> dict[str, Any]:
    row = await segments.insert(pool, account, body.name, body.description, _checked(body.rules))
    return ok(request, await _counted(pool, account, row))


@router.get("", response_model=ListEnvelope[Segment])
async def list_segments(
    request: Request, account: Account, pool: Pool, paging: pagination.Page
) -> dict[str, Any]:
    rows = await segments.page(
        pool, account, after=pagination.time_id("segments", paging.cursor), limit=paging.limit + 1
    )
    items, cursor = pagination.split(rows, paging.limit, "segments", pagination.time_id_position)
    return page(request, [await _counted(pool, account, r) for r in items], cursor)


@router.get("/{segment_id}", response_model=Envelope[Segment])
async def get_segment(
    request: Request, segment_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    return ok(request, await _counted(pool, account, await _existing(pool, account, segment_id)))


@router.put("/{segment_id}", response_model=Envelope[Segment])
async def update_segment(
    request: Request, segment_id: str, body: SegmentUpdate, account: Account, pool: Pool
) -> dict[str, Any]:
    ident = parse_uuid(segment_id, ErrorCode.SEGMENT_NOT_FOUND)
    rules = None if body.rules is None else _checked(body.rules)
    row = await segments.update(
        pool, account, ident, name=body.name, description=body.description, rules=rules
    )
    if row is None:
        raise ApiError(ErrorCode.SEGMENT_NOT_FOUND)
    return ok(request, await _counted(pool, account, row))


@router.delete("/{segment_id}", status_code=204, response_class=Response)
async def delete_segment(segment_id: str, account: Account, pool: Pool) -> Response:
    ident = parse_uuid(segment_id, ErrorCode.SEGMENT_NOT_FOUND)
    if not await segments.delete(pool, account, ident):
        raise ApiError(ErrorCode.SEGMENT_NOT_FOUND)
    return Response(status_code=204)


@router.get("/{segment_id}/contacts", response_model=ListEnvelope[Contact])
async def segment_contacts(
    request: Request, segment_id: str, account: Account, pool: Pool, paging: pagination.Page
) -> dict[str, Any]:
    row = await _existing(pool, account, segment_id)
    rows = await segments.members(
        pool,
        account,
        row["rules"],
        after=pagination.time_id("segment", paging.cursor),
        limit=paging.limit + 1,
    )
    items, cursor = pagination.split(rows, paging.limit, "segment", pagination.time_id_position)
    return page(request, [contact_out(r) for r in items], cursor)
