"""Campaigns: dedup on receipt, set-based audience expansion, batches, exact counters, and
the one writer of a campaign's status (`transition`, guarded by domain/campaign's table)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg

from herald.domain.campaign import ENDED, CampaignStatus, Command, ending, move
from herald.domain.channels import Channel
from herald.domain.events import (
    CampaignConfirmed,
    parse_campaign_confirmed,
    variant_sizes,
    variant_starts,
)
from herald.domain.phone import canonical
from herald.domain.segments import Compiled
from herald.domain.status import CounterDelta
from herald.domain.work import BatchItem
from herald.store import attempts, recipient_tables, segments
from herald.store.queries import sql


@dataclass(frozen=True, kw_only=True)
class Counters:
    campaign_id: str
    status: str
    total: int
    sent: int
    delivered: int
    read: int
    failed: int
    skipped: int
    cancelled: int
    final: int


async def insert(
    pool: asyncpg.Pool | asyncpg.Connection,
    event: CampaignConfirmed,
    raw: Mapping[str, Any],
    *,
    status: CampaignStatus = CampaignStatus.SCHEDULED,
) -> bool:
    """False when the campaign id was seen before (campaign.confirmed is deduplicated).
    `status` is sending for a campaign the API starts at once (domain/campaign CONFIRM)."""
    if status not in (CampaignStatus.SCHEDULED, CampaignStatus.SENDING):
        raise ValueError(f"a campaign starts scheduled or sending, not {status}")
    inserted = await pool.fetchval(
        sql("campaigns", "insert"),
        event.campaign_id,
        event.account_id,
        event.name,
        event.sending_mode.value,
        dict(raw),
        event.scheduled_at,
        event.batch_size,
        event.batch_delay_ms,
        event.fallback_window_s,
        status.value,
    )
    return inserted is not None


class Admission(StrEnum):
    """What became of an upstream campaign.confirmed."""

    INSERTED = "inserted"
    REPLAY = "replay"  # the same account's campaign: deduplicated
    ID_TAKEN = "campaign_id_taken"  # another account holds the id (a campaign or a draft)
    UNKNOWN_ACCOUNT = "unknown_account"


async def admit(
    pool: asyncpg.Pool,
    event: CampaignConfirmed,
    raw: Mapping[str, Any],
    *,
    create_accounts: bool,
) -> Admission:
    """Inserts the event's campaign unless its account is unknown (and may not be created on
    first sight) or its id belongs to another account: campaign identity is (account, id)."""
    async with pool.acquire() as conn, conn.transaction():
        if create_accounts:
            await conn.execute(sql("campaigns", "create_account"), event.account_id)
        elif not await conn.fetchval(sql("campaigns", "account_known"), event.account_id):
            return Admission.UNKNOWN_ACCOUNT
        owner = await conn.fetchval(sql("campaigns", "id_owner"), event.campaign_id)
        if owner is not None and owner != event.account_id:
            return Admission.ID_TAKEN
        if await insert(conn, event, raw):
            return Admission.INSERTED
        # Inserted meanwhile: by the same account (a replay) or, racing, by another.
        owner = await conn.fetchval(sql("campaigns", "id_owner"), event.campaign_id)
        return Admission.REPLAY if owner == event.account_id else Admission.ID_TAKEN


async def get(conn: asyncpg.Pool | asyncpg.Connection, campaign_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(sql("campaigns", "get"), campaign_id)
    return row


async def claim_due(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """A campaign to expand: started (sending) or scheduled and due. Must run inside a
    transaction; the row stays locked until it ends."""
    row: asyncpg.Record | None = await conn.fetchrow(
        sql("campaigns", "claim_due"),
        [s.value for s in move(Command.START)[0]],
        [s.value for s in move(Command.EXPAND)[0]],
    )
    return row


def address_key(channels: Sequence[str]) -> str:
    """The SQL expression over `contacts c` a campaign's audience is deduplicated on: one
    recipient per phone number, or per lower-cased email for an email-only chain. A value
    that is no address at all (NULL, a malformed number) keeps each contact apart: each is
    skipped at send with its own reason."""
    if channels and all(str(c) == Channel.EMAIL.value for c in channels):
        return "(CASE WHEN c.email LIKE '%_@_%' THEN lower(c.email) END)"
    # E.164 shape, `c.phone ~ '^\\+[0-9]{7,15}$'` without a regular expression: half the
    # cost per row, which counts for millions of rows.
    return (
        "(CASE WHEN length(c.phone) BETWEEN 8 AND 16 AND left(c.phone, 1) = '+' "
        "AND ltrim(substr(c.phone, 2), '0123456789') = '' THEN c.phone END)"
    )


def audience_query(query: str, channels: Sequence[str], segment: Compiled) -> str:
    """`query` (a block with {audience}) over the campaign's audience (queries/campaigns.sql
    `audience`, parameters $1-$6), deduplicated on the channels' address, with the segment's
    condition compiled after the caller's own parameters."""
    audience = sql("campaigns", "audience").replace("{segment_condition}", segment.sql)
    return query.replace("{audience}", audience.replace("{address}", address_key(channels)))


