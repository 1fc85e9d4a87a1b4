"""/v1/contacts/lists: contact lists and their members (seed 001)."""

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
from herald.store import lists

router = APIRouter(prefix="/v1/contacts/lists", tags=["lists"])

MAX_MEMBERS_PER_CALL = 10_000


class ListIn(BaseModel):
    model_config = STRICT
    name: ResourceName
    description: LongText = ""


class ListUpdate(BaseModel):
    model_config = STRICT
    name: ResourceName | None = None
    description: LongText | None = None


class ContactList(BaseModel):
    id: UUID
    name: str
    description: str
    member_count: int
    created_at: datetime
    updated_at: datetime


class MembersIn(BaseModel):
    model_config = STRICT
    contact_ids: Annotated[list[UUID], Field(min_length=1, max_length=MAX_MEMBERS_PER_CALL)]


class MembersAdded(BaseModel):
    added: list[UUID] = Field(description="Contacts that joined the list")
    already_members: list[UUID]
    not_found: list[UUID] = Field(description="Ids that are not your contacts")


class MembersRemoved(BaseModel):
    removed: list[UUID]


class Member(Contact):
    added_at: datetime


async def _existing(pool: Pool, account: str, list_id: str) -> dict[str, Any]:
    row = await lists.get(pool, account, parse_uuid(list_id, ErrorCode.LIST_NOT_FOUND))
    if row is None:
        raise ApiError(ErrorCode.LIST_NOT_FOUND)
    return row


@router.post("", status_code=201, response_model=Envelope[ContactList])
async def create_list(
    request: Request, body: ListIn, account: Account, pool: Pool
) -> dict[str, Any]:
    return ok(request, await lists.insert(pool, account, body.name, body.description))


@router.get("", response_model=ListEnvelope[ContactList])
async def list_lists(
    request: Request, account: Account, pool: Pool, paging: pagination.Page
) -> dict[str, Any]:
    rows = await lists.page(
        pool, account, after=pagination.time_id("lists", paging.cursor), limit=paging.limit + 1
    )
    items, cursor = pagination.split(rows, paging.limit, "lists", pagination.time_id_position)
    return page(request, items, cursor)


@router.get("/{list_id}", response_model=Envelope[ContactList])
async def get_list(request: Request, list_id: str, account: Account, pool: Pool) -> dict[str, Any]:
    return ok(request, await _existing(pool, account, list_id))


@router.put("/{list_id}", response_model=Envelope[ContactList])
async def update_list(
    request: Request, list_id: str, body: ListUpdate, account: Account, pool: Pool
) -> dict[str, Any]:
    ident = parse_uuid(list_id, ErrorCode.LIST_NOT_FOUND)
    if not await lists.update(pool, account, ident, body.name, body.description):
        raise ApiError(ErrorCode.LIST_NOT_FOUND)
    return ok(request, await _existing(pool, account, list_id))


@router.delete("/{list_id}", status_code=204, response_class=Response)
async def delete_list(list_id: str, account: Account, pool: Pool) -> Response:
    if not await lists.delete(pool, account, parse_uuid(list_id, ErrorCode.LIST_NOT_FOUND)):
        raise ApiError(ErrorCode.LIST_NOT_FOUND)
    return Response(status_code=204)


@router.get("/{list_id}/members", response_model=ListEnvelope[Member])
async def list_members(
    request: Request, list_id: str, account: Account, pool: Pool, paging: pagination.Page
) -> dict[str, Any]:
    found = await _existing(pool, account, list_id)
    rows = await lists.members(
        pool,
        found["id"],
        after=pagination.time_id("members", paging.cursor),
        limit=paging.limit + 1,
    )
    items, cursor = pagination.split(
        rows, paging.limit, "members", lambda r: (r["added_at"].isoformat(), str(r["id"]))
    )
    return page(request, [contact_out(r) for r in items], cursor)


@router.post("/{list_id}/members", response_model=Envelope[MembersAdded])
async def add_members(
    request: Request, list_id: str, body: MembersIn, account: Account, pool: Pool
) -> dict[str, Any]:
    ident = parse_uuid(list_id, ErrorCode.LIST_NOT_FOUND)
    wanted = list(dict.fromkeys(body.contact_ids))
    result = await lists.add_members(pool, account, ident, wanted)
    if result is None:
        raise ApiError(ErrorCode.LIST_NOT_FOUND)
    added, present = result
    known = set(added) | set(present)
    missing = [c for c in wanted if c not in known]
    return ok(request, {"added": added, "already_members": present, "not_found": missing})


@router.post("/{list_id}/members/remove", response_model=Envelope[MembersRemoved])
async def remove_members(
    request: Request, list_id: str, body: MembersIn, account: Account, pool: Pool
) -> dict[str, Any]:
    found = await _existing(pool, account, list_id)
    removed = await lists.remove_members(pool, account, found["id"], body.contact_ids)
    return ok(request, {"removed": removed})


@router.delete("/{list_id}/members/{contact_id}", status_code=204, response_class=Response)
async def remove_member(list_id: str, contact_id: str, account: Account, pool: Pool) -> Response:
    found = await _existing(pool, account, list_id)
    ident = parse_uuid(contact_id, ErrorCode.CONTACT_NOT_FOUND)
    if not await lists.remove_members(pool, account, found["id"], [ident]):
        raise ApiError(ErrorCode.CONTACT_NOT_FOUND, "The contact is not a member of this list")
    return Response(status_code=204)
