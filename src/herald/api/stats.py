"""Campaign statistics: account totals by channel (Orbit), time buckets (hour, day, week,
month) for the account or one campaign, and one campaign's totals by channel."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from herald.api import pagination
from herald.api.auth import Account, Pool
from herald.api.campaigns import existing as existing_campaign
from herald.api.campaigns import modes_filter
from herald.api.envelope import Envelope, ListEnvelope, ok, page
from herald.api.errors import ApiError, ErrorCode
from herald.domain.channels import Channel
from herald.store import stats

router = APIRouter(prefix="/v1/campaigns", tags=["statistics"])

Unit = Literal["hour", "day", "week", "month"]
MAX_WINDOW_DAYS = 366


class ChannelStats(BaseModel):
    sent: int
    delivered: int
    read: int
    failed: int


class RecipientTotals(BaseModel):
    """Each recipient counted once, at its outcome: one whose SMS failed and whose WhatsApp
    fallback was delivered is one `sent` and one `delivered`, not `failed`."""

    total: int
    sent: int = Field(description="Recipients a provider accepted a message for")
    delivered: int
    read: int
    failed: int = Field(description="Recipients whose every channel failed")
    skipped: int
    cancelled: int
    delivery_rate: float | None = Field(description="delivered / sent recipients, 0 to 1")


class AccountStats(BaseModel):
    """The Orbit `total_*` message figures count messages (send attempts), so each equals the
    sum of that figure over `channels`; `recipients` counts the same campaigns per recipient."""

    total_campaigns: int
    active_campaigns: int
    total_recipients: int = Field(description="Recipients (equals recipients.total)")
    total_messages_sent: int = Field(description="Messages sent: sum of channels.*.sent")
    total_delivered: int = Field(description="Messages delivered: sum of channels.*.delivered")
    total_read: int = Field(description="Messages read: sum of channels.*.read")
    total_failed: int = Field(description="Messages failed: sum of channels.*.failed")
    total_skipped: int = Field(description="Recipients skipped (no message is made for them)")
    total_cancelled: int = Field(description="Recipients cancelled before their message")
    delivery_rate: float | None = Field(description="delivered / sent messages, 0 to 1")
    channels: dict[str, ChannelStats] = Field(description="Messages per channel")
    recipients: RecipientTotals


class CampaignStats(BaseModel):
    """`sent` .. `pending` count recipients; `channels` and `messages` count messages."""

    campaign_id: str
    status: str
    total_recipients: int
    sent: int
    delivered: int
    read: int
    failed: int
    skipped: int
    cancelled: int
    pending: int
    delivery_rate: float | None = Field(description="delivered / sent recipients, 0 to 1")
    channels: dict[str, ChannelStats] = Field(description="Messages per channel")
    messages: ChannelStats = Field(description="Messages on all channels: sum of channels")


class Bucket(BaseModel):
    bucket: datetime = Field(description="Start of the bucket, UTC")
    attempts: int
    sent: int
    delivered: int
    read: int
    failed: int
    skipped: int


def _rate(delivered: int, sent: int) -> float | None:
    return round(delivered / sent, 4) if sent else None


_FIGURES = ("sent", "delivered", "read", "failed")


def _channels(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    return {r["channel"]: {k: int(r[k]) for k in _FIGURES} for r in rows}


def _start(value: date | None) -> datetime | None:
    return None if value is None else datetime.combine(value, time(0), tzinfo=UTC)


def _end(value: date | None) -> datetime | None:
    """The first instant after the UTC day `value` (the last instant there is for date.max)."""
    start = _start(value)
    if start is None:
        return None
    if value == date.max:
        return datetime.max.replace(tzinfo=UTC)
    return start + timedelta(days=1)


@router.get("/stats", response_model=Envelope[AccountStats])
async def account_stats(
    request: Request,
    account: Account,
    pool: Pool,
    start_date: Annotated[date | None, Query(description="Campaigns created on or after")] = None,
    end_date: Annotated[date | None, Query(description="Campaigns created on or before")] = None,
    channel: Channel | None = None,
    sending_mode: Annotated[str | None, Query(description="Comma-separated modes")] = None,
) -> dict[str, Any]:
    window = stats.Window(
        start=_start(start_date),
        end=_end(end_date),
        sending_modes=modes_filter(sending_mode, channel),
    )
    totals = {k: int(v) for k, v in (await stats.summary(pool, account, window)).items()}
    by_channel = _channels(await stats.channels(pool, account, window))
    if channel is not None:
        by_channel = {k: v for k, v in by_channel.items() if k == channel.value}
    # The totals are the channels' sums, so the two can never disagree (issue 16, item 7).
    messages = {k: sum(c[k] for c in by_channel.values()) for k in _FIGURES}
    recipients = {
        "total": totals["total_recipients"],
        "sent": totals["total_messages_sent"],
        "delivered": totals["total_delivered"],
        "read": totals["total_read"],
        "failed": totals["total_failed"],
        "skipped": totals["total_skipped"],
        "cancelled": totals["total_cancelled"],
    }
    data = {
        "total_campaigns": totals["total_campaigns"],
        "active_campaigns": totals["active_campaigns"],
        "total_recipients": recipients["total"],
        "total_messages_sent": messages["sent"],
        "total_delivered": messages["delivered"],
        "total_read": messages["read"],
        "total_failed": messages["failed"],
        "total_skipped": recipients["skipped"],
        "total_cancelled": recipients["cancelled"],
        "delivery_rate": _rate(messages["delivered"], messages["sent"]),
        "channels": by_channel,
        "recipients": {
            **recipients,
            "delivery_rate": _rate(recipients["delivered"], recipients["sent"]),
        },
    }
    return ok(request, data)


async def _bucket_page(
    request: Request,
    pool: Pool,
    account: str,
    *,
    campaign_id: str | None,
    aggregate_on: Unit,
    start_date: date,
    end_date: date,
    channel: Channel | None,
    sending_mode: str | None,
    direction: str,
    paging: pagination.PageParams,
) -> dict[str, Any]:
    if end_date < start_date:
        raise ApiError(
            ErrorCode.VALIDATION_FAILED, "must not be before start_date", field="end_date"
        )
    if (end_date - start_date).days >= MAX_WINDOW_DAYS:
        raise ApiError(
            ErrorCode.VALIDATION_FAILED,
            f"the window is at most {MAX_WINDOW_DAYS} days",
            field="end_date",
        )
    kind = f"buckets-{aggregate_on}-{direction}"
    position = pagination.decode(kind, paging.cursor, 1)
    after = None if position is None else pagination.moment(position[0])
    start, end = _start(start_date), _end(end_date)
    assert start is not None and end is not None
    rows = await stats.buckets(
        pool,
        account,
        unit=aggregate_on,
        start=start,
        end=end,
        campaign_id=campaign_id,
        channel=channel.value if channel else None,
        sending_modes=modes_filter(sending_mode, None),
        after=after,
        ascending=direction == "asc",
        limit=paging.limit + 1,
    )
    items, cursor = pagination.split(rows, paging.limit, kind, lambda r: (r["bucket"].isoformat(),))
    return page(request, items, cursor)


@router.get("/stats/timeseries", response_model=ListEnvelope[Bucket])
async def account_timeseries(
    request: Request,
    account: Account,
    pool: Pool,
    paging: pagination.Page,
    start_date: date,
    end_date: date,
    aggregate_on: Unit = "day",
    channel: Channel | None = None,
    sending_mode: Annotated[str | None, Query(description="Comma-separated modes")] = None,
    direction: Literal["asc", "desc"] = "asc",
) -> dict[str, Any]:
    """Messages per hour, day, week or month over a window of whole UTC days."""
    return await _bucket_page(
        request,
        pool,
        account,
        campaign_id=None,
        aggregate_on=aggregate_on,
        start_date=start_date,
        end_date=end_date,
        channel=channel,
        sending_mode=sending_mode,
        direction=direction,
        paging=paging,
    )


@router.get("/{campaign_id}/stats", response_model=Envelope[CampaignStats])
async def campaign_stats(
    request: Request, campaign_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    row = await existing_campaign(pool, account, campaign_id)
    total = row["total_recipients"] or 0
    counters = {
        k: row[k] or 0 for k in ("sent", "delivered", "read", "failed", "skipped", "cancelled")
    }
    by_channel = _channels(await stats.campaign_channels(pool, row["id"]))
    data = {
        "campaign_id": row["id"],
        "status": row["status"],
        "total_recipients": total,
        **counters,
        "pending": max(0, total - (row["final"] or 0)),
        "delivery_rate": _rate(counters["delivered"], counters["sent"]),
        "channels": by_channel,
        "messages": {k: sum(c[k] for c in by_channel.values()) for k in _FIGURES},
    }
    return ok(request, data)


@router.get("/{campaign_id}/stats/timeseries", response_model=ListEnvelope[Bucket])
async def campaign_timeseries(
    request: Request,
    campaign_id: str,
    account: Account,
    pool: Pool,
    paging: pagination.Page,
    start_date: date,
    end_date: date,
    aggregate_on: Unit = "hour",
    channel: Channel | None = None,
    direction: Literal["asc", "desc"] = "asc",
) -> dict[str, Any]:
    row = await existing_campaign(pool, account, campaign_id)
    return await _bucket_page(
        request,
        pool,
        account,
        campaign_id=row["id"],
        aggregate_on=aggregate_on,
        start_date=start_date,
        end_date=end_date,
        channel=channel,
        sending_mode=None,
        direction=direction,
        paging=paging,
    )
