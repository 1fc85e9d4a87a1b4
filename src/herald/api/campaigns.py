"""/v1/campaigns: drafts, confirmation through the outbox, control, goal and recipients.

The lifecycle is domain/campaign.py (docs/api.md draws it). A draft lives in campaign_drafts;
once sent (confirmed) its status and counters come from the pipeline's `campaigns` row,
created in the transaction that confirms it (or by the scheduler, for campaigns other
upstream APIs confirm).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, StringConstraints

from herald.api import pagination
from herald.api.auth import Account, Pool
from herald.api.campaign_spec import (
    CampaignIn,
    build_event,
    check_schedule,
    parse_spec,
)
from herald.api.config import ApiConfig
from herald.api.envelope import MAX_TOTAL, Envelope, ListEnvelope, ok, page
from herald.api.errors import ApiError, ErrorCode
from herald.api.fields import STRICT, like_pattern, parse_uuid
from herald.api.goal import estimate
from herald.constants import TOPIC_CAMPAIGN_EVENTS
from herald.domain.campaign import ENDED, CampaignStatus, Command, Refused, apply
from herald.domain.channels import Channel, SendingMode, chain
from herald.domain.events import DEFAULT_BATCH_SIZE
from herald.store import accounts, drafts, recipient_tables, templates

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

STATUSES = tuple(s.value for s in CampaignStatus)
Status = CampaignStatus
# Seed 002's numeric status: 0 draft, 1 ready/scheduled, 2 sending, 3 completed, 4 failed.
# Paused is still in progress (2); cancelled ended without sending everything (4).
STATUS_CODES = {
    CampaignStatus.DRAFT: 0,
    CampaignStatus.SCHEDULED: 1,
    CampaignStatus.SENDING: 2,
    CampaignStatus.PAUSED: 2,
    CampaignStatus.COMPLETED: 3,
    CampaignStatus.FAILED: 4,
    CampaignStatus.CANCELLED: 4,
}
# Fields of a stored spec left out of list pages: they can be 100,000 entries long.
_BULKY = ("destinations", "recipient_variables")


class Progress(BaseModel):
    total_recipients: int
    sent: int
    delivered: int
    read: int
    failed: int
    skipped: int
    cancelled: int
    pending: int


class GoalOut(BaseModel):
    recipients: int | None
    cost: Decimal | None
    currency: str
    calculated_at: datetime | None


class Campaign(BaseModel):
    id: str
    name: str
    description: str
    channel: Channel
    sending_mode: SendingMode
    status: Status
    status_code: int = Field(
        description="Seed 002's numeric status: 0 draft, 1 scheduled, 2 sending or paused, "
        "3 completed, 4 failed or cancelled"
    )
    ready_to_send: bool
    spec: dict[str, Any] | None = Field(
        description="Content, audience and options as last written (null when the campaign "
        "was confirmed by another upstream API)"
    )
    scheduled_at: datetime | None
    stats: Progress = Field(
        description="The pipeline's exact counters; zeros for a draft and before expansion"
    )
    goal: GoalOut | None
    pause_reason: str | None
    paused_at: datetime | None
    batch_size: int | None = Field(description="The spec's before the send, then the pipeline's")
    batch_delay_ms: int | None
    confirmed_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CampaignUpdate(BaseModel):
    """Any draft field; those present replace the draft's, the others stay."""

    model_config = STRICT
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    description: str | None = None
    channel: Channel | None = None
    sending_mode: SendingMode | None = None
    template_id: str | None = None
    body: str | None = None
    sender: str | None = None
    subject: str | None = None
    template_name: str | None = None
    template_lang: str | None = None
    content: dict[str, Any] | None = None
    segment_id: str | None = None
    list_id: str | None = None
    list_ids: list[str] | None = None
    contact_ids: list[str] | None = None
    tags: list[str] | None = None
    destinations: list[str] | None = None
    failed_of: str | None = None
    variable_mappings: dict[str, str] | None = None
    recipient_variables: dict[str, dict[str, str | int | float]] | None = None
    provider_accounts: dict[str, str] | None = None
    scheduled_at: datetime | None = None
    batch_size: int | None = None
    batch_delay_ms: int | None = None
    fallback_window_s: int | None = None
    fallback: list[dict[str, Any]] | None = None
    ready_to_send: bool | None = None
    ab_test: dict[str, Any] | None = None


