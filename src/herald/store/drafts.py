"""Campaigns as the API keeps them: drafts until confirmed, then the pipeline's progress.

Reads go through the campaign_overview view, which joins a draft with the pipeline's
`campaigns` row and also shows campaigns other upstream APIs confirmed. Confirming writes
campaign.confirmed to the outbox in the same transaction that marks the draft confirmed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg

from herald.domain.campaign import CampaignStatus, Command, Transition, apply
from herald.domain.events import parse_campaign_confirmed
from herald.domain.phone import canonical
from herald.domain.segments import Compiled
from herald.store import campaigns, outbox
from herald.store.queries import sql

Row = dict[str, Any]
Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True, kw_only=True)
class Filters:
    statuses: Sequence[str] | None = None
    sending_modes: Sequence[str] | None = None
    draft: bool | None = None
    programmed: bool | None = None
    ready_to_send: bool | None = None
    like: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Draft:
    name: str
    description: str
    sending_mode: str
    spec: Mapping[str, Any]
    scheduled_at: datetime | None
    ready_to_send: bool


def _fields(d: Draft) -> tuple[Any, ...]:
    """A draft's columns in the order insert, update and update_confirmed take them."""
    return (d.name, d.description, d.sending_mode, dict(d.spec), d.scheduled_at, d.ready_to_send)


async def insert(pool: Conn, account_id: str, campaign_id: str, d: Draft) -> None:
    await pool.execute(sql("drafts", "insert"), campaign_id, account_id, *_fields(d))


async def get(pool: Conn, account_id: str, campaign_id: str) -> Row | None:
    row = await pool.fetchrow(sql("drafts", "get"), account_id, campaign_id)
    return None if row is None else dict(row)


async def lock_draft(conn: asyncpg.Connection, account_id: str, campaign_id: str) -> Row | None:
    row = await conn.fetchrow(sql("drafts", "lock_draft"), account_id, campaign_id)
    return None if row is None else dict(row)


async def update(
    conn: Conn, account_id: str, campaign_id: str, d: Draft, *, keep_goal: bool = False
) -> bool:
    """False when it is no longer a draft. The goal is cleared unless `keep_goal`."""
    found = await conn.fetchval(
        sql("drafts", "update"), account_id, campaign_id, *_fields(d), keep_goal
    )
    return found is not None


async def delete(pool: Conn, account_id: str, campaign_id: str) -> bool:
    return await pool.fetchval(sql("drafts", "delete"), account_id, campaign_id) is not None


async def page(
    pool: Conn,
    account_id: str,
    f: Filters,
    *,
    after: tuple[datetime | None, str | None],
    ascending: bool,
    limit: int,
) -> list[Row]:
    rows = await pool.fetch(
        _filtered("list"), *_filter_params(account_id, f), after[0], after[1], ascending, limit
    )
    return [dict(r) for r in rows]


async def count(pool: Conn, account_id: str, f: Filters, *, up_to: int) -> int:
    """How many campaigns the filters keep, counted up to `up_to` (a list's meta.total)."""
    n: int = await pool.fetchval(_filtered("count"), *_filter_params(account_id, f), up_to)
    return n


def _filtered(block: str) -> str:
    return sql("drafts", block).replace("{filters}", sql("drafts", "filters"))


def _filter_params(account_id: str, f: Filters) -> tuple[Any, ...]:
    """$1-$9 of the `filters` block."""
    return (
        account_id,
        None if f.statuses is None else list(f.statuses),
        None if f.sending_modes is None else list(f.sending_modes),
        f.draft,
        f.programmed,
        f.ready_to_send,
        f.like,
        f.window_start,
        f.window_end,
    )