def audience_params(account_id: str, audience: Any) -> list[Any]:
    """$1-$6 of the audience block for an event's or a draft's audience."""
    return [
        account_id,
        list(_uuids(audience.contact_ids)),
        list(_uuids(audience.list_ids)),
        list(audience.tags),
        [canonical(d) for d in audience.destinations],
        audience.failed_of,
    ]


async def expand(
    conn: asyncpg.Connection,
    event: CampaignConfirmed,
    *,
    parts: int = 1,
    partition_from: int = recipient_tables.PARTITION_FROM,
) -> int:
    """Recipient rows and batches for the whole audience, in the caller's transaction; a
    scheduled campaign is started, and one with nobody to send to ends at once. Each
    batch_size range becomes `parts` batches (the account's sub-keys, domain/work.py). The
    rows are loaded into a table of their own, which becomes the campaign's partition of
    recipients when they are at least `partition_from`, else joins the shared DEFAULT
    partition."""
    audience = event.audience
    segment = Compiled(sql="FALSE", params=())
    if audience.segment_id:
        segment = await segments.audience_condition(
            conn, event.account_id, audience.segment_id, first_param=9
        )
    await conn.execute(sql("campaigns", "expansion_memory"))
    table = await recipient_tables.stage(conn, event.campaign_id)
    query = audience_query(sql("campaigns", "expand_recipients"), event.channels, segment)
    status = await conn.execute(
        query.replace("{table}", table),
        *audience_params(event.account_id, audience),
        event.campaign_id,
        variant_starts(event.variants),
        *segment.params,
    )
    total = int(status.split()[-1])
    starts = variant_starts(event.variants)
    if starts is not None:
        # Ids are dense from 1 and a recipient's variant follows from its id, so the insert's
        # row count gives each variant's size exactly, without reading the rows back.
        await conn.execute(
            sql("campaigns", "insert_variant_counters"),
            event.campaign_id,
            list(range(len(starts))),
            variant_sizes(total, starts),
        )
    if total:
        await conn.execute(
            sql("campaigns", "insert_batches"),
            event.campaign_id,
            event.batch_size,
            total,
            event.batch_delay_ms,
            parts,
        )
    await transition(conn, Command.START, [event.campaign_id])
    await conn.execute(sql("campaigns", "mark_expanded"), event.campaign_id, total)
    if not total:
        await finish(conn, [event.campaign_id])
    # Last: attaching locks the DEFAULT partition until this transaction commits.
    await recipient_tables.place(conn, event.campaign_id, own_partition=total >= partition_from)
    return total


def _uuids(values: Sequence[str]) -> list[str]:
    # Ids that are not UUIDs cannot name a contact or list; they match nothing.
    found = []
    for value in values:
        try:
            found.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    return found


async def due_batches(conn: asyncpg.Connection, limit: int) -> list[BatchItem]:
    rows = await conn.fetch(sql("campaigns", "due_batches"), limit)
    return [
        BatchItem(
            campaign_id=r["campaign_id"],
            account_id=r["account_id"],
            batch_no=r["batch_no"],
            first_id=r["first_id"],
            last_id=r["last_id"],
        )
        for r in rows
    ]


async def mark_published(conn: asyncpg.Connection, campaign_id: str, batch_nos: list[int]) -> None:
    await conn.execute(sql("campaigns", "mark_published"), campaign_id, batch_nos)