class PauseIn(BaseModel):
    model_config = STRICT
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class Sent(BaseModel):
    id: str
    status: Status
    status_code: int = Field(description="Seed 002's numeric status (Campaign.status_code)")
    confirmed_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None = Field(description="Set once the campaign has started")
    event_id: str


def config_of(request: Request) -> ApiConfig:
    config: ApiConfig = request.app.state.config
    return config


def campaign_out(row: dict[str, Any], config: ApiConfig, *, full: bool = True) -> dict[str, Any]:
    mode = SendingMode(row["sending_mode"])
    spec = row["spec"]
    if spec is not None and not full:
        spec = {k: v for k, v in spec.items() if k not in _BULKY}
    # Zeros until the pipeline counts (a draft has no pipeline row): never null.
    stats = dict.fromkeys(Progress.model_fields, 0)
    if row["total_recipients"] is not None:
        stats = {
            "total_recipients": row["total_recipients"],
            "sent": row["sent"],
            "delivered": row["delivered"],
            "read": row["read"],
            "failed": row["failed"],
            "skipped": row["skipped"],
            "cancelled": row["cancelled"] or 0,
            "pending": max(0, row["total_recipients"] - row["final"]),
        }
    # A draft's pacing is its spec's (the stored spec leaves defaults out).
    pacing = {
        "batch_size": row["batch_size"],
        "batch_delay_ms": row["batch_delay_ms"],
    }
    if row["batch_size"] is None and row["spec"] is not None:
        pacing = {
            "batch_size": row["spec"].get("batch_size", DEFAULT_BATCH_SIZE),
            "batch_delay_ms": row["spec"].get("batch_delay_ms", 0),
        }
    goal = None
    if row["goal_calculated_at"] is not None:
        goal = {
            "recipients": row["goal_recipients"],
            "cost": row["goal_cost"],
            "currency": config.currency,
            "calculated_at": row["goal_calculated_at"],
        }
    return {
        **{k: row[k] for k in ("id", "name", "description", "status", "ready_to_send")},
        "status_code": STATUS_CODES[CampaignStatus(row["status"])],
        "channel": chain(mode)[0],
        "sending_mode": mode,
        "spec": spec,
        "stats": stats,
        "goal": goal,
        **pacing,
        **{
            k: row[k]
            for k in (
                "scheduled_at",
                "pause_reason",
                "paused_at",
                "confirmed_at",
                "started_at",
                "completed_at",
                "created_at",
                "updated_at",
            )
        },
    }


async def existing(pool: Pool, account: str, campaign_id: str) -> dict[str, Any]:
    if len(campaign_id) > 128:
        raise ApiError(ErrorCode.CAMPAIGN_NOT_FOUND)
    row = await drafts.get(pool, account, campaign_id)
    if row is None:
        raise ApiError(ErrorCode.CAMPAIGN_NOT_FOUND)
    return row


def _draft(spec: CampaignIn) -> drafts.Draft:
    return drafts.Draft(
        name=spec.name,
        description=spec.description,
        sending_mode=spec.mode.value,
        spec=spec.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        scheduled_at=spec.scheduled_at,
        ready_to_send=spec.ready_to_send,
    )


@router.post("", status_code=201, response_model=Envelope[Campaign])
async def create_campaign(
    request: Request, body: CampaignIn, account: Account, pool: Pool
) -> dict[str, Any]:
    check_schedule(body, await drafts.database_now(pool))
    await check_provider_accounts(pool, account, body)
    campaign_id = str(uuid.uuid4())
    await drafts.insert(pool, account, campaign_id, _draft(body))
    return ok(request, written(await existing(pool, account, campaign_id), config_of(request)))


