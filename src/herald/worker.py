"""The dispatch worker: work items in, provider sends out, outcomes onto status-events.

A batch names a campaign and a recipient id range; the worker streams the range's queued
recipients from PostgreSQL in keyset chunks (bounded memory) and hands each chunk to a
Delivery pass. Fallback work names recipients and the chain position to resume at. The
status consumer alone changes recipient states and counters.

Resume after a crash or rebalance is by data, not offsets: recipients already folded are no
longer `queued`, and an existing attempt row means "sent already" (see delivery.py).

An item carries its account's sub-key and the number of them (domain/work.py): it is paced
at the account's rate / shares under that sub-key's bucket, its chunks are sized by that
share, and a batch's rest handed back keeps its sub-key (and so its partition).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial

import anyio
import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from herald import metrics
from herald.bus import codec, consumer, dispatch
from herald.bus.consumer import DeadLetter
from herald.bus.sink import StatusTopic
from herald.delivery import Delivery
from herald.domain.campaign import CampaignStatus
from herald.domain.compose import RecipientRow
from herald.domain.events import CampaignConfirmed, EventError, parse_campaign_confirmed
from herald.domain.status import RecipientStatus, StatusEvent
from herald.domain.work import BatchItem, FallbackItem, parse_work
from herald.ports import PgAccounts, PgAttemptLog
from herald.providers.directory import Directory
from herald.settings import Settings
from herald.store import campaigns, recipients, reconcile

log = logging.getLogger(__name__)

# Pause within 1 s: this, plus the sends already on the wire, is how late a send can go out
# after a pause (each send checks right before its provider call); 10 status reads per second
# per campaign a worker is sending.
CONTROL_TTL_S = 0.1
# Chunks of one batch sending at once: two keep the sends flowing across a chunk's end.
CHUNKS_IN_FLIGHT = 2


class Control:
    """Campaign statuses as the worker sees them, at most CONTROL_TTL_S old: pause and cancel
    reach every send within that time at one query per campaign per TTL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._seen: dict[str, tuple[float, str]] = {}
        self._refreshing: set[str] = set()

    async def status(self, campaign_id: str) -> str:
        now = time.monotonic()
        seen = self._seen.get(campaign_id)
        if seen is not None and (now - seen[0] <= CONTROL_TTL_S or campaign_id in self._refreshing):
            # One caller refreshes; the many sends checking meanwhile use the last value.
            return seen[1]
        self._refreshing.add(campaign_id)
        try:
            status = await campaigns.status_of(self.pool, campaign_id) or "unknown"
        finally:
            self._refreshing.discard(campaign_id)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[campaign_id] = (time.monotonic(), status)
        return status

    async def sending(self, campaign_id: str) -> bool:
        return await self.status(campaign_id) == "sending"


def _unless_revoked(
    lost: anyio.Event, gate: Callable[[], Awaitable[bool]]
) -> Callable[[], Awaitable[bool]]:
    """The send gate, closed once the batch's partition is revoked: the new owner sends the
    rest under its own token bucket, so this one must start no more sends for the account."""

    async def open_() -> bool:
        return not lost.is_set() and await gate() and not lost.is_set()

    return open_


def _cancelled(campaign_id: str, rows: Sequence[RecipientRow]) -> list[StatusEvent]:
    now_ms = int(time.time() * 1000)
    return [
        StatusEvent(
            campaign_id=campaign_id,
            recipient_id=row.id,
            attempt=0,
            channel="",
            status=RecipientStatus.CANCELLED,
            occurred_at_ms=now_ms,
            source="worker",
            error_code="campaign_cancelled",
            error_description="the campaign was cancelled before this recipient was sent",
        )
        for row in rows
    ]