async def mark_batch_done(pool: asyncpg.Pool, campaign_id: str, batch_no: int) -> None:
    await pool.execute(sql("campaigns", "mark_batch_done"), campaign_id, batch_no)


async def counters(pool: asyncpg.Pool, campaign_id: str) -> Counters | None:
    row = await get(pool, campaign_id)
    if row is None:
        return None
    return Counters(
        campaign_id=campaign_id,
        status=row["status"],
        total=row["total_recipients"],
        sent=row["sent"],
        delivered=row["delivered"],
        read=row["read"],
        failed=row["failed"],
        skipped=row["skipped"],
        cancelled=row["cancelled"],
        final=row["final"],
    )


async def recount(pool: asyncpg.Pool, campaign_id: str) -> dict[str, int]:
    row = await pool.fetchrow(sql("campaigns", "recount"), campaign_id)
    assert row is not None
    return dict(row)


async def channel_counters(pool: asyncpg.Pool, campaign_id: str) -> dict[str, dict[str, int]]:
    rows = await pool.fetch(sql("campaigns", "channel_counters"), campaign_id)
    return {
        r["channel"]: {"sent": r["sent"], "delivered": r["delivered"], "failed": r["failed"]}
        for r in rows
    }


_COUNTER_FIELDS = ("sent", "delivered", "read", "failed", "skipped", "cancelled", "final")
_CHANNEL_FIELDS = ("sent", "delivered", "read", "failed")


async def apply_counters(conn: asyncpg.Connection, deltas: Mapping[str, CounterDelta]) -> None:
    touched = [cid for cid, d in deltas.items() if not d.is_zero]
    if touched:
        await conn.execute(
            sql("campaigns", "apply_counters"),
            touched,
            *[[getattr(deltas[c], f) for c in touched] for f in _COUNTER_FIELDS],
        )


async def apply_variant_counters(
    conn: asyncpg.Connection, deltas: Mapping[tuple[str, int], CounterDelta]
) -> None:
    """(campaign id, variant) -> delta, in the fold transaction after apply_counters."""
    keys = sorted(k for k, d in deltas.items() if not d.is_zero)
    if keys:
        await conn.execute(
            sql("campaigns", "apply_variant_counters"),
            [k[0] for k in keys],
            [k[1] for k in keys],
            *[[getattr(deltas[k], f) for k in keys] for f in _COUNTER_FIELDS],
        )


async def apply_channel_counters(
    conn: asyncpg.Connection, deltas: Mapping[tuple[str, str], CounterDelta]
) -> None:
    keys = [k for k, d in deltas.items() if not d.is_zero]
    if keys:
        await conn.execute(
            sql("campaigns", "apply_channel_counters"),
            [k[0] for k in keys],
            [k[1] for k in keys],
            *[[getattr(deltas[k], f) for k in keys] for f in _CHANNEL_FIELDS],
        )


async def finish(conn: asyncpg.Connection, campaign_ids: Sequence[str]) -> dict[str, str]:
    """Ends every campaign of `campaign_ids` whose recipients are all final (completed or
    failed, domain/campaign.ending); in the caller's transaction. Campaign id -> its end."""
    rows = await conn.fetch(
        sql("campaigns", "finishing"),
        list(campaign_ids),
        [s.value for s in {*move(Command.COMPLETE)[0], *move(Command.FAIL)[0]}],
    )
    by_command: dict[Command, list[str]] = {}
    for r in rows:
        command = ending(
            total=r["total_recipients"], final=r["final"], accepted=r["sent"], failed=r["failed"]
        )
        if command is not None:
            by_command.setdefault(command, []).append(r["id"])
    ended: dict[str, str] = {}
    for command, ids in by_command.items():
        for cid in await transition(conn, command, ids):
            ended[cid] = move(command)[1].value
    return ended


async def sending_modes(
    conn: asyncpg.Connection, campaign_ids: Sequence[str]
) -> dict[str, tuple[str, frozenset[str]]]:
    """Campaign id -> (sending mode, the channels whose chain ends once a provider took the
    message: fallback steps with success accepted or sent)."""
    rows = await conn.fetch(sql("campaigns", "sending_modes"), list(campaign_ids))
    return {r["id"]: (r["sending_mode"], frozenset(r["stop_on_acceptance"])) for r in rows}