def written(row: dict[str, Any], config: ApiConfig) -> dict[str, Any]:
    """A create's or change's answer: the list-page shape, without the bulky spec fields the
    client just sent (100,000 destinations would come back as 1.5 MB); GET has them."""
    return campaign_out(row, config, full=False)


def _csv(value: str | None, allowed: tuple[str, ...], field: str, upper: bool) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip().upper() if upper else v.strip().lower() for v in value.split(",")]
    for item in items:
        if item not in allowed:
            raise ApiError(
                ErrorCode.VALIDATION_FAILED,
                f"{item!r} is not one of {', '.join(allowed)}",
                field=field,
            )
    return items


def modes_filter(sending_mode: str | None, channel: Channel | None) -> list[str] | None:
    modes = _csv(sending_mode, tuple(m.value for m in SendingMode), "sending_mode", upper=True)
    if channel is None:
        return modes
    with_channel = [m.value for m in SendingMode if channel in chain(m)]
    return [m for m in (modes or with_channel) if m in with_channel]


def _day(value: date | None, *, end: bool) -> datetime | None:
    if value is None:
        return None
    start = datetime.combine(value, time(0), tzinfo=UTC)
    if not end:
        return start
    # date.max has no next day: its end is the last instant there is.
    return datetime.max.replace(tzinfo=UTC) if value == date.max else start + timedelta(days=1)


