"""Campaign statistics read from the pipeline's exact counters and attempt rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from herald.store.queries import sql

Row = dict[str, Any]
Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True, kw_only=True)
class Window:
    start: datetime | None = None
    end: datetime | None = None
    sending_modes: Sequence[str] | None = None


def _modes(w: Window) -> list[str] | None:
    return None if w.sending_modes is None else list(w.sending_modes)


async def summary(pool: Conn, account_id: str, w: Window) -> Row:
    row = await pool.fetchrow(sql("stats", "summary"), account_id, w.start, w.end, _modes(w))
    assert row is not None
    return dict(row)


async def channels(pool: Conn, account_id: str, w: Window) -> list[Row]:
    rows = await pool.fetch(sql("stats", "channels"), account_id, w.start, w.end, _modes(w))
    return [dict(r) for r in rows]


async def campaign_channels(pool: Conn, campaign_id: str) -> list[Row]:
    return [dict(r) for r in await pool.fetch(sql("stats", "campaign_channels"), campaign_id)]


async def buckets(
    pool: Conn,
    account_id: str,
    *,
    unit: str,
    start: datetime,
    end: datetime,
    campaign_id: str | None,
    channel: str | None,
    sending_modes: Sequence[str] | None,
    after: datetime | None,
    ascending: bool,
    limit: int,
) -> list[Row]:
    rows = await pool.fetch(
        sql("stats", "buckets"),
        account_id,
        unit,
        start,
        end,
        campaign_id,
        channel,
        None if sending_modes is None else list(sending_modes),
        after,
        ascending,
        limit,
    )
    return [dict(r) for r in rows]
