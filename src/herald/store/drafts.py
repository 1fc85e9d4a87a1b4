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


async def update(conn: Conn, account_id: str, campaign_id: str, d: Draft) -> bool:
    found = await conn.fetchval(sql("drafts", "update"), account_id, campaign_id, *_fields(d))
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
        sql("drafts", "list"),
        account_id,
        None if f.statuses is None else list(f.statuses),
        None if f.sending_modes is None else list(f.sending_modes),
        f.draft,
        f.programmed,
        f.ready_to_send,
        f.like,
        f.window_start,
        f.window_end,
        after[0],
        after[1],
        ascending,
        limit,
    )
    return [dict(r) for r in rows]


async def lists_owned(conn: Conn, account_id: str, list_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    rows = await conn.fetch(sql("drafts", "lists_owned"), account_id, list(list_ids))
    return {r["id"] for r in rows}


async def segment_rules(conn: Conn, account_id: str, segment_id: uuid.UUID) -> Any | None:
    return await conn.fetchval(sql("drafts", "segment_rules"), account_id, segment_id)


@dataclass(frozen=True, kw_only=True)
class Goal:
    recipients: int
    opted_out: int


async def goal(
    conn: Conn,
    account_id: str,
    *,
    contact_ids: Sequence[uuid.UUID],
    list_ids: Sequence[uuid.UUID],
    tags: Sequence[str],
    destinations: Sequence[str],
    channel: str,
    failed_of: str | None,
    segment: Compiled | None,
) -> Goal:
    """Counts what expansion would create; `segment` must be compiled from parameter $8."""
    query = sql("drafts", "goal").replace("{segment}", segment.sql if segment else "FALSE")
    query = query.replace("{address}", campaigns.address_key([channel]))
    row = await conn.fetchrow(
        query,
        account_id,
        list(contact_ids),
        list(list_ids),
        list(tags),
        [canonical(d) for d in destinations],
        channel,
        failed_of,
        *(segment.params if segment else ()),
    )
    assert row is not None
    return Goal(recipients=row["recipients"], opted_out=row["opted_out"])


async def save_goal(
    conn: Conn, account_id: str, campaign_id: str, recipients: int, cost: Decimal
) -> datetime | None:
    stamp: datetime | None = await conn.fetchval(
        sql("drafts", "save_goal"), account_id, campaign_id, recipients, cost
    )
    return stamp


async def confirm(
    conn: asyncpg.Connection,
    account_id: str,
    campaign_id: str,
    *,
    event: Mapping[str, Any],
    topic: str,
) -> datetime | None:
    """Marks the draft confirmed and writes the event to the outbox; call in a transaction."""
    stamp: datetime | None = await conn.fetchval(
        sql("drafts", "mark_confirmed"), account_id, campaign_id, dict(event)
    )
    if stamp is not None:
        await outbox.insert(conn, topic, account_id, event)
    return stamp


async def pause(pool: asyncpg.Pool, account_id: str, campaign_id: str, reason: str | None) -> bool:
    return await campaigns.set_status(
        pool, account_id, campaign_id, "paused", allowed_from=("sending",), pause_reason=reason
    )


async def resume(pool: asyncpg.Pool, account_id: str, campaign_id: str) -> bool:
    return await campaigns.set_status(
        pool, account_id, campaign_id, "sending", allowed_from=("paused",)
    )


_LIVE = ["scheduled", "sending", "paused"]


async def cancel(pool: asyncpg.Pool, account_id: str, campaign_id: str) -> bool:
    """Final. A confirmed draft the scheduler has not received yet gets its pipeline row here,
    already cancelled, so the scheduler's own insert of it does nothing."""
    cancelled = await pool.fetchval(sql("drafts", "cancel"), account_id, campaign_id, _LIVE)
    if cancelled is not None:
        return True
    return await campaigns.set_status(
        pool, account_id, campaign_id, "cancelled", allowed_from=tuple(_LIVE)
    )


async def recipients(
    pool: Conn, campaign_id: str, *, status: str | None, after_id: int, limit: int
) -> list[Row]:
    rows = await pool.fetch(sql("drafts", "recipients"), campaign_id, status, after_id, limit)
    return [dict(r) for r in rows]


async def sent_event(conn: Conn, account_id: str, campaign_id: str) -> Mapping[str, Any] | None:
    """The campaign.confirmed event the pipeline holds for the account's campaign."""
    event: Mapping[str, Any] | None = await conn.fetchval(
        sql("drafts", "sent_event"), account_id, campaign_id
    )
    return event


async def variant_counters(conn: Conn, campaign_id: str) -> dict[int, Row]:
    """Outcomes per A/B variant index, for a campaign the caller has checked is the account's."""
    rows = await conn.fetch(sql("drafts", "variant_counters"), campaign_id)
    return {r["variant"]: dict(r) for r in rows}


async def reschedule(
    conn: asyncpg.Connection, account_id: str, campaign_id: str, d: Draft, event: Mapping[str, Any]
) -> bool:
    """A confirmed campaign that has not started takes a changed draft and event; False once
    the scheduler has started it. In the caller's transaction, with the draft row locked."""
    written = await conn.fetchval(
        sql("drafts", "reschedule"),
        account_id,
        campaign_id,
        d.name,
        d.sending_mode,
        dict(event),
        d.scheduled_at,
        event["batch_size"],
        event["batch_delay_ms"],
        event["fallback_window_s"],
    )
    if written is None:
        return False
    await conn.execute(
        sql("drafts", "update_confirmed"), account_id, campaign_id, *_fields(d), dict(event)
    )
    return True


async def delete_scheduled(conn: asyncpg.Connection, account_id: str, campaign_id: str) -> bool:
    """Cancels a confirmed campaign that has not started and hides it; False once started.
    In the caller's transaction."""
    if await conn.fetchval(sql("drafts", "cancel"), account_id, campaign_id, ["scheduled"]) is None:
        return False
    return await conn.fetchval(sql("drafts", "mark_deleted"), account_id, campaign_id) is not None


async def database_now(conn: Conn) -> datetime:
    """PostgreSQL's clock, which the scheduler starts campaigns by; an API host's own clock
    may be off by hours."""
    now: datetime = await conn.fetchval(sql("drafts", "database_now"))
    return now