@router.get("", response_model=ListEnvelope[Campaign])
async def list_campaigns(
    request: Request,
    account: Account,
    pool: Pool,
    paging: pagination.Page,
    status: Annotated[str | None, Query(description="Comma-separated: draft, sending, ...")] = None,
    channel: Channel | None = None,
    sending_mode: Annotated[str | None, Query(description="Comma-separated modes")] = None,
    draft: Annotated[bool | None, Query(description="Only drafts (true) or no drafts")] = None,
    scheduled: Annotated[
        bool | None, Query(description="Only campaigns confirmed for a future time")
    ] = None,
    ready_to_send: bool | None = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    start_date: Annotated[
        date | None, Query(description="Created or scheduled on or after")
    ] = None,
    end_date: Annotated[date | None, Query(description="Created or scheduled on or before")] = None,
    direction: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    filters = drafts.Filters(
        statuses=_csv(status, STATUSES, "status", upper=False),
        sending_modes=modes_filter(sending_mode, channel),
        draft=draft,
        programmed=scheduled,
        ready_to_send=ready_to_send,
        like=like_pattern(search),
        window_start=_day(start_date, end=False),
        window_end=_day(end_date, end=True),
    )
    kind = f"campaigns-{direction}"
    rows = await drafts.page(
        pool,
        account,
        filters,
        after=pagination.time_id(kind, paging.cursor, uuid_ids=False),
        ascending=direction == "asc",
        limit=paging.limit + 1,
    )
    items, cursor = pagination.split(rows, paging.limit, kind, pagination.time_id_position)
    total = await drafts.count(pool, account, filters, up_to=MAX_TOTAL + 1)
    config = config_of(request)
    return page(request, [campaign_out(r, config, full=False) for r in items], cursor, total=total)


@router.get("/{campaign_id}", response_model=Envelope[Campaign])
async def get_campaign(
    request: Request, campaign_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    return ok(request, campaign_out(await existing(pool, account, campaign_id), config_of(request)))


def not_editable(row: dict[str, Any]) -> ApiError:
    return ApiError(
        ErrorCode.CAMPAIGN_NOT_EDITABLE,
        f"the campaign is {row['status']}; only draft and scheduled campaigns can be changed",
        field="status",
    )


# Statuses whose campaigns PUT and DELETE accept (from the API's own drafts only).
EDITABLE = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)


@router.put("/{campaign_id}", response_model=Envelope[Campaign])
async def update_campaign(
    request: Request, campaign_id: str, body: CampaignUpdate, account: Account, pool: Pool
) -> dict[str, Any]:
    current = await existing(pool, account, campaign_id)
    if current["status"] not in EDITABLE or current["spec"] is None:
        raise not_editable(current)
    changes = body.model_dump(include=body.model_fields_set, by_alias=True)
    merged = {**current["spec"], **{k: v for k, v in changes.items()}}
    if "sending_mode" in changes and "channel" not in changes:
        merged.pop("channel", None)
    if "channel" in changes and "sending_mode" not in changes:
        merged.pop("sending_mode", None)
    merged = {k: v for k, v in merged.items() if v is not None}
    spec = parse_spec(merged)
    check_schedule(spec, await drafts.database_now(pool))
    await check_provider_accounts(pool, account, spec)
    if current["status"] == CampaignStatus.DRAFT:
        # Seed 002 marks a draft ready after calculating its goal: that keeps the goal.
        keep_goal = set(changes) <= {"ready_to_send"}
        if not await drafts.update(pool, account, campaign_id, _draft(spec), keep_goal=keep_goal):
            raise not_editable(await existing(pool, account, campaign_id))
    else:
        await _reschedule(pool, account, campaign_id, spec)
    return ok(request, written(await existing(pool, account, campaign_id), config_of(request)))


async def _reschedule(pool: Pool, account: str, campaign_id: str, spec: CampaignIn) -> None:
    """A scheduled campaign changed: checked as a send is, then its event rewritten where the
    scheduler will read it, unless the scheduler has started it meanwhile (409)."""
    async with pool.acquire() as conn, conn.transaction():
        locked = await drafts.lock_draft(conn, account, campaign_id)
        if locked is None or locked["confirmed_at"] is None:
            raise not_editable(await existing(pool, account, campaign_id))
        event = await confirmed_event(conn, account, campaign_id, spec)
        if not await drafts.reschedule(conn, account, campaign_id, _draft(spec), event):
            raise ApiError(
                ErrorCode.CAMPAIGN_NOT_EDITABLE,
                "the campaign has started; only draft and scheduled campaigns can be changed",
                field="status",
            )


@router.delete("/{campaign_id}", status_code=204, response_class=Response)
async def delete_campaign(campaign_id: str, account: Account, pool: Pool) -> Response:
    """A draft is deleted; a scheduled campaign is cancelled so it never runs, and hidden."""
    current = await existing(pool, account, campaign_id)
    if current["status"] == "draft" and await drafts.delete(pool, account, campaign_id):
        return Response(status_code=204)
    if current["status"] == CampaignStatus.SCHEDULED and current["spec"] is not None:
        async with pool.acquire() as conn, conn.transaction():
            if await drafts.delete_scheduled(conn, account, campaign_id):
                return Response(status_code=204)
    raise ApiError(ErrorCode.CAMPAIGN_NOT_DELETABLE, field="status")


async def templates_of(conn: Any, account: str, spec: CampaignIn) -> dict[str, dict[str, Any]]:
    ids: dict[str, uuid.UUID] = {}
    for raw in spec.template_ids():
        try:
            ids[raw] = uuid.UUID(raw)
        except ValueError:
            raise ApiError(
                ErrorCode.TEMPLATE_INVALID, "no such template", field="template_id"
            ) from None
    found = await templates.get_many(conn, account, list(ids.values()))
    return {raw: found[ident] for raw, ident in ids.items() if ident in found}


async def check_audience(conn: Any, account: str, spec: CampaignIn) -> None:
    from herald.api.audience import check_contacts  # the contact checks live there

    wanted = spec.audience_list_ids()
    if wanted:
        parsed = [parse_uuid(v, ErrorCode.AUDIENCE_INVALID, field="list_ids") for v in wanted]
        owned = await drafts.lists_owned(conn, account, parsed)
        if len(owned) != len(set(parsed)):
            raise ApiError(ErrorCode.AUDIENCE_INVALID, "no such list", field="list_ids")
    if spec.segment_id:
        ident = parse_uuid(spec.segment_id, ErrorCode.AUDIENCE_INVALID, field="segment_id")
        if await drafts.segment_rules(conn, account, ident) is None:
            raise ApiError(ErrorCode.AUDIENCE_INVALID, "no such segment", field="segment_id")
    if spec.failed_of and await drafts.sent_event(conn, account, spec.failed_of) is None:
        raise ApiError(ErrorCode.AUDIENCE_INVALID, "no such sent campaign", field="failed_of")
    await check_contacts(conn, account, spec)


async def check_provider_accounts(conn: Any, account: str, spec: CampaignIn) -> None:
    """Each chosen provider account is one of the account's own, enabled, for its channel
    (422 provider_account_invalid naming provider_accounts.<channel>)."""
    wanted = {
        channel: parse_uuid(
            raw, ErrorCode.PROVIDER_ACCOUNT_INVALID, field=f"provider_accounts.{channel.value}"
        )
        for channel, raw in spec.provider_accounts.items()
    }
    if not wanted:
        return
    owned = await drafts.provider_accounts_owned(conn, account, list(wanted.values()))
    for channel, ident in wanted.items():
        if owned.get(str(ident)) != channel.value:
            raise ApiError(
                ErrorCode.PROVIDER_ACCOUNT_INVALID,
                f"the account has no enabled {channel.value} provider account {ident}",
                field=f"provider_accounts.{channel.value}",
            )


async def confirmed_event(
    conn: Any, account: str, campaign_id: str, spec: CampaignIn
) -> dict[str, Any]:
    """campaign.confirmed for the spec as it stands, its audience, provider accounts and
    templates checked."""
    await check_audience(conn, account, spec)
    await check_provider_accounts(conn, account, spec)
    return build_event(
        spec=spec,
        campaign_id=campaign_id,
        account_id=account,
        templates=await templates_of(conn, account, spec),
        now=await drafts.database_now(conn),
    )


@router.post("/{campaign_id}/send", status_code=202, response_model=Envelope[Sent])
@router.post(
    "/{campaign_id}/confirm",
    status_code=202,
    response_model=Envelope[Sent],
    operation_id="confirm_campaign",
    description="The same as send (seed 002 calls it confirm).",
)
@router.put(
    "/{campaign_id}/confirm",
    status_code=202,
    response_model=Envelope[Sent],
    operation_id="confirm_campaign_put",
    description="The same as send (seed 002 confirms with PUT).",
)
async def send_campaign(
    request: Request, campaign_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    """Confirms the draft: its pipeline row and campaign.confirmed (in the outbox, which the
    relay publishes) in one transaction. It starts now (sending), or at scheduled_at. A
    scheduled campaign sent again starts now ("send now")."""
    current = await existing(pool, account, campaign_id)
    if current["status"] == CampaignStatus.SCHEDULED and current["confirmed_at"] is not None:
        if not await drafts.start_now(pool, account, campaign_id):
            raise conflict(await existing(pool, account, campaign_id), Command.START)
        sent_with = await drafts.sent_event(pool, account, campaign_id) or {}
        return ok(request, _sent(await existing(pool, account, campaign_id), sent_with))
    async with pool.acquire() as conn, conn.transaction():
        locked = await drafts.lock_draft(conn, account, campaign_id)
        if locked is None or locked["confirmed_at"] is not None:
            raise conflict(await existing(pool, account, campaign_id), Command.CONFIRM)
        spec = parse_spec(locked["spec"])
        config = config_of(request)
        if await accounts.confirm_requires_goal(conn, account):
            await confirm_workflow(conn, account, spec, locked, config)
        event = await _confirm(conn, account, campaign_id, spec, config)
    return ok(request, _sent(await existing(pool, account, campaign_id), event))


async def confirm_workflow(
    conn: Any, account: str, spec: CampaignIn, draft: Mapping[str, Any], config: ApiConfig
) -> None:
    """Seed 002's confirm, for an account that asks for it: the campaign is marked ready, its
    cost was calculated, and the goal recomputed now is the one calculated (same recipients,
    same cost), so nothing is sent at a price the client did not see."""
    if not draft["ready_to_send"]:
        raise ApiError(
            ErrorCode.CAMPAIGN_NOT_READY,
            "this account confirms campaigns marked ready: set ready_to_send to true first",
            field="ready_to_send",
        )
    if draft["goal_calculated_at"] is None:
        raise ApiError(
            ErrorCode.GOAL_REQUIRED,
            "this account confirms campaigns whose cost was calculated since their last "
            "change: POST /v1/campaigns/{id}/calculate-goal first",
            field="goal",
        )
    await check_audience(conn, account, spec)
    found = await estimate(conn, account, spec, await templates_of(conn, account, spec), config)
    was = (draft["goal_recipients"], draft["goal_cost"])
    if (found.goal.recipients, found.cost) != was:
        raise ApiError(
            ErrorCode.GOAL_OUTDATED,
            f"calculate-goal found {was[0]} recipients costing {was[1]}; now they are "
            f"{found.goal.recipients} costing {found.cost}: calculate the goal again",
            field="goal",
        )


async def _confirm(
    conn: Any, account: str, campaign_id: str, spec: CampaignIn, config: ApiConfig
) -> dict[str, Any]:
    """The send checks, then the draft confirmed with its pipeline row and event. In the
    caller's transaction, which a refusal rolls back."""
    refuse_disabled(spec, config)
    event = await confirmed_event(conn, account, campaign_id, spec)
    confirmed = await drafts.confirm(
        conn, account, campaign_id, event=event, topic=TOPIC_CAMPAIGN_EVENTS
    )
    if confirmed is None:
        raise ApiError(
            ErrorCode.CAMPAIGN_STATE_CONFLICT,
            "another campaign holds this campaign's id in the pipeline",
            field="id",
        )
    return event


@router.post(
    "/send",
    status_code=202,
    response_model=Envelope[Sent],
    operation_id="create_and_send_campaign",
)
async def create_and_send(
    request: Request, body: CampaignIn, account: Account, pool: Pool
) -> dict[str, Any]:
    """Seed 004's create: the campaign is created and sent in one transaction, now or at
    `scheduled_at`. All or nothing: a campaign the send checks refuse is not created."""
    check_schedule(body, await drafts.database_now(pool))
    campaign_id = str(uuid.uuid4())
    config = config_of(request)
    async with pool.acquire() as conn, conn.transaction():
        if await accounts.confirm_requires_goal(conn, account):
            # Its cost cannot have been calculated: refused (goal_required), nothing made.
            not_costed = {"ready_to_send": body.ready_to_send, "goal_calculated_at": None}
            await confirm_workflow(conn, account, body, not_costed, config)
        await drafts.insert(conn, account, campaign_id, _draft(body))
        event = await _confirm(conn, account, campaign_id, body, config)
    return ok(request, _sent(await existing(pool, account, campaign_id), event))


def _sent(row: dict[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    """The send answer: the status the campaign has now, and its start when it started."""
    return {
        "id": row["id"],
        "status": row["status"],
        "status_code": STATUS_CODES[CampaignStatus(row["status"])],
        "confirmed_at": row["confirmed_at"],
        "scheduled_at": row["scheduled_at"],
        "started_at": row["started_at"],
        "event_id": event.get("event_id", ""),
    }


def conflict(row: dict[str, Any], command: Command) -> ApiError:
    """409 with the lifecycle's own reason (domain/campaign) for a refused command."""
    decided = apply(CampaignStatus(row["status"]), command)
    reason = decided.reason if isinstance(decided, Refused) else "the campaign changed meanwhile"
    return ApiError(ErrorCode.CAMPAIGN_STATE_CONFLICT, reason, field="status")


def refuse_disabled(spec: CampaignIn, config: ApiConfig) -> None:
    """A campaign none of whose channels this deployment can send is refused at confirm; one
    with some disabled goes out, and the chain skips those (no_provider)."""
    wanted = chain(spec.mode)
    if not any(channel in config.channels for channel in wanted):
        raise ApiError(
            ErrorCode.CHANNEL_DISABLED,
            f"{', '.join(c.value for c in wanted)} "
            f"{'is' if len(wanted) == 1 else 'are'} not enabled in this deployment",
            field="sending_mode",
        )


async def _control(
    request: Request, pool: Pool, account: str, campaign_id: str, done: bool, command: Command
) -> dict[str, Any]:
    current = await existing(pool, account, campaign_id)
    if not done:
        raise conflict(current, command)
    return ok(request, campaign_out(current, config_of(request)))


@router.post("/{campaign_id}/pause", response_model=Envelope[Campaign])
async def pause_campaign(
    request: Request, campaign_id: str, account: Account, pool: Pool, body: PauseIn | None = None
) -> dict[str, Any]:
    await existing(pool, account, campaign_id)
    reason = body.reason if body is not None else None
    done = await drafts.pause(pool, account, campaign_id, reason)
    return await _control(request, pool, account, campaign_id, done, Command.PAUSE)


@router.post("/{campaign_id}/resume", response_model=Envelope[Campaign])
async def resume_campaign(
    request: Request, campaign_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    await existing(pool, account, campaign_id)
    done = await drafts.resume(pool, account, campaign_id)
    return await _control(request, pool, account, campaign_id, done, Command.RESUME)


@router.post("/{campaign_id}/cancel", response_model=Envelope[Campaign])
async def cancel_campaign(
    request: Request, campaign_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    """Final: every recipient not sent yet ends cancelled. A draft is deleted rather than
    cancelled."""
    await existing(pool, account, campaign_id)
    done = await drafts.cancel(pool, account, campaign_id)
    return await _control(request, pool, account, campaign_id, done, Command.CANCEL)


# A campaign's failed set changes until it ends.
_RETRYABLE_STATUSES = frozenset(ENDED)
_RETRY_SUFFIX = " (retry)"


def retry_spec(source: dict[str, Any], event: Mapping[str, Any]) -> dict[str, Any]:
    """A draft of the campaign as it was sent (the event's content, which needs no template
    lookups that may have changed since), addressed to its failed recipients."""
    name = source["name"] or source["id"]
    spec: dict[str, Any] = {
        "name": name[: 200 - len(_RETRY_SUFFIX)] + _RETRY_SUFFIX,
        "description": f"Failed recipients of campaign {source['id']}",
        "sending_mode": event["sending_mode"],
        "content": event["content"],
        "failed_of": source["id"],
        **{
            k: event[k]
            for k in (
                "variable_mappings",
                "recipient_variables",
                "batch_size",
                "batch_delay_ms",
                "fallback_window_s",
                "fallback",
            )
            if event.get(k)
        },
    }
    if event.get("variants"):
        spec["ab_test"] = {
            "variants": [
                {"name": v["name"], "weight": v["weight"], "content": v["content"]}
                for v in event["variants"]
            ]
        }
    return spec


@router.post("/{campaign_id}/retry-failed", status_code=201, response_model=Envelope[Campaign])
async def retry_failed(
    request: Request, campaign_id: str, account: Account, pool: Pool
) -> dict[str, Any]:
    """A new draft with this campaign's content whose audience is its failed recipients (as
    they are when the draft is sent). The campaign must have ended."""
    current = await existing(pool, account, campaign_id)
    if current["status"] not in _RETRYABLE_STATUSES:
        raise ApiError(
            ErrorCode.CAMPAIGN_STATE_CONFLICT,
            f"the campaign is {current['status']}; only an ended campaign can be retried",
            field="status",
        )
    event = await drafts.sent_event(pool, account, campaign_id)
    if not current["failed"] or event is None:
        raise ApiError(ErrorCode.NOTHING_TO_RETRY, field="failed")
    if await recipient_tables.archived_at(pool, campaign_id) is not None:
        raise ApiError(
            ErrorCode.RECIPIENTS_ARCHIVED,
            "the campaign's recipient rows were archived: its failed recipients are no "
            "longer known",
            field="campaign_id",
        )
    spec = parse_spec(retry_spec(current, event))
    new_id = str(uuid.uuid4())
    await drafts.insert(pool, account, new_id, _draft(spec))
    return ok(request, written(await existing(pool, account, new_id), config_of(request)))
