"""/v1/contacts: CRUD with search and cursor pagination, tags, per-channel preferences,
opt-outs and the activity timeline (seed 001)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, StringConstraints, model_validator

from herald.api import pagination
from herald.api.auth import Account, Pool
from herald.api.envelope import MAX_TOTAL, Envelope, ListEnvelope, ok, page
from herald.api.errors import ApiError, ErrorCode
from herald.api.fields import (
    STRICT,
    CountryCode,
    Email,
    Metadata,
    Name,
    Phone,
    ShortText,
    Tag,
    Tags,
    parse_uuid,
    search_query,
)
from herald.store import contacts_api
from herald.store.contacts_api import ContactFields

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])

# Viber names a bot's users by an opaque id (e.g. "01234567890A="), never a phone number.
ViberUserId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^\s]+$"),
    Field(
        description="The contact's Viber user id, as Viber's callbacks name it; herald sends "
        "Viber messages to it. Learned when the user opens the bot through the account's deep "
        "link with context=<contact id>, removed when the user unsubscribes; null clears it",
    ),
]

Search = Annotated[
    str | None, Query(max_length=200, description="Full-text search over name, phone and email")
]


class ContactIn(BaseModel):
    model_config = STRICT

    phone: Phone | None = Field(None, description="E.164, e.g. +14155552671")
    email: Email | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    country_code: CountryCode | None = Field(None, description="ISO 3166-1 alpha-2")
    lifecycle_stage: ShortText | None = Field(None, description="lead, customer, churned, ...")
    tags: Tags = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict, description="Custom key-value data")
    viber_user_id: ViberUserId | None = None

    @model_validator(mode="after")
    def _reachable(self) -> ContactIn:
        if self.phone is None and self.email is None:
            raise ApiError(ErrorCode.CONTACT_NEEDS_ADDRESS, field="phone")
        return self


class ContactUpdate(BaseModel):
    """Only the fields present change; null clears a field; metadata merges."""

    model_config = STRICT

    phone: Phone | None = None
    email: Email | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    country_code: CountryCode | None = None
    lifecycle_stage: ShortText | None = None
    tags: Tags | None = None
    metadata: Metadata | None = Field(
        None, description="Merged into the existing metadata; a null value removes its key"
    )
    viber_user_id: ViberUserId | None = None


class Contact(BaseModel):
    id: UUID
    phone: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    country_code: str | None
    lifecycle_stage: str | None
    tags: list[str]
    metadata: dict[str, Any]
    viber_user_id: str | None = None
    created_at: datetime
    updated_at: datetime


class TagsIn(BaseModel):
    model_config = STRICT
    tags: Annotated[list[Tag], Field(min_length=1, max_length=100)]


class ContactTags(BaseModel):
    id: UUID
    tags: list[str]


# Consent is kept for every channel Orbit records, voice too (contacts moved over keep their
# choice) though herald sends no voice; sending reads only its own channels' choices.
class ConsentChannel(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    RCS = "rcs"
    VIBER = "viber"
    EMAIL = "email"
    VOICE = "voice"


class PreferencesIn(BaseModel):
    model_config = STRICT
    preferences: Annotated[dict[ConsentChannel, bool], Field(min_length=1)] = Field(
        description="Channel to true (opted in) or false (opted out): sms, whatsapp, rcs, "
        "viber, email, voice"
    )


class Preferences(BaseModel):
    id: UUID
    preferences: dict[str, bool]
    updated_at: datetime | None


class OptOut(Contact):
    opted_out: list[str]


class Activity(BaseModel):
    type: str = Field(description="message.sent, message.delivered, message.read, ...")
    channel: str | None
    campaign_id: str
    message_id: str
    timestamp: datetime
    error_code: str | None = None
    error_description: str | None = None


def contact_out(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["metadata"] = out.pop("attributes", None) or {}
    return out


def _fields(body: ContactIn) -> ContactFields:
    return ContactFields(
        phone=body.phone,
        email=body.email,
        first_name=body.first_name,
        last_name=body.last_name,
        country_code=body.country_code,
        lifecycle_stage=body.lifecycle_stage,
        tags=list(dict.fromkeys(body.tags)),
        metadata=body.metadata,
        viber_user_id=body.viber_user_id,
    )


@router.post("", status_code=201, response_model=Envelope[Contact])
async def create_contact(
    request: Request, body: ContactIn, account: Account, pool: Pool
) -> dict[str, Any]:
    row = await contacts_api.insert(pool, account, _fields(body))
    return ok(request, contact_out(row))


@router.get("", response_model=ListEnvelope[Contact])
async def list_contacts(
    request: Request,
    account: Account,
    pool: Pool,
    paging: pagination.Page,
    search: Search = None,
    lifecycle_stage: Annotated[str | None, Query(max_length=200)] = None,
    tag: Annotated[
        str | None, Query(max_length=64, description="Only contacts with this tag")
    ] = None,
) -> dict[str, Any]:
    if search is not None and search_query(search) is None:
        return page(request, [], None, total=0)  # nothing searchable matches nothing
    rows = await contacts_api.page(
        pool,
        account,
        lifecycle_stage=lifecycle_stage,
        tag=tag,
        tsquery=search_query(search),
        after=pagination.time_id("contacts", paging.cursor),
        limit=paging.limit + 1,
    )
    total = await contacts_api.count(
        pool,
        account,
        lifecycle_stage=lifecycle_stage,
        tag=tag,
        tsquery=search_query(search),
        up_to=MAX_TOTAL + 1,
    )
    items, cursor = pagination.split(rows, paging.limit, "contacts", pagination.time_id_position)
    return page(request, [contact_out(r) for r in items], cursor, total=total)


@router.get("/optouts", response_model=ListEnvelope[OptOut])
async def list_optouts(
    request: Request,
    account: Account,
    pool: Pool,
    paging: pagination.Page,
    channel: ConsentChannel | None = None,
    search: Search = None,
) -> dict[str, Any]:
    if search is not None and search_query(search) is None:
        return page(request, [], None)
    rows = await contacts_api.optouts(
        pool,
        account,
        channel=channel.value if channel else None,
        tsquery=search_query(search),
        after=pagination.time_id("optouts", paging.cursor),
        limit=paging.limit + 1,
    )
    items, cursor = pagination.split(rows, paging.limit, "optouts", pagination.time_id_position)
    return page(request, [contact_out(r) for r in items], cursor)


async def _existing(pool: Pool, account: str, contact_id: str) -> dict[str, Any]:
    row = await contacts_api.get(pool, account, parse_uuid(contact_id, ErrorCode.CONTACT_NOT_FOUND))
    if row is None:
        raise ApiError(ErrorCode.CONTACT_NOT_FOUND)
    return row


@router.get("/{contact_id}", response_model=Envelope[Contact])
async def get_contact(
    request: Request, contact_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    return ok(request, contact_out(await _existing(pool, account, contact_id)))


@router.put("/{contact_id}", response_model=Envelope[Contact])
async def update_contact(
    request: Request, contact_id: str, body: ContactUpdate, account: Account, pool: Pool
) -> dict[str, Any]:
    ident = parse_uuid(contact_id, ErrorCode.CONTACT_NOT_FOUND)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if "tags" in changes and changes["tags"] is not None:
        changes["tags"] = list(dict.fromkeys(changes["tags"]))
    if changes.get("metadata") is None:
        changes.pop("metadata", None)
    cleared = {n for n in ("phone", "email") if n in changes and changes[n] is None}
    if cleared:
        current = await _existing(pool, account, contact_id)
        after = {n: changes.get(n, current[n]) for n in ("phone", "email")}
        if after["phone"] is None and after["email"] is None:
            raise ApiError(ErrorCode.CONTACT_NEEDS_ADDRESS, field=sorted(cleared)[0])
    row = await contacts_api.update(pool, account, ident, changes)
    if row is None:
        raise ApiError(ErrorCode.CONTACT_NOT_FOUND)
    return ok(request, contact_out(row))


@router.delete("/{contact_id}", status_code=204, response_class=Response)
async def delete_contact(contact_id: str, account: Account, pool: Pool) -> Response:
    ident = parse_uuid(contact_id, ErrorCode.CONTACT_NOT_FOUND)
    if not await contacts_api.delete(pool, account, ident):
        raise ApiError(ErrorCode.CONTACT_NOT_FOUND)
    return Response(status_code=204)


@router.post("/{contact_id}/tags", response_model=Envelope[ContactTags])
async def add_tags(
    request: Request, contact_id: str, body: TagsIn, account: Account, pool: Pool
) -> dict[str, Any]:
    ident = parse_uuid(contact_id, ErrorCode.CONTACT_NOT_FOUND)
    row = await contacts_api.add_tags(pool, account, ident, body.tags)
    if row is None:
        raise ApiError(ErrorCode.CONTACT_NOT_FOUND)
    return ok(request, row)


@router.delete("/{contact_id}/tags/{tag}", response_model=Envelope[ContactTags])
async def remove_tag(
    request: Request, contact_id: str, tag: str, account: Account, pool: Pool
) -> dict[str, Any]:
    ident = parse_uuid(contact_id, ErrorCode.CONTACT_NOT_FOUND)
    row = await contacts_api.remove_tag(pool, account, ident, tag)
    if row is None:
        raise ApiError(ErrorCode.CONTACT_NOT_FOUND)
    return ok(request, row)


def _preferences(contact_id: UUID, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": contact_id,
        "preferences": {r["channel"]: r["opted_in"] for r in rows},
        "updated_at": max((r["updated_at"] for r in rows), default=None),
    }


@router.get("/{contact_id}/preferences", response_model=Envelope[Preferences])
async def get_preferences(
    request: Request, contact_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    row = await _existing(pool, account, contact_id)
    rows = await contacts_api.preferences(pool, account, row["id"])
    return ok(request, _preferences(row["id"], rows))


@router.put("/{contact_id}/preferences", response_model=Envelope[Preferences])
async def set_preferences(
    request: Request, contact_id: str, body: PreferencesIn, account: Account, pool: Pool
) -> dict[str, Any]:
    ident = parse_uuid(contact_id, ErrorCode.CONTACT_NOT_FOUND)
    choices = {channel.value: value for channel, value in body.preferences.items()}
    rows = await contacts_api.set_preferences(pool, account, ident, choices)
    if rows is None:
        raise ApiError(ErrorCode.CONTACT_NOT_FOUND)
    return ok(request, _preferences(ident, rows))


@router.get("/{contact_id}/activity", response_model=ListEnvelope[Activity])
async def activity(
    request: Request,
    contact_id: str,
    account: Account,
    pool: Pool,
    paging: pagination.Page,
) -> dict[str, Any]:
    row = await _existing(pool, account, contact_id)
    position = pagination.decode("activity", paging.cursor, 2)
    after: tuple[Any, Any] = (None, None)
    if position is not None:
        after = (pagination.moment(position[0]), pagination.text_key(position[1]))
    rows = await contacts_api.activity(
        pool, account, row["id"], after=after, limit=paging.limit + 1
    )
    items, cursor = pagination.split(
        rows, paging.limit, "activity", lambda r: (r["at"].isoformat(), r["position"])
    )
    events = [
        {
            "type": r["type"],
            "channel": r["channel"],
            "campaign_id": r["campaign_id"],
            "message_id": r["message_id"],
            "timestamp": r["at"],
            "error_code": r["error_code"],
            "error_description": r["error_description"],
        }
        for r in items
    ]
    return page(request, events, cursor)
