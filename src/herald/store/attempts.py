"""Send attempts: recorded before the provider call, so no channel is ever sent twice."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple

import asyncpg

from herald.domain.status import STATUSES, RecipientState, new_tuple
from herald.store.queries import int_array, json_rows, sql

AttemptKey = tuple[str, int, int]


@dataclass(frozen=True, kw_only=True)
class Recorded:
    recipient_id: int
    attempt_no: int
    outcome: str  # pending, accepted, rejected, ambiguous
    provider_message_id: str | None
    error_code: str | None
    error_description: str | None
    sends: int


@dataclass(frozen=True, kw_only=True)
class Result:
    recipient_id: int
    attempt_no: int
    provider: str
    outcome: str
    provider_message_id: str | None
    error_code: str | None
    error_description: str | None


async def insert_pending(
    pool: asyncpg.Pool,
    campaign_id: str,
    recipient_ids: Sequence[int],
    attempt_nos: Sequence[int],
    channel: str,
    provider: str,
) -> set[int]:
    """Recipient ids whose attempt row this call created (the others existed already).

    A later attempt of the chain (fallback work) also moves its recipient row to this channel,
    so the row names the attempt in flight, not the channel that failed. First attempts leave
    the row alone (the fold names their channel): an expansion's worth of writes saved."""
    args = (campaign_id, list(recipient_ids), list(attempt_nos), channel, provider)
    later = sorted(r for r, a in zip(recipient_ids, attempt_nos, strict=True) if a > 1)
    if not later:
        # The hot path (first attempts): one statement, no transaction round trips.
        rows = await pool.fetch(sql("attempts", "insert_pending"), *args)
        return {r["recipient_id"] for r in rows}
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(sql("attempts", "insert_pending"), *args)
        await conn.execute(sql("attempts", "follow_chain"), campaign_id, later, channel)
    return {r["recipient_id"] for r in rows}


async def existing(
    pool: asyncpg.Pool, campaign_id: str, recipient_ids: Sequence[int], channel: str
) -> list[Recorded]:
    rows = await pool.fetch(sql("attempts", "existing"), campaign_id, list(recipient_ids), channel)
    return [Recorded(**dict(r)) for r in rows]


async def claim_resend(
    pool: asyncpg.Pool, campaign_id: str, recipient_ids: Sequence[int], channel: str
) -> set[int]:
    rows = await pool.fetch(
        sql("attempts", "claim_resend"), campaign_id, list(recipient_ids), channel
    )
    return {r["recipient_id"] for r in rows}


async def record_results(pool: asyncpg.Pool, campaign_id: str, results: Sequence[Result]) -> None:
    if not results:
        return
    await pool.execute(
        sql("attempts", "record_results"),
        campaign_id,
        [r.recipient_id for r in results],
        [r.attempt_no for r in results],
        [r.provider for r in results],
        [r.outcome for r in results],
        [r.provider_message_id for r in results],
        [r.error_code for r in results],
        [r.error_description for r in results],
    )


class LockedAttempt(NamedTuple):
    state: RecipientState
    created_at: datetime
    # The row has the provider's message id already (the worker recorded the send's answer).
    has_message_id: bool = True


async def lock_states(
    conn: asyncpg.Connection, keys: Iterable[AttemptKey]
) -> dict[AttemptKey, LockedAttempt]:
    """Locks the rows, one (campaign, attempt number) group at a time in recipient order (as
    record_results locks an attempt number's rows), and returns their states."""
    # Ids in any order, repeats allowed: the index scan sorts and dedups an array's keys.
    groups: dict[tuple[str, int], list[int]] = {}
    for campaign_id, recipient_id, attempt_no in keys:
        ids = groups.get((campaign_id, attempt_no))
        if ids is None:
            groups[(campaign_id, attempt_no)] = [recipient_id]
        else:
            ids.append(recipient_id)
    if not groups:
        return {}
    order = sorted(groups)
    rows = await conn.fetch(
        sql("attempts", "lock_states"),
        [g[0] for g in order],
        [g[1] for g in order],
        [int_array(groups[g]) for g in order],
    )
    statuses = STATUSES
    # Positional reads and named tuples: this runs once per folded attempt. Keys hold the
    # caller's campaign id strings (rows name their group by position).
    named = (("", 0), *order)
    return {
        (named[r[0]][0], r[1], named[r[0]][1]): new_tuple(
            LockedAttempt,
            (new_tuple(RecipientState, (statuses[r[2]], r[3], r[4], r[5], r[6])), r[7], r[8]),
        )
        for r in rows
    }


