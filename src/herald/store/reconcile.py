"""What is owed and not in flight, found in PostgreSQL, the truth, after Kafka lost it.

Each query puts work back where its normal path picks it up again (a batch unpublished for
the scheduler, fallback work for the status role's sweep, a confirmed draft admitted as the
scheduler would), so nothing is sent by a second path and every consumer's own dedupe holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from herald.domain.events import EventError, parse_campaign_confirmed
from herald.store import campaigns
from herald.store.queries import sql


@dataclass(frozen=True, kw_only=True)
class Repaired:
    batches: int = 0
    fallbacks: int = 0
    admitted: int = 0
    unreadable: int = 0

    @property
    def total(self) -> int:
        return self.batches + self.fallbacks + self.admitted


async def touch_batch(pool: asyncpg.Pool, campaign_id: str, batch_no: int) -> None:
    await pool.execute(sql("reconcile", "touch_batch"), campaign_id, batch_no)


async def repair(pool: asyncpg.Pool, *, after_s: float, limit: int = 1000) -> Repaired:
    batches = await pool.fetch(sql("reconcile", "stale_batches"), after_s)
    batches += await pool.fetch(sql("reconcile", "stranded_batches"), after_s)
    fallbacks = await pool.fetch(sql("reconcile", "stale_fallbacks"), after_s)
    admitted = unreadable = 0
    for row in await pool.fetch(sql("reconcile", "unadmitted"), after_s, limit):
        try:
            event = parse_campaign_confirmed(row["event"])
        except EventError:
            unreadable += 1  # validated when confirmed; a schema change got here
            continue
        admission = await campaigns.admit(pool, event, row["event"], create_accounts=False)
        admitted += admission is campaigns.Admission.INSERTED
    return Repaired(
        batches=len(batches),
        fallbacks=len(fallbacks),
        admitted=admitted,
        unreadable=unreadable,
    )
