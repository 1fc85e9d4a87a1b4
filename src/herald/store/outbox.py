"""The transactional outbox: rows written with the change they announce, published by the
relay (relay.py) and deduplicated downstream by their own keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from herald.store.queries import sql


@dataclass(frozen=True, kw_only=True)
class Message:
    id: int
    topic: str  # logical name; the relay adds the deployment's prefix
    key: str
    payload: Mapping[str, Any]


async def insert(conn: asyncpg.Connection, topic: str, key: str, payload: Mapping[str, Any]) -> int:
    """Call inside the transaction of the change the message announces."""
    ident: int = await conn.fetchval(sql("outbox", "insert"), topic, key, dict(payload))
    return ident


async def claim(conn: asyncpg.Connection, limit: int) -> list[Message]:
    """Call inside a transaction: the rows stay locked until it ends."""
    rows = await conn.fetch(sql("outbox", "claim"), limit)
    return [Message(id=r["id"], topic=r["topic"], key=r["key"], payload=r["payload"]) for r in rows]


async def mark_published(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    await conn.execute(sql("outbox", "mark_published"), list(ids))


async def purge(pool: asyncpg.Pool, retention_s: int) -> int:
    status = await pool.execute(sql("outbox", "purge"), retention_s)
    return int(status.split()[-1])


async def pending(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(sql("outbox", "pending"))
    return count


async def backlog(pool: asyncpg.Pool) -> tuple[int, float]:
    """(rows not yet published, seconds the oldest has waited)."""
    row = await pool.fetchrow(sql("outbox", "backlog"))
    assert row is not None
    return int(row["pending"]), float(row["oldest_age_s"])
