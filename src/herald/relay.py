"""The outbox relay: publishes rows the API wrote to `outbox` in its own transactions.

Each round (bus/publisher.py) claims the oldest unpublished rows with FOR UPDATE SKIP LOCKED,
sends them to Kafka (keyed by account, so one account's events keep their order on a
partition), waits for every acknowledgement and marks them published in the same
transaction. A crash between the send and the commit publishes a row again: delivery is at
least once, and consumers deduplicate (the scheduler by campaign id). Several relays may run;
they claim disjoint rows, though then two rows of one key may reach Kafka in either order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import partial

import anyio
import asyncpg
from aiokafka import AIOKafkaProducer

from herald import loops
from herald.bus import codec, publisher
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
        messages = await publisher.publish_claimed(
            self.pool,
            self.producer,
            claim=partial(outbox.claim, limit=self.batch),
            encode=self._encode,
            mark=lambda conn, rows: outbox.mark_published(conn, [m.id for m in rows]),
        )
        if not messages:
            return 0
        self.published += len(messages)
        log.info("outbox published %d", len(messages), extra={"event": "outbox_published"})
        return len(messages)

    def _encode(self, rows: Sequence[outbox.Message]) -> list[publisher.Message]:
        # Keyed by account, so one account's events keep their order on a partition.
        return [
            publisher.Message(
                self.settings.topic(m.topic), codec.key(m.key), codec.encode(m.payload)
            )
            for m in rows
        ]

    async def _purge(self) -> None:
        try:
            removed = await outbox.purge(self.pool, self.retention_s)
        except LOOP_ERRORS as exc:
            log.warning("outbox purge failed: %s", exc, extra={"event": "outbox_purge_failed"})
            return
        if removed:
            log.info("outbox purged %d", removed, extra={"event": "outbox_purged"})
