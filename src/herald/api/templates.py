"""/v1/templates: message templates per channel; WhatsApp templates carry components with
numbered parameters and an approval status (seed 004)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, StringConstraints

from herald.api import pagination
from herald.api.auth import Account, Pool
from herald.api.envelope import Envelope, ListEnvelope, ok, page
from herald.api.errors import ApiError, ErrorCode
from herald.api.fields import STRICT, ResourceName, parse_uuid
from herald.domain.channels import Channel
from herald.domain.templates import placeholders
from herald.store import templates

router = APIRouter(prefix="/v1/templates", tags=["templates"])

Approval = Literal["approved", "pending", "rejected"]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")]
Body = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
COMPONENT_TYPES = frozenset({"header", "body", "footer", "buttons"})
_NUMBERED = re.compile(r"^\d{1,2}$")
MAX_COMPONENTS = 10


class TemplateIn(BaseModel):
    model_config = STRICT
    name: ResourceName
    channel: Channel
    language: Language = "en"
    category: Literal["marketing", "utility", "authentication"] | None = None
    sender: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        None, description="Default sender: SMS from, Viber sender, email from, RCS agent id"
    )
    subject: Annotated[str, StringConstraints(max_length=500)] | None = None
    body: Body | None = Field(None, description="Text with {{placeholders}} (not WhatsApp)")
    components: Annotated[list[dict[str, Any]], Field(max_length=MAX_COMPONENTS)] | None = Field(
        None, description='WhatsApp components, e.g. [{"type": "body", "text": "Hi {{1}}"}]'
    )


class TemplateUpdate(BaseModel):
    model_config = STRICT
    name: ResourceName | None = None
    language: Language | None = None
    category: Literal["marketing", "utility", "authentication"] | None = None
    sender: Annotated[str, StringConstraints(max_length=200)] | None = None
    subject: Annotated[str, StringConstraints(max_length=500)] | None = None
    body: Body | None = None
    components: Annotated[list[dict[str, Any]], Field(max_length=MAX_COMPONENTS)] | None = None


class ApprovalIn(BaseModel):
    model_config = STRICT
    status: Approval
    rejection_reason: Annotated[str, StringConstraints(max_length=1000)] | None = None


class Template(BaseModel):
    id: UUID
    name: str
    channel: Channel
    language: str
    category: str | None
    sender: str | None
    subject: str | None
    body: str | None
    components: list[dict[str, Any]] | None
    placeholders: list[str]
    approval_status: Approval
    rejection_reason: str | None
    created_at: datetime
    updated_at: datetime


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(ErrorCode.INVALID_TEMPLATE, message, field=field)


def check_template(t: dict[str, Any]) -> list[str]:
    """The template's placeholders, or ApiError naming the field that breaks a channel rule."""
    channel = Channel(t["channel"])
    if channel is Channel.WHATSAPP:
        if t.get("body") is not None:
            raise _invalid("body", "WhatsApp templates hold their text in components")
        return whatsapp_parameters(t.get("components"))
    if t.get("components") is not None:
        raise _invalid("components", "only WhatsApp templates have components")
    if not t.get("body"):
        raise _invalid("body", f"{channel.value} templates need a body")
    if channel is Channel.EMAIL and not t.get("subject"):
        raise _invalid("subject", "email templates need a subject")
    if channel is not Channel.EMAIL and t.get("subject") is not None:
        raise _invalid("subject", "only email templates have a subject")
    return list(placeholders(t["body"]) + placeholders(t.get("subject") or ""))


def whatsapp_parameters(components: object) -> list[str]:
    """Numbered parameters of WhatsApp components, which must run 1, 2, ... in each one."""
    if not isinstance(components, list) or not components:
        raise _invalid("components", "WhatsApp templates need components")
    found: list[str] = []
    bodies = 0
    for i, component in enumerate(components):
        path = f"components.{i}"
        kind = str(component.get("type", "")).lower()
        if kind not in COMPONENT_TYPES:
            raise _invalid(f"{path}.type", "one of header, body, footer, buttons")
        bodies += kind == "body"
        text = component.get("text")
        if kind == "body" and not isinstance(text, str):
            raise _invalid(f"{path}.text", "the body component needs text")
        if text is None:
            continue
        if not isinstance(text, str):
            raise _invalid(f"{path}.text", "must be a string")
        names = placeholders(text)
        if any(not _NUMBERED.match(n) for n in names):
            raise _invalid(f"{path}.text", "WhatsApp parameters are numbered: {{1}}, {{2}}, ...")
        if sorted(int(n) for n in names) != list(range(1, len(names) + 1)):
            raise _invalid(f"{path}.text", "parameters must be numbered from {{1}} without gaps")
        found.extend(n for n in names if n not in found)
    if bodies != 1:
        raise _invalid("components", "exactly one body component is required")
    return found


