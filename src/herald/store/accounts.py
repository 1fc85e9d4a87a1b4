"""Accounts: who owns campaigns, contacts and rate limits."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from herald.store.queries import sql


@dataclass(frozen=True, kw_only=True)
class AccountSettings:
    rate_per_s: float | None  # None: the deployment default
    quiet_hours: tuple[int, int] | None  # (start hour, end hour) in the recipient's time
    # Seed 002's confirm workflow: confirm needs ready_to_send, a goal and the same price.
    confirm_requires_goal: bool = False


def _settings(row: asyncpg.Record | None) -> AccountSettings:
    if row is None:
        return AccountSettings(rate_per_s=None, quiet_hours=None)
    start, end = row["quiet_start_hour"], row["quiet_end_hour"]
    quiet = None if start is None or end is None else (int(start), int(end))
    return AccountSettings(
        rate_per_s=row["rate_per_s"],
        quiet_hours=quiet,
        confirm_requires_goal=row["confirm_requires_goal"],
    )


async def ensure(pool: asyncpg.Pool, account_id: str, name: str, rate_per_s: float | None) -> None:
    await pool.execute(sql("accounts", "ensure"), account_id, name, rate_per_s)


async def settings(pool: asyncpg.Pool, account_id: str) -> AccountSettings:
    return _settings(await pool.fetchrow(sql("accounts", "settings"), account_id))


async def update_settings(
    pool: asyncpg.Pool, account_id: str, new: AccountSettings
) -> AccountSettings | None:
    """Stores an account's settings; None when there is no such account."""
    start, end = new.quiet_hours if new.quiet_hours is not None else (None, None)
    row = await pool.fetchrow(
        sql("accounts", "update_settings"),
        account_id,
        new.rate_per_s,
        start,
        end,
        new.confirm_requires_goal,
    )
    return None if row is None else _settings(row)


async def confirm_requires_goal(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> bool:
    """Whether the account asked for seed 002's confirm workflow (migration 0019)."""
    return bool(await conn.fetchval(sql("accounts", "confirm_requires_goal"), account_id))