class Worker:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        dead_letter: DeadLetter,
        directory: Directory,
        stop: anyio.Event,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.producer = producer
        self.dead_letter = dead_letter
        self.stop = stop
        self.sink = StatusTopic(producer, settings)
        self.delivery = Delivery(
            settings=settings,
            attempts=PgAttemptLog(pool),
            accounts=PgAccounts(pool),
            transport=directory,
            sink=self.sink,
        )
        self.control = Control(pool)
        self._events: dict[str, CampaignConfirmed] = {}

    async def handle(self, tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        for record in records:
            try:
                item = parse_work(
                    codec.decode(record.value), default_shares=self.settings.dispatch_subkeys
                )
            except ValueError as exc:
                await self.dead_letter.send(record, f"invalid_batch: {exc}")
                continue
            if isinstance(item, BatchItem):
                outcome = await self.dispatch(item)
            else:
                outcome = await self.fall_back(item)
            # "yielded": the rest of the batch went back to the end of the partition.
            if outcome == "unknown_campaign":
                await self.dead_letter.send(record, "unknown_campaign: no such campaign")
            elif outcome == "stopped":
                return False
        return True

    async def dispatch(self, item: BatchItem) -> str:
        """Send one batch; returns done, yielded (its rest published again after
        worker_slice_s), paused, stopped (drain) or unknown_campaign.

        Chunks overlap: the next one is read and starts sending while the last sends of the
        one before are answered and recorded, so the worker's concurrency stays full instead
        of draining at the end of every chunk."""
        event = await self._open_campaign(item.campaign_id)
        if isinstance(event, str):
            return event
        lost = consumer.revoked()
        gate = _unless_revoked(lost, partial(self.control.sending, item.campaign_id))
        cursor = item.first_id - 1
        started = time.monotonic()
        # A chunk is what its share of the account's rate sends in about one slice, so a
        # slice ends on time even at a low rate (500 recipients at 100/s would be 5 s).
        rate = item.share.rate_per_s(await self.delivery.rate_of(event.account_id))
        chunk_size = max(
            1, min(self.settings.worker_chunk_size, int(rate * self.settings.worker_slice_s))
        )
        ended: list[str] = []  # what a chunk learned that ends the batch: paused or stopped
        lanes = anyio.Semaphore(CHUNKS_IN_FLIGHT)

        async def send_chunk(chunk: list[RecipientRow]) -> None:
            try:
                delivered = await self.delivery.deliver(event, chunk, gate=gate, share=item.share)
                if lost.is_set():
                    # Revoked: the rest stays queued for the partition's next owner.
                    ended.append("stopped")
                elif delivered.held:
                    ended.append("paused")
                else:
                    await reconcile.touch_batch(self.pool, item.campaign_id, item.batch_no)
            finally:
                lanes.release()

        outcome = "done"
        async with anyio.create_task_group() as tg:
            while not ended:
                if (
                    item.first_id <= cursor < item.last_id
                    and time.monotonic() - started >= self.settings.worker_slice_s
                ):
                    # Fair sharing: one account's slow, rate-limited batch must not hold up
                    # the other accounts whose work waits on this partition. The rest goes to
                    # the end, once the chunks in flight are done.
                    outcome = "yielded"
                    break
                if self.stop.is_set() or lost.is_set():
                    outcome = "stopped"
                    break
                status = await self.control.status(item.campaign_id)
                if status == "paused":
                    # The batch stays unfinished; resuming the campaign publishes it again.
                    outcome = "paused"
                    break
                await lanes.acquire()
                if ended:
                    lanes.release()
                    break
                chunk = await recipients.queued_chunk(
                    self.pool, item.campaign_id, cursor, item.last_id, chunk_size
                )
                if not chunk:
                    lanes.release()
                    break
                cursor = chunk[-1].id
                if status == "cancelled":
                    lanes.release()
                    await self.sink.publish(event.campaign_id, _cancelled(event.campaign_id, chunk))
                    continue
                tg.start_soon(send_chunk, chunk)
        if "stopped" in ended:
            return "stopped"
        if ended:
            return "paused"
        if outcome == "yielded":
            await self._continue(item, cursor + 1)
            return outcome
        if outcome != "done":
            return outcome
        await campaigns.mark_batch_done(self.pool, item.campaign_id, item.batch_no)
        metrics.BATCHES_DISPATCHED.inc()
        return "done"

    async def _continue(self, item: BatchItem, first_id: int) -> None:
        rest = replace(item, first_id=first_id)
        await (await dispatch.send(self.producer, self.settings, rest))
        metrics.BATCHES_YIELDED.inc()

    async def fall_back(self, item: FallbackItem) -> str:
        """Resume recipients' chains at the channel after the one that failed."""
        event = await self._open_campaign(item.campaign_id)
        if isinstance(event, str):
            return event
        starts = dict(item.recipients)
        rows = await recipients.open_by_ids(self.pool, item.campaign_id, list(starts))
        if not rows:
            return "done"
        status = await self.control.status(item.campaign_id)
        if status == "cancelled":
            await self.sink.publish(event.campaign_id, _cancelled(event.campaign_id, rows))
            return "done"
        held: set[int] = {r.id for r in rows}
        if status != "paused":
            lost = consumer.revoked()
            gate = _unless_revoked(lost, partial(self.control.sending, item.campaign_id))
            delivered = await self.delivery.deliver(
                event, rows, starts, gate=gate, share=item.share
            )
            if lost.is_set() and delivered.held:
                return "stopped"  # the item comes again, to the partition's next owner
            held = delivered.held
        # Work a pause stopped goes out again on resume.
        await recipients.republish_fallback(self.pool, item.campaign_id, sorted(held))
        return "done"

    async def _open_campaign(self, campaign_id: str) -> CampaignConfirmed | str:
        row = await campaigns.get(self.pool, campaign_id)
        if row is None:
            return "unknown_campaign"
        if row["status"] in (CampaignStatus.COMPLETED, CampaignStatus.FAILED):
            return "done"  # every recipient is final: nothing is left to send
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
