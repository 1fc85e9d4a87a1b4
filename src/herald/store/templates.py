"""Message templates per channel, scoped to one account."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from herald.store.queries import sql

Row = dict[str, Any]
Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection
CONTENT_FIELDS = ("name", "language", "category", "sender", "subject", "body", "components")


def _row(record: asyncpg.Record | None) -> Row | None:
    if record is None:
        return None
    row = dict(record)
    row.pop("account_id", None)
    return row


async def insert(pool: Conn, account_id: str, t: Mapping[str, Any], approval: str) -> Row:
    row = _row(
        await pool.fetchrow(
            sql("templates", "insert"),
            account_id,
            t["name"],
            t["channel"],
            t["language"],
            t.get("category"),
            t.get("sender"),
            t.get("subject"),
            t.get("body"),
            t.get("components"),
            approval,
        )
    )
    assert row is not None
    return row


async def get(pool: Conn, account_id: str, template_id: uuid.UUID) -> Row | None:
    return _row(await pool.fetchrow(sql("templates", "get"), account_id, template_id))


async def get_many(
    pool: Conn, account_id: str, template_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Row]:
    rows = await pool.fetch(sql("templates", "get_many"), account_id, list(template_ids))
    found = {}
    for record in rows:
        row = _row(record)
        assert row is not None
        found[row["id"]] = row
    return found


async def page(
    pool: Conn,
    account_id: str,
    *,
    channel: str | None,
    approval_status: str | None,
    after: tuple[datetime | None, str | None],
    limit: int,
) -> list[Row]:
    rows = await pool.fetch(
        sql("templates", "list"), account_id, channel, approval_status, after[0], after[1], limit
    )
    return [r for r in (_row(x) for x in rows) if r is not None]


async def replace(
    pool: Conn, account_id: str, template_id: uuid.UUID, t: Mapping[str, Any], approval: str
) -> Row | None:
    return _row(
        await pool.fetchrow(
            sql("templates", "replace"),
            account_id,
            template_id,
            *[t.get(name) for name in CONTENT_FIELDS],
            approval,
        )
    )


async def set_approval(
    pool: Conn, account_id: str, template_id: uuid.UUID, status: str, reason: str | None
) -> Row | None:
    return _row(
        await pool.fetchrow(
            sql("templates", "set_approval"), account_id, template_id, status, reason
        )
    )


async def delete(pool: Conn, account_id: str, template_id: uuid.UUID) -> bool:
    return await pool.fetchval(sql("templates", "delete"), account_id, template_id) is not None
