"""Loops that turn database state into work: fallback publishing, parked callbacks, windows.

- Fallback publishing (status role): recipients the fold marked with a next attempt are
  published as fallback work on dispatch-batches (on the account's sub-key that each
  recipient's id picks, domain/work.recipient_share) and stamped, in one transaction; a crash
  republishes, which the worker's attempt rows make harmless.
- Parked callbacks (status role): events that named an unknown provider message id are tried
  again until their attempt is recorded, then folded; past HERALD_STATUS_PARK_TIMEOUT_S they
  are dead-lettered with the reason, never dropped.
- Fallback windows (worker role): an accepted attempt with no delivery within the campaign's
  fallback_window_s is declared failed so the chain goes on (on the last channel the
  recipient fails: no report came, so the campaign still completes; a late delivery still
  wins). RBM messages are revoked first, and only a won revoke counts as a failure (else the
  delivery is on its way).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import asyncpg
from aiokafka import AIOKafkaProducer

from herald import loops
from herald.bus import codec, dispatch
from herald.bus.consumer import DeadLetter
from herald.constants import TOPIC_STATUS_EVENTS
from herald.domain.channels import Channel
from herald.domain.status import (
    WINDOW_EXPIRED,
    RecipientStatus,
    StatusEvent,
    from_wire,
    message_id,
    to_wire,
)
from herald.domain.work import MAX_FALLBACK_ITEMS, FallbackItem, Share, recipient_share
from herald.providers.directory import Directory
from herald.settings import Settings
from herald.status import StatusFolder
from herald.store import attempts, parked, recipients

log = logging.getLogger(__name__)

CLAIM_LIMIT = 1_000


class Sweeper:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        dead_letter: DeadLetter,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.producer = producer
        self.dead_letter = dead_letter

    async def publish_fallbacks(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            due = await recipients.claim_fallback_due(conn, CLAIM_LIMIT)
            if not due:
                return 0
            shares = await dispatch.shares(self.producer, self.settings)
            groups: dict[tuple[str, str, Share], list[tuple[int, int]]] = defaultdict(list)
            for d in due:
                share = recipient_share(d.recipient_id, shares)
                groups[(d.campaign_id, d.account_id, share)].append(
                    (d.recipient_id, d.next_attempt)
                )
            waits = []
            for (campaign_id, account_id, share), pairs in groups.items():
                for start in range(0, len(pairs), MAX_FALLBACK_ITEMS):
                    item = FallbackItem(
                        campaign_id=campaign_id,
                        account_id=account_id,
                        recipients=tuple(pairs[start : start + MAX_FALLBACK_ITEMS]),
                        share=share,
                    )
                    waits.append(await dispatch.send(self.producer, self.settings, item))
            # gather: one failed ack fails the round (nothing is marked), and the others'
            # errors are retrieved.
            await asyncio.gather(*waits)
            await recipients.mark_fallback_published(conn, due)
        return len(due)

    async def retry_parked(self, folder: StatusFolder) -> int:
        """Fold parked events whose attempt is now known; dead-letter the expired ones."""
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await parked.claim(conn, CLAIM_LIMIT, self.settings.status_park_timeout_s)
            if not claimed:
                return 0
            located = await attempts.resolve(conn, [p.provider_message_id for p in claimed])
            ready = [p for p in claimed if p.provider_message_id in located]
            expired = [p for p in claimed if p.expired and p.provider_message_id not in located]
            if ready:
                await folder.fold([from_wire(p.event) for p in ready])
            for p in expired:
                await self.dead_letter.send_value(
                    value=codec.encode({"v": 1, "events": [p.event]}),
                    key=codec.key(p.provider_message_id),
                    reason=(
                        "unknown_message: no send recorded for provider message id "
                        f"{p.provider_message_id} after {self.settings.status_park_timeout_s:g} s"
                    ),
                )
            await parked.delete(conn, [p.id for p in ready + expired])
        return len(ready) + len(expired)

    async def expire_windows(self, directory: Directory) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            waiting = await attempts.claim_expired_windows(conn, CLAIM_LIMIT)
            if not waiting:
                return 0
            now_ms = int(time.time() * 1000)
            by_campaign: dict[str, list[StatusEvent]] = defaultdict(list)
            for w in waiting:
                provider = directory.by_label(w.provider, Channel(w.channel))
                revoke = getattr(provider, "revoke", None)
                if revoke is not None and w.phone:
                    mid = message_id(w.campaign_id, w.recipient_id, w.attempt_no)
                    if not await revoke(mid, w.phone):
                        continue  # delivered before the revoke: its callback will say so
                by_campaign[w.campaign_id].append(
                    StatusEvent(
                        campaign_id=w.campaign_id,
                        recipient_id=w.recipient_id,
                        attempt=w.attempt_no,
                        channel=w.channel,
                        status=RecipientStatus.FAILED,
                        occurred_at_ms=now_ms,
                        source="sweeper",
                        accepted=True,
                        fallback=w.attempt_no < w.chain_length,
                        error_code=WINDOW_EXPIRED,
                        error_description="no delivery within the campaign's fallback window",
                    )
                )
            topic = self.settings.topic(TOPIC_STATUS_EVENTS)
            for campaign_id, events in by_campaign.items():
                value = codec.encode({"v": 1, "events": [to_wire(e) for e in events]})
                await self.producer.send_and_wait(topic, value, key=codec.key(campaign_id))
            await attempts.mark_window_expired(conn, waiting)
        return len(waiting)


async def every(
    interval_s: float,
    step: Callable[[], Awaitable[int]],
    stop: anyio.Event,
    wake: Callable[[], anyio.Event] | None = None,
) -> None:
    """Run step until stopped: again at once while it finds a full claim, else after
    interval_s or when woken. A round that fails on PostgreSQL or Kafka is logged and tried
    again after a backoff (loops.every)."""

    async def busy() -> bool:
        return await step() >= CLAIM_LIMIT

    await loops.every(_name(step), interval_s, busy, stop, wake)


def _name(step: Callable[..., object]) -> str:
    """The sweep's name for log lines: the method or function a partial wraps."""
    while isinstance(step, partial):
        step = step.func
    return f"sweep {getattr(step, '__name__', 'step').lstrip('_')}"