def send_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The components a WhatsApp send carries: each parameter as its own {{n}} placeholder,
    filled per recipient through variable_mappings."""
    sent = []
    for component in components:
        text = component.get("text")
        names = placeholders(text) if isinstance(text, str) else ()
        if names:
            sent.append(
                {
                    "type": str(component["type"]).lower(),
                    "parameters": [
                        {"type": "text", "text": "{{" + n + "}}"} for n in sorted(names, key=int)
                    ],
                }
            )
    return sent


def template_out(row: dict[str, Any]) -> dict[str, Any]:
    if row["channel"] == Channel.WHATSAPP.value:
        names = whatsapp_parameters(row["components"])
    else:
        names = list(placeholders(row["body"] or "") + placeholders(row["subject"] or ""))
    return {**row, "placeholders": list(dict.fromkeys(names))}


def _approval_for(channel: str) -> str:
    return "pending" if channel == Channel.WHATSAPP.value else "approved"


async def _existing(pool: Pool, account: str, template_id: str) -> dict[str, Any]:
    ident = parse_uuid(template_id, ErrorCode.TEMPLATE_NOT_FOUND)
    row = await templates.get(pool, account, ident)
    if row is None:
        raise ApiError(ErrorCode.TEMPLATE_NOT_FOUND)
    return row


@router.post("", status_code=201, response_model=Envelope[Template])
async def create_template(
    request: Request, body: TemplateIn, account: Account, pool: Pool
) -> dict[str, Any]:
    values = body.model_dump(mode="json")
    check_template(values)
    row = await templates.insert(pool, account, values, _approval_for(values["channel"]))
    return ok(request, template_out(row))


@router.get("", response_model=ListEnvelope[Template])
async def list_templates(
    request: Request,
    account: Account,
    pool: Pool,
    paging: pagination.Page,
    channel: Channel | None = None,
    approval_status: Approval | None = None,
) -> dict[str, Any]:
    rows = await templates.page(
        pool,
        account,
        channel=channel.value if channel else None,
        approval_status=approval_status,
        after=pagination.time_id("templates", paging.cursor),
        limit=paging.limit + 1,
    )
    items, cursor = pagination.split(rows, paging.limit, "templates", pagination.time_id_position)
    return page(request, [template_out(r) for r in items], cursor)


@router.get("/{template_id}", response_model=Envelope[Template])
async def get_template(
    request: Request, template_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    return ok(request, template_out(await _existing(pool, account, template_id)))


@router.put("/{template_id}", response_model=Envelope[Template])
async def update_template(
    request: Request, template_id: str, body: TemplateUpdate, account: Account, pool: Pool
) -> dict[str, Any]:
    current = await _existing(pool, account, template_id)
    changes = body.model_dump(mode="json", include=body.model_fields_set)
    merged = {**current, **changes}
    check_template(merged)
    approval = current["approval_status"]
    content = ("sender", "subject", "body", "components", "language", "category")
    if merged["channel"] == Channel.WHATSAPP.value and any(k in changes for k in content):
        approval = "pending"  # changed content needs approving again
    row = await templates.replace(pool, account, current["id"], merged, approval)
    if row is None:
        raise ApiError(ErrorCode.TEMPLATE_NOT_FOUND)
    return ok(request, template_out(row))


@router.put("/{template_id}/approval", response_model=Envelope[Template])
async def set_approval(
    request: Request, template_id: str, body: ApprovalIn, account: Account, pool: Pool
) -> dict[str, Any]:
    """Records the provider's decision on a WhatsApp template (its template-status webhook
    or an operator relays it here)."""
    current = await _existing(pool, account, template_id)
    if current["channel"] != Channel.WHATSAPP.value:
        raise ApiError(ErrorCode.TEMPLATE_NEEDS_NO_APPROVAL)
    reason = body.rejection_reason if body.status == "rejected" else None
    row = await templates.set_approval(pool, account, current["id"], body.status, reason)
    if row is None:
        raise ApiError(ErrorCode.TEMPLATE_NOT_FOUND)
    return ok(request, template_out(row))


@router.delete("/{template_id}", status_code=204, response_class=Response)
async def delete_template(template_id: str, account: Account, pool: Pool) -> Response:
    ident = parse_uuid(template_id, ErrorCode.TEMPLATE_NOT_FOUND)
    if not await templates.delete(pool, account, ident):
        raise ApiError(ErrorCode.TEMPLATE_NOT_FOUND)
    return Response(status_code=204)
