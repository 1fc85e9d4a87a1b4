"""The dispatch worker: work items in, provider sends out, outcomes onto status-events.

A batch names a campaign and a recipient id range; the worker streams the range's queued
recipients from PostgreSQL in keyset chunks (bounded memory) and hands each chunk to a
Delivery pass. Fallback work names recipients and the chain position to resume at. The
status consumer alone changes recipient states and counters.

Resume after a crash or rebalance is by data, not offsets: recipients already folded are no
longer `queued`, and an existing attempt row means "sent already" (see delivery.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import anyio
import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from herald import metrics
from herald.bus import codec
from herald.bus.consumer import DeadLetter
from herald.constants import TOPIC_STATUS_EVENTS
from herald.delivery import Delivery
from herald.domain.channels import Channel
from herald.domain.events import CampaignConfirmed, EventError, parse_campaign_confirmed
from herald.domain.status import StatusEvent, to_wire
from herald.domain.work import BatchItem, FallbackItem, parse_work
from herald.providers.base import Provider
from herald.settings import Settings
from herald.store import campaigns, recipients

log = logging.getLogger(__name__)

_CLOSED = frozenset({"cancelled", "completed"})


class Worker:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        dead_letter: DeadLetter,
        providers: Mapping[Channel, Provider],
        stop: anyio.Event,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.producer = producer
        self.dead_letter = dead_letter
        self.stop = stop
        self.delivery = Delivery(settings=settings, pool=pool, providers=providers)
        self._events: dict[str, CampaignConfirmed] = {}

    async def handle(self, tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        for record in records:
            try:
                item = parse_work(codec.decode(record.value))
            except ValueError as exc:
                await self.dead_letter.send(record, f"invalid_batch: {exc}")
                continue
            if isinstance(item, BatchItem):
                outcome = await self.dispatch(item)
            else:
                outcome = await self.fall_back(item)
            if outcome == "unknown_campaign":
                await self.dead_letter.send(record, "unknown_campaign: no such campaign")
            elif outcome == "stopped":
                return False
        return True

    async def dispatch(self, item: BatchItem) -> str:
        """Send one batch; returns done, stopped (drain) or unknown_campaign."""
        event = await self._open_campaign(item.campaign_id)
        if isinstance(event, str):
            return event
        cursor = item.first_id - 1
        while True:
            if self.stop.is_set():
                return "stopped"
            chunk = await recipients.queued_chunk(
                self.pool, item.campaign_id, cursor, item.last_id, self.settings.worker_chunk_size
            )
            if not chunk:
                break
            cursor = chunk[-1].id
            await self._publish(event.campaign_id, await self.delivery.deliver(event, chunk))
        await campaigns.mark_batch_done(self.pool, item.campaign_id, item.batch_no)
        metrics.BATCHES_DISPATCHED.inc()
        return "done"

    async def fall_back(self, item: FallbackItem) -> str:
        """Resume recipients' chains at the channel after the one that failed."""
        event = await self._open_campaign(item.campaign_id)
        if isinstance(event, str):
            return event
        starts = dict(item.recipients)
        rows = await recipients.open_by_ids(self.pool, item.campaign_id, list(starts))
        if rows:
            await self._publish(event.campaign_id, await self.delivery.deliver(event, rows, starts))
        return "done"

    async def _open_campaign(self, campaign_id: str) -> CampaignConfirmed | str:
        row = await campaigns.get(self.pool, campaign_id)
        if row is None:
            return "unknown_campaign"
        if row["status"] in _CLOSED:
            return "done"
        cached = self._events.get(campaign_id)
        if cached is None:
            try:
                cached = parse_campaign_confirmed(row["event"])
            except EventError:
                return "unknown_campaign"
            if len(self._events) > 1000:
                self._events.clear()
            self._events[campaign_id] = cached
        return cached

    async def _publish(self, campaign_id: str, events: Sequence[StatusEvent]) -> None:
        if not events:
            return
        topic = self.settings.topic(TOPIC_STATUS_EVENTS)
        value = codec.encode({"v": 1, "events": [to_wire(e) for e in events]})
        await self.producer.send_and_wait(topic, value, key=codec.key(campaign_id))
