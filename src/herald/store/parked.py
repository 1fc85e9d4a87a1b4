"""Status events parked until the attempt they name is recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from herald.store.queries import sql


@dataclass(frozen=True, kw_only=True)
class Parked:
    id: int
    provider_message_id: str
    event: dict[str, Any]
    expired: bool


async def park(conn: asyncpg.Connection, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
    if events:
        await conn.execute(sql("parked", "park"), [pm for pm, _ in events], [e for _, e in events])


async def claim(conn: asyncpg.Connection, limit: int, max_age_s: float) -> list[Parked]:
    rows = await conn.fetch(sql("parked", "claim"), limit, max_age_s)
    return [Parked(**dict(r)) for r in rows]


async def delete(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    if ids:
        await conn.execute(sql("parked", "delete"), list(ids))
