"""Recipients: streamed in keyset chunks for sending, folded under row locks for status."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from herald.domain.compose import RecipientRow
from herald.domain.status import RecipientState, RecipientStatus
from herald.store.queries import sql

RecipientKey = tuple[str, int]


async def queued_chunk(
    pool: asyncpg.Pool, campaign_id: str, after_id: int, last_id: int, limit: int
) -> list[RecipientRow]:
    rows = await pool.fetch(
        sql("recipients", "queued_chunk"), campaign_id, after_id, last_id, limit
    )
    result = []
    for r in rows:
        fields: dict[str, object] = dict(r["attributes"] or {})
        fields.update(
            first_name=r["first_name"], last_name=r["last_name"], phone=r["phone"], email=r["email"]
        )
        result.append(
            RecipientRow(
                id=r["id"],
                phone=r["phone"],
                email=r["email"],
                contact_id=r["contact_id"],
                fields=fields,
            )
        )
    return result


async def lock_states(
    conn: asyncpg.Connection, keys: Iterable[RecipientKey]
) -> dict[RecipientKey, RecipientState]:
    ordered = sorted(set(keys))
    rows = await conn.fetch(
        sql("recipients", "lock_states"), [k[0] for k in ordered], [k[1] for k in ordered]
    )
    return {
        (r["campaign_id"], r["id"]): RecipientState(
            status=RecipientStatus(r["status"]),
            accepted=r["accepted"],
            channel=r["channel"],
            error_code=r["error_code"],
            error_description=r["error_description"],
        )
        for r in rows
    }


async def write_states(
    conn: asyncpg.Connection, states: Sequence[tuple[RecipientKey, RecipientState]]
) -> None:
    if not states:
        return
    await conn.execute(
        sql("recipients", "write_states"),
        [k[0] for k, _ in states],
        [k[1] for k, _ in states],
        [s.status.value for _, s in states],
        [s.accepted for _, s in states],
        [s.channel for _, s in states],
        [s.error_code for _, s in states],
        [s.error_description for _, s in states],
    )
