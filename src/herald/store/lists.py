"""Contact lists and their members, scoped to one account."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from herald.store.queries import sql

Row = dict[str, Any]
Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection


async def insert(pool: Conn, account_id: str, name: str, description: str) -> Row:
    row = await pool.fetchrow(sql("lists", "insert"), account_id, name, description)
    assert row is not None
    return dict(row)


async def get(pool: Conn, account_id: str, list_id: uuid.UUID) -> Row | None:
    row = await pool.fetchrow(sql("lists", "get"), account_id, list_id)
    return None if row is None else dict(row)


async def page(
    pool: Conn, account_id: str, *, after: tuple[datetime | None, str | None], limit: int
) -> list[Row]:
    rows = await pool.fetch(sql("lists", "list"), account_id, after[0], after[1], limit)
    return [dict(r) for r in rows]


async def update(
    pool: Conn, account_id: str, list_id: uuid.UUID, name: str | None, description: str | None
) -> bool:
    found = await pool.fetchval(sql("lists", "update"), account_id, list_id, name, description)
    return found is not None


async def delete(pool: Conn, account_id: str, list_id: uuid.UUID) -> bool:
    return await pool.fetchval(sql("lists", "delete"), account_id, list_id) is not None


async def members(
    pool: Conn, list_id: uuid.UUID, *, after: tuple[datetime | None, str | None], limit: int
) -> list[Row]:
    """Call only for a list already known to be the caller's."""
    rows = await pool.fetch(sql("lists", "members"), list_id, after[0], after[1], limit)
    return [dict(r) for r in rows]


async def add_members(
    pool: asyncpg.Pool, account_id: str, list_id: uuid.UUID, contact_ids: Sequence[uuid.UUID]
) -> tuple[list[uuid.UUID], list[uuid.UUID]] | None:
    """(added, already members) among the account's contacts; None when the list is not
    the account's. Ids that are not the account's contacts are in neither."""
    async with pool.acquire() as conn, conn.transaction():
        if await get(conn, account_id, list_id) is None:
            return None
        rows = await conn.fetch(sql("lists", "add_members"), account_id, list_id, contact_ids)
        await conn.execute(sql("lists", "touch"), list_id)
    added = [r["id"] for r in rows if r["added"]]
    present = [r["id"] for r in rows if not r["added"]]
    return added, present


async def remove_members(
    pool: Conn, account_id: str, list_id: uuid.UUID, contact_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    rows = await pool.fetch(sql("lists", "remove_members"), account_id, list_id, contact_ids)
    return [r["contact_id"] for r in rows]
