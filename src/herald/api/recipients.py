"""A campaign's audience in numbers: calculate-goal (recipients and cost before sending),
the stored price, and the per-recipient delivery list after sending (seeds 002 and 004)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from herald.api import pagination
from herald.api.auth import Account, Pool
from herald.api.campaign_spec import estimate_cost, message_units, parse_spec
from herald.api.campaigns import (
    GoalOut,
    check_audience,
    config_of,
    existing,
    not_draft,
    templates_of,
)
from herald.api.envelope import Envelope, ListEnvelope, ok, page
from herald.api.errors import ApiError, ErrorCode
from herald.domain.channels import Channel, chain
from herald.domain.segments import compile_rules
from herald.domain.status import RecipientStatus
from herald.store import drafts

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


class GoalCalculation(GoalOut):
    opted_out: int = Field(description="Audience contacts opted out of the first channel")
    units_per_message: int = Field(description="SMS segments of the body; 1 elsewhere")
    unit_price: Decimal
    channel: Channel


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
    sent_at: datetime | None
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
    delivery_rate: float | None = Field(description="delivered / sent; null before any send")


class AbTestResult(BaseModel):
    variants: list[VariantResult]


@router.post("/{campaign_id}/calculate-goal", response_model=Envelope[GoalCalculation])
async def calculate_goal(
    request: Request, campaign_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    """Recipients the audience resolves to now, and the estimated cost on the first channel."""
    current = await existing(pool, account, campaign_id)
    if current["status"] != "draft" or current["spec"] is None:
        raise not_draft(current)
    spec = parse_spec(current["spec"])
    await check_audience(pool, account, spec)
    segment = None
    if spec.segment_id:
        rules = await drafts.segment_rules(pool, account, uuid.UUID(spec.segment_id))
        segment = compile_rules(rules, first_param=8)
    first = chain(spec.mode)[0]
    goal = await drafts.goal(
        pool,
        account,
        contact_ids=[u for u in (_maybe_uuid(v) for v in spec.contact_ids) if u],
        list_ids=[uuid.UUID(v) for v in spec.audience_list_ids()],
        tags=spec.tags,
        destinations=spec.destinations,
        channel=first.value,
        failed_of=spec.failed_of,
        segment=segment,
    )
    config = config_of(request)
    units = message_units(spec, await templates_of(pool, account, spec))
    cost = estimate_cost(goal.recipients, units, config.unit_prices[first])
    stamp = await drafts.save_goal(pool, account, campaign_id, goal.recipients, cost)
    return ok(
        request,
        {
            "recipients": goal.recipients,
            "cost": cost,
            "currency": config.currency,
            "calculated_at": stamp,
            "opted_out": goal.opted_out,
            "units_per_message": units,
            "unit_price": config.unit_prices[first],
            "channel": first,
        },
    )


def _maybe_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


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
    """Per-recipient delivery status with error codes, in recipient order."""
    current = await existing(pool, account, campaign_id)
    position = pagination.decode("recipients", paging.cursor, 1)
    # recipients.id is a PostgreSQL integer.
    after = 0 if position is None else pagination.serial(position[0], maximum=2**31 - 1)
    rows = await drafts.recipients(
        pool,
        current["id"],
        status=status.value if status else None,
        after_id=after,
        limit=paging.limit + 1,
    )
    items, cursor = pagination.split(rows, paging.limit, "recipients", lambda r: (r["id"],))
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
            "sent_at": r["sent_at"],
            "updated_at": r["updated_at"],
        }
        for r in items
    ]
    return page(request, out, cursor)


_OUTCOMES = ("recipients", "sent", "delivered", "read", "failed", "skipped", "cancelled", "pending")


@router.get("/{campaign_id}/ab-test", response_model=Envelope[AbTestResult])
async def ab_test_results(
    request: Request, campaign_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    """Each variant's split and outcomes, recounted from the recipient rows (zeros until the
    campaign is expanded)."""
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
        rate = outcome["delivered"] / outcome["sent"] if outcome["sent"] else None
        results.append({"name": name, "weight": weight, **outcome, "delivery_rate": rate})
    return ok(request, {"variants": results})
