"""The dispatch worker: batches in, provider sends out, every attempt recorded first.

A batch names a campaign and a recipient id range. The worker streams the range's queued
recipients from PostgreSQL in keyset chunks (bounded memory), decides per recipient what to
send or why to skip, writes the attempt rows, sends under the account's token bucket with
bounded concurrency, records each provider answer, and publishes the outcomes as status
events. The status consumer alone changes recipient states and counters.

Resume after a crash or rebalance is by data, not offsets: recipients already folded are no
longer `queued`, and an existing attempt row means "sent already" (its outcome is published
again) or, if the answer was lost, "ambiguous" (repeated once at most).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiolimiter import AsyncLimiter

from herald import metrics
from herald.bus import codec
from herald.bus.consumer import DeadLetter
from herald.constants import PATH_CALLBACK_TWILIO, TOPIC_STATUS_EVENTS
from herald.domain.channels import Channel
from herald.domain.compose import Message, RecipientRow, Skip, compose
from herald.domain.events import CampaignConfirmed, EventError, parse_campaign_confirmed
from herald.domain.status import RecipientStatus, StatusEvent, message_id, to_wire
from herald.providers.base import ErrorClass, OutboundMessage, Provider, SendResult
from herald.settings import Settings
from herald.store import accounts, attempts, campaigns, recipients

log = logging.getLogger(__name__)

MAX_SEND_TRIES = 5
_REJECTED = frozenset({ErrorClass.PERMANENT, ErrorClass.OPTED_OUT, ErrorClass.UNREACHABLE})


@dataclass(frozen=True, kw_only=True)
class BatchItem:
    campaign_id: str
    account_id: str
    batch_no: int
    first_id: int
    last_id: int


def parse_batch(raw: object) -> BatchItem:
    if not isinstance(raw, dict) or raw.get("v") != 1:
        raise ValueError("batch item must be an object with v=1")
    try:
        item = BatchItem(
            campaign_id=str(raw["campaign_id"]),
            account_id=str(raw["account_id"]),
            batch_no=int(raw["batch_no"]),
            first_id=int(raw["first_id"]),
            last_id=int(raw["last_id"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"batch item field missing or wrong: {exc}") from None
    if not 1 <= item.first_id <= item.last_id:
        raise ValueError("batch id range is empty or negative")
    return item


class Worker:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        dead_letter: DeadLetter,
        providers: dict[Channel, Provider],
        stop: anyio.Event,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.producer = producer
        self.dead_letter = dead_letter
        self.providers = providers
        self.stop = stop
        self._limiters: dict[tuple[str, Channel], AsyncLimiter] = {}
        self._events: dict[str, CampaignConfirmed] = {}
        self._slots = anyio.Semaphore(settings.worker_concurrency)

    async def handle(self, tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        for record in records:
            try:
                item = parse_batch(codec.decode(record.value))
            except ValueError as exc:
                await self.dead_letter.send(record, f"invalid_batch: {exc}")
                continue
            outcome = await self.dispatch(item)
            if outcome == "unknown_campaign":
                await self.dead_letter.send(record, "unknown_campaign: no such campaign")
            elif outcome == "stopped":
                return False
        return True

    async def dispatch(self, item: BatchItem) -> str:
        """Send one batch; returns done, stopped (drain) or unknown_campaign."""
        row = await campaigns.get(self.pool, item.campaign_id)
        if row is None:
            return "unknown_campaign"
        if row["status"] in ("cancelled", "completed"):
            return "done"
        event = await self._event(item.campaign_id, row["event"])
        if event is None:
            return "unknown_campaign"
        limiter = await self._limiter(item.account_id, event)
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
            await self._send_chunk(event, chunk, limiter)
        await campaigns.mark_batch_done(self.pool, item.campaign_id, item.batch_no)
        metrics.BATCHES_DISPATCHED.inc()
        return "done"

    async def _event(self, campaign_id: str, raw: object) -> CampaignConfirmed | None:
        cached = self._events.get(campaign_id)
        if cached is None:
            try:
                cached = parse_campaign_confirmed(raw)
            except EventError:
                return None
            if len(self._events) > 1000:
                self._events.clear()
            self._events[campaign_id] = cached
        return cached

    async def _limiter(self, account_id: str, event: CampaignConfirmed) -> AsyncLimiter | None:
        channel = next((c for c in event.channels if c in self.providers), None)
        if channel is None:
            return None
        key = (account_id, channel)
        limiter = self._limiters.get(key)
        if limiter is None:
            rate = await accounts.rate_per_s(self.pool, account_id)
            rate = rate or self.settings.default_rate_per_s
            limiter = AsyncLimiter(max(rate, 1.0), 1.0)
            self._limiters[key] = limiter
        return limiter

    async def _send_chunk(
        self,
        event: CampaignConfirmed,
        chunk: Sequence[RecipientRow],
        limiter: AsyncLimiter | None,
    ) -> None:
        now_ms = _now_ms()
        outcomes: list[StatusEvent] = []
        messages: dict[int, Message] = {}
        for row in chunk:
            decision = compose(
                event=event,
                recipient=row,
                available=self.providers.keys(),
                default_sms_sender=self.settings.twilio_from,
            )
            if isinstance(decision, Skip):
                metrics.SKIPPED.labels(reason=decision.reason).inc()
                outcomes.append(
                    StatusEvent(
                        campaign_id=event.campaign_id,
                        recipient_id=row.id,
                        attempt=0,
                        channel="",
                        status=RecipientStatus.SKIPPED,
                        occurred_at_ms=now_ms,
                        source="worker",
                        error_code=decision.reason,
                        error_description=decision.description,
                    )
                )
            else:
                messages[row.id] = decision
        if messages:
            outcomes.extend(await self._send_messages(event, messages, limiter))
        await self._publish(event.campaign_id, outcomes)

    async def _send_messages(
        self, event: CampaignConfirmed, messages: dict[int, Message], limiter: AsyncLimiter | None
    ) -> list[StatusEvent]:
        first = next(iter(messages.values()))
        channel = first.channel
        provider = self.providers[channel]
        ids = list(messages)
        created = await attempts.insert_pending(
            self.pool,
            event.campaign_id,
            ids,
            [messages[i].attempt for i in ids],
            channel.value,
            provider.name,
        )
        to_send = [i for i in ids if i in created]
        republish: list[StatusEvent] = []
        seen_before = [i for i in ids if i not in created]
        if seen_before:
            resend = await attempts.claim_resend(
                self.pool, event.campaign_id, seen_before, channel.value
            )
            if resend:
                metrics.AMBIGUOUS_RESENDS.labels(channel=channel.value, provider=provider.name).inc(
                    len(resend)
                )
                to_send.extend(sorted(resend))
            for recorded in await attempts.existing(
                self.pool, event.campaign_id, seen_before, channel.value
            ):
                if recorded.recipient_id in resend:
                    continue
                republish.append(_recorded_event(event.campaign_id, channel, recorded))

        results: dict[int, SendResult] = {}

        async def send_one(recipient_id: int) -> None:
            message = messages[recipient_id]
            mid = message_id(event.campaign_id, recipient_id, message.attempt)
            outbound = OutboundMessage(
                message_id=mid,
                channel=channel,
                to=message.to,
                sender=message.sender,
                body=message.body,
                callback_url=f"{self.settings.ingress_url}{PATH_CALLBACK_TWILIO}?m={mid}",
            )
            results[recipient_id] = await self._send_with_retries(provider, outbound, limiter)

        async with anyio.create_task_group() as tg:
            for recipient_id in to_send:
                await self._slots.acquire()
                tg.start_soon(_release_after, self._slots, send_one, recipient_id)

        rows: list[attempts.Result] = []
        events: list[StatusEvent] = list(republish)
        now_ms = _now_ms()
        for recipient_id, result in results.items():
            attempt_no = messages[recipient_id].attempt
            outcome, status = _classify(result)
            rows.append(
                attempts.Result(
                    recipient_id=recipient_id,
                    attempt_no=attempt_no,
                    outcome=outcome,
                    provider_message_id=result.provider_message_id,
                    error_code=result.error_code,
                    error_description=result.error_description,
                )
            )
            events.append(
                StatusEvent(
                    campaign_id=event.campaign_id,
                    recipient_id=recipient_id,
                    attempt=attempt_no,
                    channel=channel.value,
                    status=status,
                    occurred_at_ms=now_ms,
                    source="worker",
                    accepted=result.accepted,
                    provider_message_id=result.provider_message_id,
                    error_code=result.error_code,
                    error_description=result.error_description,
                )
            )
        await attempts.record_results(self.pool, event.campaign_id, rows)
        return events

    async def _send_with_retries(
        self, provider: Provider, message: OutboundMessage, limiter: AsyncLimiter | None
    ) -> SendResult:
        result = SendResult(accepted=False, error_class=ErrorClass.RETRYABLE)
        for attempt in range(MAX_SEND_TRIES):
            if limiter is not None:
                waited = time.perf_counter()
                await limiter.acquire()
                metrics.RATE_LIMIT_WAIT.labels(channel=message.channel.value).observe(
                    time.perf_counter() - waited
                )
            started = time.perf_counter()
            metrics.SENDS_IN_FLIGHT.inc()
            try:
                result = await provider.send(message)
            finally:
                metrics.SENDS_IN_FLIGHT.dec()
            metrics.SEND_DURATION.labels(
                channel=message.channel.value, provider=provider.name
            ).observe(time.perf_counter() - started)
            outcome = "accepted" if result.accepted else str(result.error_class)
            metrics.SENDS.labels(
                channel=message.channel.value, provider=provider.name, outcome=outcome
            ).inc()
            if result.accepted or result.error_class not in (
                ErrorClass.RETRYABLE,
                ErrorClass.RATE_LIMITED,
            ):
                return result
            # Full jitter, bounded; a Retry-After from the provider is a floor.
            backoff_s = random.uniform(0, min(5.0, 0.1 * 2**attempt))
            await anyio.sleep(max(backoff_s, result.retry_after_s or 0.0))
        return result

    async def _publish(self, campaign_id: str, events: Sequence[StatusEvent]) -> None:
        if not events:
            return
        topic = self.settings.topic(TOPIC_STATUS_EVENTS)
        value = codec.encode({"v": 1, "events": [to_wire(e) for e in events]})
        await self.producer.send_and_wait(topic, value, key=codec.key(campaign_id))


async def _release_after(slots: anyio.Semaphore, fn: object, recipient_id: int) -> None:
    try:
        await fn(recipient_id)  # type: ignore[operator]
    finally:
        slots.release()


def _classify(result: SendResult) -> tuple[str, RecipientStatus]:
    """(attempt outcome, status event) for one provider answer."""
    if result.accepted:
        return "accepted", RecipientStatus.SENT
    if result.error_class in _REJECTED:
        return "rejected", RecipientStatus.FAILED
    if result.error_class is ErrorClass.AMBIGUOUS:
        # A later callback can still report delivery; delivered outranks failed.
        return "ambiguous", RecipientStatus.FAILED
    return "rejected", RecipientStatus.FAILED


def _recorded_event(campaign_id: str, channel: Channel, recorded: attempts.Recorded) -> StatusEvent:
    """The status event a finished attempt produced, published again after a restart."""
    accepted = recorded.outcome == "accepted"
    code: str | None
    if recorded.outcome == "pending":
        status, code = RecipientStatus.FAILED, "ambiguous_unresolved"
    else:
        status = RecipientStatus.SENT if accepted else RecipientStatus.FAILED
        code = recorded.error_code
    return StatusEvent(
        campaign_id=campaign_id,
        recipient_id=recorded.recipient_id,
        attempt=recorded.attempt_no,
        channel=channel.value,
        status=status,
        occurred_at_ms=_now_ms(),
        source="worker",
        accepted=accepted,
        provider_message_id=recorded.provider_message_id,
        error_code=code,
        error_description=recorded.error_description,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)