async def lists_owned(conn: Conn, account_id: str, list_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    rows = await conn.fetch(sql("drafts", "lists_owned"), account_id, list(list_ids))
    return {r["id"] for r in rows}


async def provider_accounts_owned(
    conn: Conn, account_id: str, ids: Sequence[uuid.UUID]
) -> dict[str, str]:
    """Of `ids`, the account's own enabled provider accounts: id to channel."""
    rows = await conn.fetch(sql("drafts", "provider_accounts_owned"), account_id, list(ids))
    return {r["id"]: r["channel"] for r in rows}


async def segment_rules(conn: Conn, account_id: str, segment_id: uuid.UUID) -> Any | None:
    return await conn.fetchval(sql("drafts", "segment_rules"), account_id, segment_id)


@dataclass(frozen=True, kw_only=True)
class Goal:
    audience: int  # the rows expansion would create
    recipients: int  # of those, the ones some channel can reach (the others are skipped)
    opted_out: int  # audience rows opted out of the first channel
    first: Mapping[str, int]  # per channel: recipients whose first sendable channel it is
    reachable: Mapping[str, int]  # per channel: recipients it can reach (fallback included)


async def goal(
    conn: Conn,
    account_id: str,
    *,
    contact_ids: Sequence[uuid.UUID],
    list_ids: Sequence[uuid.UUID],
    tags: Sequence[str],
    destinations: Sequence[str],
    channels: Sequence[str],
    address_channels: Sequence[str],
    failed_of: str | None,
    segment: Compiled | None,
) -> Goal:
    """Counts what expansion would create (the same audience query, deduplicated on
    `address_channels`, the whole chain) and who of it `channels` (the chain's sendable
    channels, in order) can reach; `segment` must be compiled from parameter $8."""
    no_segment = Compiled(sql="FALSE", params=())
    query = campaigns.audience_query(
        sql("drafts", "goal"), list(address_channels), segment or no_segment
    )
    row = await conn.fetchrow(
        query,
        account_id,
        [str(c) for c in contact_ids],
        [str(i) for i in list_ids],
        list(tags),
        [canonical(d) for d in destinations],
        failed_of,
        list(channels),
        *(segment.params if segment else ()),
    )
    assert row is not None
    return Goal(
        audience=row["audience"],
        recipients=row["recipients"],
        opted_out=row["opted_out"],
        first=dict(zip(channels, row["first"] or [], strict=True)),
        reachable=dict(zip(channels, row["reachable"] or [], strict=True)),
    )


async def save_goal(
    conn: Conn, account_id: str, campaign_id: str, recipients: int, cost: Decimal
) -> datetime | None:
    stamp: datetime | None = await conn.fetchval(
        sql("drafts", "save_goal"), account_id, campaign_id, recipients, cost
    )
    return stamp


@dataclass(frozen=True)
class Confirmed:
    confirmed_at: datetime
    status: CampaignStatus  # sending (it starts now) or scheduled


async def confirm(
    conn: asyncpg.Connection,
    account_id: str,
    campaign_id: str,
    *,
    event: Mapping[str, Any],
    topic: str,
) -> Confirmed | None:
    """Marks the draft confirmed, creates its pipeline row (sending when it has no time or
    its time has come, so pause, resume and cancel work from this moment) and writes the
    event to the outbox (the scheduler's receipt of it is then a replay that wakes it). None
    when it is no longer a draft or its id is taken. Call in a transaction."""
    stamp: datetime | None = await conn.fetchval(
        sql("drafts", "mark_confirmed"), account_id, campaign_id, dict(event)
    )
    if stamp is None:
        return None
    parsed = parse_campaign_confirmed(event)
    due = parsed.scheduled_at is None or parsed.scheduled_at <= await database_now(conn)
    decided = apply(CampaignStatus.DRAFT, Command.CONFIRM if due else Command.SCHEDULE)
    assert isinstance(decided, Transition)
    if not await campaigns.insert(conn, parsed, event, status=decided.to):
        return None
    await outbox.insert(conn, topic, account_id, event)
    return Confirmed(confirmed_at=stamp, status=decided.to)


async def pause(pool: asyncpg.Pool, account_id: str, campaign_id: str, reason: str | None) -> bool:
    moved = await campaigns.transition(
        pool, Command.PAUSE, [campaign_id], account_id=account_id, pause_reason=reason
    )
    return bool(moved)


async def resume(pool: asyncpg.Pool, account_id: str, campaign_id: str) -> bool:
    return await campaigns.resume(pool, account_id, campaign_id)


async def start_now(pool: asyncpg.Pool, account_id: str, campaign_id: str) -> bool:
    """A scheduled campaign sent now: it starts at once instead of at its time."""
    return bool(
        await campaigns.transition(pool, Command.START, [campaign_id], account_id=account_id)
    )


async def cancel(pool: asyncpg.Pool, account_id: str, campaign_id: str) -> bool:
    """Final. A confirmed draft without its pipeline row yet (its event still on the way) gets
    one here, already cancelled, so the scheduler's own insert of it does nothing. Recipients
    nobody holds are marked cancelled at once (campaigns.cancel_unsent)."""
    if not await campaigns.insert_cancelled(pool, account_id, campaign_id) and not (
        await campaigns.transition(pool, Command.CANCEL, [campaign_id], account_id=account_id)
    ):
        return False
    await campaigns.cancel_unsent(pool, campaign_id)
    return True


async def sent_event(conn: Conn, account_id: str, campaign_id: str) -> Mapping[str, Any] | None:
    """The campaign.confirmed event the pipeline holds for the account's campaign."""
    event: Mapping[str, Any] | None = await conn.fetchval(
        sql("drafts", "sent_event"), account_id, campaign_id
    )
    return event


async def variant_counters(conn: Conn, campaign_id: str) -> dict[int, Row]:
    """Outcomes per A/B variant index, for a campaign the caller has checked is the account's
    (the kept counters: a few rows)."""
    rows = await conn.fetch(sql("drafts", "variant_counters"), campaign_id)
    return {r["variant"]: dict(r) for r in rows}


async def variant_recount(conn: Conn, campaign_id: str) -> dict[int, Row]:
    """variant_counters recounted from the recipient rows: what they must equal."""
    rows = await conn.fetch(sql("drafts", "variant_recount"), campaign_id)
    return {r["variant"]: dict(r) for r in rows}


async def reschedule(
    conn: asyncpg.Connection, account_id: str, campaign_id: str, d: Draft, event: Mapping[str, Any]
) -> bool:
    """A confirmed campaign that has not started takes a changed draft and event; False once
    the scheduler has started it. In the caller's transaction, with the draft row locked."""
    if not await campaigns.rewrite_scheduled(conn, account_id, campaign_id, d.name, event):
        return False
    await conn.execute(
        sql("drafts", "update_confirmed"), account_id, campaign_id, *_fields(d), dict(event)
    )
    return True


async def delete_scheduled(conn: asyncpg.Connection, account_id: str, campaign_id: str) -> bool:
    """Cancels a confirmed campaign that has not started and hides it; False once started.
    In the caller's transaction."""
    if not await campaigns.insert_cancelled(conn, account_id, campaign_id) and not (
        await campaigns.transition(conn, Command.DELETE, [campaign_id], account_id=account_id)
    ):
        return False
    return await conn.fetchval(sql("drafts", "mark_deleted"), account_id, campaign_id) is not None


async def database_now(conn: Conn) -> datetime:
    """PostgreSQL's clock, which the scheduler starts campaigns by; an API host's own clock
    may be off by hours."""
    now: datetime = await conn.fetchval(sql("drafts", "database_now"))
    return now
