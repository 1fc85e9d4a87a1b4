"""Contacts. The control-plane API owns their full life cycle; this holds what dispatch needs."""

from __future__ import annotations

import asyncpg

from herald.store.queries import sql


async def insert_synthetic(
    pool: asyncpg.Pool,
    *,
    account_id: str,
    count: int,
    first_phone: int,
    tag: str,
    nameless_every: int = 0,
    bad_phone_every: int = 0,
) -> None:
    """Demo and benchmark audiences: `count` contacts in one set-based INSERT."""
    await pool.execute(
        sql("contacts", "insert_synthetic"),
        account_id,
        count,
        first_phone,
        [tag],
        nameless_every,
        bad_phone_every,
    )