async def write_states(
    conn: asyncpg.Connection,
    states: Sequence[tuple[AttemptKey, RecipientState, str | None]],
) -> None:
    """(key, folded state, provider message id to record: None when the row has one). Rows
    that keep their message id are written as one group per (campaign, attempt number,
    state); the few that take one from a callback, one by one."""
    if not states:
        return
    groups: dict[tuple[str, int, RecipientState], list[int]] = {}
    with_id = []
    for key, state, message_id in states:
        if message_id is not None:
            with_id.append((*key, state[0], state[1], message_id, state[3], state[4]))
            continue
        gkey = (key[0], key[2], state)
        group = groups.get(gkey)
        if group is None:
            groups[gkey] = [key[1]]
        else:
            group.append(key[1])
    if groups:
        await conn.execute(
            sql("attempts", "write_states"),
            [g[0] for g in groups],
            [g[1] for g in groups],
            [int_array(ids) for ids in groups.values()],
            [g[2].status.value for g in groups],
            [g[2].accepted for g in groups],
            [g[2].error_code for g in groups],
            [g[2].error_description for g in groups],
        )
    if with_id:
        await conn.execute(sql("attempts", "write_states_with_message_id"), json_rows(with_id))


@dataclass(frozen=True, kw_only=True)
class Located:
    campaign_id: str
    recipient_id: int
    attempt_no: int
    channel: str


async def resolve(
    conn: asyncpg.Connection, provider_message_ids: Sequence[str]
) -> dict[str, Located]:
    rows = await conn.fetch(sql("attempts", "resolve"), list(provider_message_ids))
    return {
        r["provider_message_id"]: Located(
            campaign_id=r["campaign_id"],
            recipient_id=r["recipient_id"],
            attempt_no=r["attempt_no"],
            channel=r["channel"],
        )
        for r in rows
    }


@dataclass(frozen=True, kw_only=True)
class Waiting:
    """An accepted attempt past its step's window. chain_length is where the chain ends for
    it: its own attempt number when its step's success is accepted or sent."""

    campaign_id: str
    recipient_id: int
    attempt_no: int
    channel: str
    provider: str
    phone: str | None
    chain_length: int
    revoked: bool = False  # a revoke of its message won already: the failure is owed

    @property
    def key(self) -> AttemptKey:
        return (self.campaign_id, self.recipient_id, self.attempt_no)


async def claim_expired_windows(conn: asyncpg.Connection, limit: int) -> list[Waiting]:
    """Inside a transaction: accepted attempts past their step's window and not leased by
    another sweeper, locked."""
    rows = await conn.fetch(sql("attempts", "expired_windows"), limit)
    return [Waiting(**dict(r)) for r in rows]


async def lease_windows(
    conn: asyncpg.Connection, waiting: Sequence[Waiting], lease_s: float
) -> datetime | None:
    """Inside the claiming transaction: keeps other sweepers off these attempts for lease_s.
    Returns the lease, which reclaim_windows asks for (None when waiting is empty)."""
    if not waiting:
        return None
    lease: datetime = await conn.fetchval(
        sql("attempts", "lease_windows"), *_keys(waiting), float(lease_s)
    )
    return lease


async def record_revoked(pool: asyncpg.Pool, waiting: Waiting) -> None:
    """Outside any transaction, right after the provider withdrew the message."""
    await pool.execute(sql("attempts", "record_revoked"), *waiting.key)


async def reclaim_windows(
    conn: asyncpg.Connection, waiting: Sequence[Waiting], lease: datetime
) -> list[Waiting]:
    """Inside a transaction: those of `waiting` still waiting under this lease, locked, each
    with whether a revoke of its message is recorded."""
    if not waiting:
        return []
    by_key = {w.key: w for w in waiting}
    rows = await conn.fetch(sql("attempts", "reclaim_windows"), *_keys(waiting), lease)
    return [replace(by_key[(r[0], r[1], r[2])], revoked=r[3]) for r in rows]


async def mark_window_expired(conn: asyncpg.Connection, waiting: Sequence[Waiting]) -> None:
    if waiting:
        await conn.execute(sql("attempts", "mark_window_expired"), *_keys(waiting))


def _keys(waiting: Sequence[Waiting]) -> tuple[list[str], list[int], list[int]]:
    """Attempt keys as three array parameters (unnest in SQL)."""
    return (
        [w.campaign_id for w in waiting],
        [w.recipient_id for w in waiting],
        [w.attempt_no for w in waiting],
    )


async def forget_unsent(
    pool: asyncpg.Pool, campaign_id: str, recipient_ids: Sequence[int], channel: str
) -> None:
    if recipient_ids:
        await pool.execute(
            sql("attempts", "forget_unsent"), campaign_id, list(recipient_ids), channel
        )


async def archive(conn: asyncpg.Connection, campaign_id: str) -> str:
    """Moves the campaign's attempt rows into the archive schema in the caller's transaction
    (with its recipient rows, store/recipient_tables.archive); the archive table's name."""
    table: str = await conn.fetchval(sql("attempts", "archive"), campaign_id)
    return table
