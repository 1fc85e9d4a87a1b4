"""Accounts: who owns campaigns, contacts and rate limits."""

from __future__ import annotations

import asyncpg

from herald.store.queries import sql


async def ensure(pool: asyncpg.Pool, account_id: str, name: str, rate_per_s: float | None) -> None:
    await pool.execute(sql("accounts", "ensure"), account_id, name, rate_per_s)


async def rate_per_s(pool: asyncpg.Pool, account_id: str) -> float | None:
    value: float | None = await pool.fetchval(sql("accounts", "rate"), account_id)
    return value


async def quiet_hours(pool: asyncpg.Pool, account_id: str) -> tuple[int, int] | None:
    row = await pool.fetchrow(sql("accounts", "quiet_hours"), account_id)
    if row is None or row["quiet_start_hour"] is None or row["quiet_end_hour"] is None:
        return None
    return int(row["quiet_start_hour"]), int(row["quiet_end_hour"])
