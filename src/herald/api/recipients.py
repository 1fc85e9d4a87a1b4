"""A campaign's audience in numbers: calculate-goal (recipients and cost before sending),
the stored price, and the per-recipient delivery list after sending (seeds 002 and 004)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from herald.api import pagination
from herald.api.auth import Account, Pool
from herald.api.campaign_spec import parse_spec
from herald.api.campaigns import (
    EDITABLE,
    GoalOut,
    check_audience,
    config_of,
    existing,
    templates_of,
)
from herald.api.envelope import MAX_TOTAL, Envelope, ListEnvelope, ok, page
from herald.api.errors import ApiError, ErrorCode
from herald.api.goal import estimate
from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus
from herald.domain.templates import recipient_variables
from herald.store import drafts, recipient_tables, recipients

RATE_DECIMALS = 4

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


class ChannelGoal(BaseModel):
    channel: Channel
    recipients: int = Field(description="Recipients whose first sendable channel this is")
    reachable: int = Field(description="Recipients this channel can reach, fallback included")
    units_per_message: int = Field(description="SMS segments of the body; 1 elsewhere")
    unit_price: Decimal
    cost: Decimal = Field(description="recipients × units_per_message × unit_price")
    cost_max: Decimal = Field(description="reachable × units_per_message × unit_price")


class GoalCalculation(GoalOut):
    cost_max: Decimal = Field(
        description="Upper bound: every recipient also falls back to every later channel of "
        "the chain it can be reached on"
    )
    skipped: int = Field(
        description="Audience rows no channel of the chain can reach (opted out of each, or "
        "no address for any): not in recipients nor cost"
    )
    opted_out: int = Field(description="Audience contacts opted out of the first channel")
    units_per_message: int = Field(description="The first channel's: SMS segments; 1 elsewhere")
    unit_price: Decimal = Field(description="The first channel's")
    channel: Channel = Field(description="The first channel")
    channels: list[ChannelGoal] = Field(description="Per sendable channel of the chain, in order")


class Recipient(BaseModel):
    id: int
    campaign_id: str
    contact_id: uuid.UUID | None
    phone_number: str | None
    email: str | None
    status: RecipientStatus
    channel: str | None
    attempt: int | None
    message_id: str | None
    provider_message_id: str | None
    error_code: str | None
    error_description: str | None
    variables: dict[str, Any] = Field(
        description="The variables composition renders this recipient with: the contact's "
        "fields, variable_mappings and recipient_variables (recomputed from the contact as "
        "it is now; herald does not store them per recipient)"
    )
    sent_at: datetime | None = Field(
        description="When the latest attempt went to a provider that took it; null while "
        "pending and when the provider refused it"
    )
    delivered_at: datetime | None = Field(description="First time it was delivered (or read)")
    read_at: datetime | None
    created_at: datetime = Field(description="When the campaign's expansion made the row")
    updated_at: datetime


class VariantResult(BaseModel):
    name: str
    weight: int = Field(description="Percent of the audience")
    recipients: int
    sent: int
    delivered: int = Field(description="Including read")
    read: int
    failed: int
    skipped: int
    cancelled: int
    pending: int
    delivery_rate: float | None = Field(
        description="delivered / sent, rounded to 4 decimals (0.8333); null before any send"
    )


class AbTestResult(BaseModel):
    variants: list[VariantResult]


@router.post("/{campaign_id}/calculate-goal", response_model=Envelope[GoalCalculation])
async def calculate_goal(
    request: Request, campaign_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    """Recipients the audience resolves to now, without those every channel would skip, and
    the estimated cost per channel, on a draft or a scheduled campaign."""
    current = await existing(pool, account, campaign_id)
    if current["status"] not in EDITABLE or current["spec"] is None:
        raise ApiError(
            ErrorCode.CAMPAIGN_NOT_EDITABLE,
            f"the campaign is {current['status']}; only a draft or a scheduled campaign has "
            "a goal to calculate",
            field="status",
        )
    spec = parse_spec(current["spec"])
    await check_audience(pool, account, spec)
    config = config_of(request)
    found = await estimate(pool, account, spec, await templates_of(pool, account, spec), config)
    stamp = await drafts.save_goal(pool, account, campaign_id, found.goal.recipients, found.cost)
    first = found.channels[0]
    return ok(
        request,
        {
            "recipients": found.goal.recipients,
            "cost": found.cost,
            "cost_max": found.cost_max,
            "currency": config.currency,
            "calculated_at": stamp,
            "skipped": found.skipped,
            "opted_out": found.goal.opted_out,
            "units_per_message": first.units_per_message,
            "unit_price": first.unit_price,
            "channel": first.channel,
            "channels": [
                {
                    "channel": c.channel,
                    "recipients": c.first,
                    "reachable": c.reachable,
                    "units_per_message": c.units_per_message,
                    "unit_price": c.unit_price,
                    "cost": c.cost,
                    "cost_max": c.cost_max,
                }
                for c in found.channels
            ],
        },
    )


@router.get("/{campaign_id}/price", response_model=Envelope[GoalOut])
async def campaign_price(
    request: Request, campaign_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    """The cost stored by the last calculate-goal (null until it ran since the last edit)."""
    current = await existing(pool, account, campaign_id)
    return ok(
        request,
        {
            "recipients": current["goal_recipients"],
            "cost": current["goal_cost"],
            "currency": config_of(request).currency,
            "calculated_at": current["goal_calculated_at"],
        },
    )


@router.get("/{campaign_id}/recipients", response_model=ListEnvelope[Recipient])
async def campaign_recipients(
    request: Request,
    campaign_id: str,
    account: Account,
    pool: Pool,
    paging: pagination.Page,
    status: RecipientStatus | None = None,
) -> dict[str, Any]:
    """Per-recipient delivery status with error codes, in recipient order; 410 once the
    campaign's rows were archived (its counters stay in the campaign's stats)."""
    current = await existing(pool, account, campaign_id)
    await _not_archived(pool, current["id"])
    position = pagination.decode("recipients", paging.cursor, 1)
    # recipients.id is a PostgreSQL integer.
    after = 0 if position is None else pagination.serial(position[0], maximum=2**31 - 1)
    event = await drafts.sent_event(pool, account, current["id"]) or {}
    if status is None:
        # The pipeline's exact counter; a draft or a campaign not yet expanded has none.
        total: int | None = current["total_recipients"] or 0
    else:
        total = counted_total(current, status)
    rows = (
        []
        if total == 0
        else await recipients.page(
            pool,
            current["id"],
            status=status.value if status else None,
            after_id=after,
            limit=paging.limit + 1,
        )
    )
    items, cursor = pagination.split(rows, paging.limit, "recipients", lambda r: (r["id"],))
    if total is None:
        assert status is not None
        total = await recipients.count(
            pool, current["id"], status=status.value, up_to=MAX_TOTAL + 1
        )
    out = [
        {
            "id": r["id"],
            "campaign_id": current["id"],
            "contact_id": r["contact_id"],
            "phone_number": r["phone"],
            "email": r["email"],
            "status": r["status"],
            "channel": r["channel"],
            "attempt": r["attempt_no"],
            "message_id": (
                f"{current['id']}.{r['id']}.{r['attempt_no']}" if r["attempt_no"] else None
            ),
            "provider_message_id": r["provider_message_id"],
            "error_code": r["error_code"],
            "error_description": r["error_description"],
            "variables": variables_of(event, r),
            "sent_at": r["sent_at"],
            "delivered_at": r["delivered_at"],
            "read_at": r["read_at"],
            "created_at": r["created_at"],
            "updated_at": r["updated_at"],
        }
        for r in items
    ]
    return page(request, out, cursor, total=total)


async def _not_archived(pool: asyncpg.Pool, campaign_id: str) -> None:
    archived = await recipient_tables.archived_at(pool, campaign_id)
    if archived is not None:
        raise ApiError(
            ErrorCode.RECIPIENTS_ARCHIVED,
            f"the campaign's recipient rows were archived at {archived.isoformat()} "
            "(HERALD_RECIPIENTS_RETENTION_DAYS); its totals remain in GET /v1/campaigns/"
            f"{campaign_id}",
            field="campaign_id",
        )


def counted_total(counters: Mapping[str, Any], status: RecipientStatus) -> int | None:
    """How many of the campaign's recipients have `status`, from its exact counters (kept in
    the transaction that moves the rows), so a filtered total reads no recipient rows; None
    for queued and sent while recipients are still open: those two need a (bounded) count."""
    total = counters["total_recipients"] or 0
    if status is RecipientStatus.QUEUED or status is RecipientStatus.SENT:
        return 0 if total - (counters["final"] or 0) <= 0 else None
    if status is RecipientStatus.DELIVERED:
        return (counters["delivered"] or 0) - (counters["read"] or 0)
    return int(counters[status.value] or 0)


def variables_of(event: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, object]:
    """What compose renders the recipient with (domain.compose: the first of contact id,
    phone and email with recipient_variables wins)."""
    per_recipient: Mapping[str, Mapping[str, object]] = event.get("recipient_variables") or {}
    overrides: Mapping[str, object] = {}
    for key in (row["contact_id"], row["phone"], row["email"]):
        if key is not None and str(key) in per_recipient:
            overrides = per_recipient[str(key)]
            break
    values = recipient_variables(
        contact_fields=row["fields"],
        variable_mappings=event.get("variable_mappings") or {},
        overrides=overrides,
    )
    return {k: v for k, v in values.items() if v is not None}


_OUTCOMES = ("recipients", "sent", "delivered", "read", "failed", "skipped", "cancelled", "pending")


@router.get("/{campaign_id}/ab-test", response_model=Envelope[AbTestResult])
async def ab_test_results(
    request: Request, campaign_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    """Each variant's split and outcomes, from the counters the status fold keeps exact
    (zeros until the campaign is expanded)."""
    current = await existing(pool, account, campaign_id)
    event = await drafts.sent_event(pool, account, current["id"])
    if event is not None:
        arms = [(v["name"], v["weight"]) for v in event.get("variants") or []]
    else:
        spec = current["spec"] or {}
        arms = [(v["name"], v["weight"]) for v in (spec.get("ab_test") or {}).get("variants", [])]
    if not arms:
        raise ApiError(ErrorCode.AB_TEST_NOT_FOUND)
    counted = await drafts.variant_counters(pool, current["id"]) if event is not None else {}
    results = []
    for i, (name, weight) in enumerate(arms):
        row = counted.get(i, {})
        outcome = {k: row.get(k, 0) for k in _OUTCOMES}
        rate = (
            round(outcome["delivered"] / outcome["sent"], RATE_DECIMALS)
            if outcome["sent"]
            else None
        )
        results.append({"name": name, "weight": weight, **outcome, "delivery_rate": rate})
    return ok(request, {"variants": results})