async def archive_recipients(pool: asyncpg.Pool, ended_before: datetime) -> tuple[str, str] | None:
    """Moves the recipient rows of one campaign that ended before `ended_before` into the
    archive schema (store/recipient_tables), its attempt rows with them (store/attempts):
    (campaign id, the recipients' archive table), None when none is due. A live campaign's
    rows are never moved. One whose rows cannot be locked within the lock timeout raises and
    stays due."""
    async with pool.acquire() as conn, conn.transaction():
        campaign_id = await recipient_tables.claim_archivable(
            conn, ended_before, [s.value for s in ENDED]
        )
        if campaign_id is None:
            return None
        table = await recipient_tables.archive(conn, campaign_id)
        await attempts.archive(conn, campaign_id)
        await conn.execute(sql("campaigns", "mark_recipients_archived"), campaign_id)
        return campaign_id, table


async def status_of(pool: asyncpg.Pool, campaign_id: str) -> str | None:
    status: str | None = await pool.fetchval(sql("campaigns", "status_of"), campaign_id)
    return status


async def transition(
    conn: asyncpg.Pool | asyncpg.Connection,
    command: Command,
    campaign_ids: Sequence[str],
    *,
    account_id: str | None = None,
    pause_reason: str | None = None,
) -> list[str]:
    """The one writer of a campaign's status: moves each of `campaign_ids` (of `account_id`,
    when given) that is in a status `command` is allowed from (domain/campaign's table) to
    where it leads. Returns the ids it moved."""
    sources, to = move(command)
    rows = await conn.fetch(
        sql("campaigns", "transition"),
        list(campaign_ids),
        account_id,
        to.value,
        [s.value for s in sources],
        pause_reason,
    )
    return [r["id"] for r in rows]


async def insert_cancelled(
    conn: asyncpg.Pool | asyncpg.Connection, account_id: str, campaign_id: str
) -> bool:
    """A confirmed draft of the account without its pipeline row (its event still on the way)
    gets one, already cancelled, so the scheduler's own insert of it does nothing. False when
    the row exists: `transition` moves that one."""
    inserted = await conn.fetchval(sql("campaigns", "insert_cancelled"), account_id, campaign_id)
    return inserted is not None


async def rewrite_scheduled(
    conn: asyncpg.Connection,
    account_id: str,
    campaign_id: str,
    name: str,
    event: Mapping[str, Any],
) -> bool:
    """A scheduled campaign that has not started takes its changed event (the row is created
    if its first event is still on the way); False once the scheduler has started it."""
    parsed = parse_campaign_confirmed(event)
    written = await conn.fetchval(
        sql("campaigns", "rewrite_scheduled"),
        account_id,
        campaign_id,
        name,
        parsed.sending_mode.value,
        dict(event),
        parsed.scheduled_at,
        parsed.batch_size,
        parsed.batch_delay_ms,
        parsed.fallback_window_s,
        [s.value for s in move(Command.RESCHEDULE)[0]],
    )
    return written is not None


async def resume(pool: asyncpg.Pool, account_id: str, campaign_id: str) -> bool:
    """Paused -> sending; one whose recipients are all final meanwhile ends at once."""
    async with pool.acquire() as conn, conn.transaction():
        if not await transition(conn, Command.RESUME, [campaign_id], account_id=account_id):
            return False
        await finish(conn, [campaign_id])
    return True


async def cancel_unsent(pool: asyncpg.Pool, campaign_id: str) -> int:
    """Marks a cancelled campaign's recipients in batches not yet due cancelled at once (with
    their counters); those a worker may hold it cancels itself. The number marked."""
    row = await pool.fetchrow(sql("campaigns", "cancel_unsent"), campaign_id)
    return 0 if row is None else int(row["cancelled"])


async def count_by_status(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch(sql("campaigns", "count_by_status"))
    return {r["status"]: r["campaigns"] for r in rows}


async def sending_progress(pool: asyncpg.Pool) -> dict[str, tuple[int, float]]:
    rows = await pool.fetch(sql("campaigns", "sending_progress"))
    return {r["id"]: (int(r["counters"]), float(r["quiet_s"])) for r in rows}
