"""The outbox relay: publishes rows the API wrote to `outbox` in its own transactions.

Each round claims the oldest unpublished rows with FOR UPDATE SKIP LOCKED, sends them to
Kafka (keyed by account, so one account's events keep their order on a partition), waits for
every acknowledgement and marks them published in the same transaction. A crash between the
send and the commit publishes a row again: delivery is at least once, and consumers
deduplicate (the scheduler by campaign id). Several relays may run; they claim disjoint rows,
though then two rows of one key may reach Kafka in either order.
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
import asyncpg
from aiokafka import AIOKafkaProducer

from herald import loops
from herald.bus import codec
from herald.settings import Settings
from herald.store import outbox
from herald.store.db import LOOP_ERRORS

log = logging.getLogger(__name__)

DEFAULT_BATCH = 100
DEFAULT_POLL_S = 0.2
DEFAULT_RETENTION_S = 7 * 24 * 3600
PURGE_EVERY_S = 600.0


class Relay:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        batch: int = DEFAULT_BATCH,
        poll_s: float = DEFAULT_POLL_S,
        retention_s: int = DEFAULT_RETENTION_S,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.producer = producer
        self.batch = batch
        self.poll_s = poll_s
        self.retention_s = retention_s
        self.published = 0

    async def run(self, stop: anyio.Event) -> None:
        """Publish until `stop` is set; a round in flight finishes first. A round that fails on
        Kafka or PostgreSQL marked nothing, so its rows come again after a backoff."""
        purged_at = time.monotonic()

        async def round_() -> bool:
            nonlocal purged_at
            sent = await self.publish_once()
            if time.monotonic() - purged_at > PURGE_EVERY_S:
                purged_at = time.monotonic()
                await self._purge()
            return sent >= self.batch

        await loops.every("outbox relay", self.poll_s, round_, stop)

    async def publish_once(self) -> int:
        """One round: the number of rows published."""
        async with self.pool.acquire() as conn, conn.transaction():
            messages = await outbox.claim(conn, self.batch)
            if not messages:
                return 0
            acks = [
                await self.producer.send(
                    self.settings.topic(m.topic), codec.encode(m.payload), key=codec.key(m.key)
                )
                for m in messages
            ]
            # gather: one failed ack fails the round, and the others' errors are retrieved.
            await asyncio.gather(*acks)
            await outbox.mark_published(conn, [m.id for m in messages])
        self.published += len(messages)
        log.info("outbox published %d", len(messages), extra={"event": "outbox_published"})
        return len(messages)

    async def _purge(self) -> None:
        try:
            removed = await outbox.purge(self.pool, self.retention_s)
        except LOOP_ERRORS as exc:
            log.warning("outbox purge failed: %s", exc, extra={"event": "outbox_purge_failed"})
            return
        if removed:
            log.info("outbox purged %d", removed, extra={"event": "outbox_purged"})
