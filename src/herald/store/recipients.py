"""Recipients: streamed in keyset chunks for sending, folded under row locks for status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from herald.domain.channels import Channel
from herald.domain.compose import RecipientRow
from herald.domain.status import STATUSES, RecipientState, new_tuple
from herald.store.queries import int_array, sql

RecipientKey = tuple[str, int]


async def queued_chunk(
    pool: asyncpg.Pool, campaign_id: str, after_id: int, last_id: int, limit: int
) -> list[RecipientRow]:
    rows = await pool.fetch(
        sql("recipients", "queued_chunk"), campaign_id, after_id, last_id, limit
    )
    return _rows(rows)


async def open_by_ids(
    pool: asyncpg.Pool, campaign_id: str, recipient_ids: Sequence[int]
) -> list[RecipientRow]:
    rows = await pool.fetch(sql("recipients", "open_by_ids"), campaign_id, list(recipient_ids))
    return _rows(rows)


def contact_fields(r: Mapping[str, Any]) -> dict[str, object]:
    """The fields a recipient's templates read: the contact's metadata, names, phone, email."""
    fields: dict[str, object] = dict(r["attributes"] or {})
    fields.update(
        first_name=r["first_name"], last_name=r["last_name"], phone=r["phone"], email=r["email"]
    )
    return fields


async def page(
    pool: asyncpg.Pool | asyncpg.Connection,
    campaign_id: str,
    *,
    status: str | None,
    after_id: int,
    limit: int,
) -> list[dict[str, Any]]:
    """One page of a campaign's recipients for the API, with the latest attempt and the
    contact fields (`fields`); only for a campaign the caller has checked is the account's."""
    rows = await pool.fetch(sql("recipients", "page"), campaign_id, status, after_id, limit)
    return [{**dict(r), "fields": contact_fields(r)} for r in rows]


async def count(
    pool: asyncpg.Pool | asyncpg.Connection, campaign_id: str, *, status: str, up_to: int
) -> int:
    """A campaign's recipients with `status`, counting up to `up_to`."""
    found: int = await pool.fetchval(sql("recipients", "count"), campaign_id, status, up_to)
    return found


def _rows(rows: Sequence[asyncpg.Record]) -> list[RecipientRow]:
    result = []
    for r in rows:
        fields = contact_fields(r)
        result.append(
            RecipientRow(
                id=r["id"],
                phone=r["phone"],
                email=r["email"],
                contact_id=r["contact_id"],
                fields=fields,
                opted_out=_channels(r["opted_out"]),
                variant=r["variant"],
                viber_user_id=r["viber_user_id"],
            )
        )
    return result


async def lock_states(
    conn: asyncpg.Connection, keys: Iterable[RecipientKey]
) -> tuple[dict[RecipientKey, RecipientState], dict[RecipientKey, int]]:
    """Locks the rows in key order (as every writer of them does) and returns their states,
    and the A/B variant of those that have one (none when no campaign has a test)."""
    # Ids in any order, repeats allowed: the index scan sorts and dedups an array's keys.
    by_campaign: dict[str, list[int]] = {}
    for campaign_id, recipient_id in keys:
        ids = by_campaign.get(campaign_id)
        if ids is None:
            by_campaign[campaign_id] = [recipient_id]
        else:
            ids.append(recipient_id)
    if not by_campaign:
        return {}, {}
    campaign_ids = sorted(by_campaign)
    rows = await conn.fetch(
        sql("recipients", "lock_states"),
        campaign_ids,
        [int_array(by_campaign[c]) for c in campaign_ids],
    )
    statuses = STATUSES
    # Positional reads and a named tuple per row: this runs once per folded recipient. Keys
    # hold the caller's campaign id strings (rows name their campaign by position).
    named = ("", *campaign_ids)
    states = {
        (named[r[0]], r[1]): new_tuple(RecipientState, (statuses[r[2]], r[3], r[4], r[5], r[6]))
        for r in rows
    }
    variants = {(named[r[0]], r[1]): r[7] for r in rows if r[7] is not None}
    return states, variants


async def write_states(
    conn: asyncpg.Connection, states: Sequence[tuple[RecipientKey, RecipientState]]
) -> None:
    """New states of locked rows, written as one group per (campaign, state): a fold moves
    thousands of recipients to a handful of states."""
    if not states:
        return
    groups: dict[tuple[str, RecipientState], list[int]] = {}
    for (campaign_id, recipient_id), state in states:
        group = groups.get((campaign_id, state))
        if group is None:
            groups[(campaign_id, state)] = [recipient_id]
        else:
            group.append(recipient_id)
    await conn.execute(
        sql("recipients", "write_states"),
        [c for c, _ in groups],
        [int_array(ids) for ids in groups.values()],
        [s.status.value for _, s in groups],
        [s.accepted for _, s in groups],
        [s.channel for _, s in groups],
        [s.error_code for _, s in groups],
        [s.error_description for _, s in groups],
    )


async def set_fallback_due(conn: asyncpg.Connection, due: Sequence[tuple[str, int, int]]) -> None:
    """(campaign id, recipient id, attempt to resume at), in the fold transaction."""
    if due:
        await conn.execute(
            sql("recipients", "set_fallback_due"),
            [d[0] for d in due],
            [d[1] for d in due],
            [d[2] for d in due],
        )


@dataclass(frozen=True, kw_only=True)
class FallbackDue:
    campaign_id: str
    account_id: str
    recipient_id: int
    next_attempt: int


async def claim_fallback_due(conn: asyncpg.Connection, limit: int) -> list[FallbackDue]:
    rows = await conn.fetch(sql("recipients", "fallback_due"), limit)
    return [
        FallbackDue(
            campaign_id=r["campaign_id"],
            account_id=r["account_id"],
            recipient_id=r["id"],
            next_attempt=r["next_attempt"],
        )
        for r in rows
    ]


async def mark_fallback_published(conn: asyncpg.Connection, due: Sequence[FallbackDue]) -> None:
    await conn.execute(
        sql("recipients", "mark_fallback_published"),
        [d.campaign_id for d in due],
        [d.recipient_id for d in due],
    )


async def republish_fallback(
    pool: asyncpg.Pool, campaign_id: str, recipient_ids: Sequence[int]
) -> None:
    if recipient_ids:
        await pool.execute(
            sql("recipients", "republish_fallback"), campaign_id, list(recipient_ids)
        )


async def hold(
    pool: asyncpg.Pool, campaign_id: str, held: Sequence[tuple[int, int, datetime]]
) -> None:
    """(recipient id, attempt to resume at, until when)."""
    if held:
        await pool.execute(
            sql("recipients", "hold"),
            campaign_id,
            [h[0] for h in held],
            [h[1] for h in held],
            [h[2] for h in held],
        )


def _channels(names: Sequence[str] | None) -> frozenset[Channel]:
    known = {c.value for c in Channel}
    return frozenset(Channel(n) for n in names or () if n in known)
