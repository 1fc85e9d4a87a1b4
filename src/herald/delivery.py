"""One delivery pass over a set of recipients: compose, record attempts, send, classify.

A pass walks each recipient's chain: a synchronous "not reachable on this channel" answer
moves that recipient to the next channel within the same pass. Every attempt row is written
before its provider call; an attempt row that already exists means a previous pass got that
far, so its recorded outcome is published again instead of sending again (a lost answer is
repeated once at most, on providers without an idempotency key).
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from herald import metrics
from herald.breaker import Breaker
from herald.budget import ErrorBudget
from herald.constants import PATH_CALLBACK_TWILIO
from herald.domain.channels import Channel
from herald.domain.compose import Message, RecipientRow, Skip, compose
from herald.domain.dispatch import (
    Again,
    Hold,
    Tries,
    after_answer,
    breaker_ok,
    budget_failure,
    classify,
    error_code,
)
from herald.domain.events import CampaignConfirmed
from herald.domain.quiet import quiet_until, timezone_for
from herald.domain.status import RecipientStatus, StatusEvent, message_id
from herald.domain.work import WHOLE, Share
from herald.ports import Accounts, AttemptLog, StatusSink, Transport
from herald.providers.base import (
    ErrorClass,
    OutboundMessage,
    Provider,
    SendResult,
    WhatsAppTemplate,
)
from herald.ratelimit import AdaptiveLimiter
from herald.settings import Settings
from herald.store.accounts import AccountSettings
from herald.store.attempts import Recorded, Result

log = logging.getLogger(__name__)

# Attempt rows are written and answers recorded this many sends at a time.
MICRO_BATCH = 32


def micro_batching(concurrency: int) -> tuple[int, int]:
    """A pass's micro-batch size and how many micro-batches it keeps in flight: enough that
    the concurrency stays full while some wait for their slowest send or their bookkeeping.
    Their product is the most attempt rows a pass has written ahead of their sends, which a
    crash may send once more (the ones whose answer it lost)."""
    size = max(1, min(MICRO_BATCH, concurrency))
    return size, -(-concurrency // size) + 2


def recorded_event(
    campaign_id: str, channel: Channel, recorded: Recorded
) -> tuple[StatusEvent, bool]:
    """The status event a finished attempt produced, published again after a restart, and
    whether the chain continues past it."""
    accepted = recorded.outcome == "accepted"
    unreachable = recorded.outcome == "unreachable"
    # An answer that was lost (ambiguous, or pending after its one repeat) may have been
    # taken: sent, settled by callbacks or by the fallback window.
    maybe_sent = recorded.outcome in ("ambiguous", "pending")
    code = recorded.error_code
    if recorded.outcome == "pending":
        code = "ambiguous_unresolved"
    event = StatusEvent(
        campaign_id=campaign_id,
        recipient_id=recorded.recipient_id,
        attempt=recorded.attempt_no,
        channel=channel.value,
        status=RecipientStatus.SENT if accepted or maybe_sent else RecipientStatus.FAILED,
        occurred_at_ms=_now_ms(),
        source="worker",
        accepted=accepted,
        fallback=unreachable,
        provider_message_id=recorded.provider_message_id,
        error_code=code,
        error_description=recorded.error_description,
    )
    return event, unreachable


Gate = Callable[[], Awaitable[bool]]


@dataclass(kw_only=True)
class Delivered:
    events: list[StatusEvent] = field(default_factory=list)
    # Recipients whose send a pause stopped before it started; still queued, sent on resume.
    held: set[int] = field(default_factory=set)


class Delivery:
    """Drives the pass through its ports (ports.py): `attempts` and `accounts` in
    PostgreSQL, `transport` the account's providers, `sink` the status-events topic; the
    in-memory ones in fakes.py run it without any of them."""

    def __init__(
        self,
        *,
        settings: Settings,
        attempts: AttemptLog,
        accounts: Accounts,
        transport: Transport,
        sink: StatusSink,
    ) -> None:
        self.settings = settings
        self.attempts = attempts
        self.accounts = accounts
        self.transport = transport
        self.sink = sink
        self._limiters: dict[tuple[str, Channel, int], AdaptiveLimiter] = {}
        self._breakers: dict[str, Breaker] = {}
        self._provider_limiters: dict[tuple[str, int], AdaptiveLimiter] = {}
        # Each account's rate and quiet hours with when they were read (see account_settings).
        self._settings_seen: dict[str, tuple[float, AccountSettings]] = {}
        self._refreshing: set[str] = set()
        self.budget = ErrorBudget(
            window=settings.error_budget_window,
            max_failure_ratio=settings.error_budget_max_failure_ratio,
        )
        self._slots = anyio.Semaphore(settings.worker_concurrency)
        # The last exported breaker states (see _breaker_seen).
        self._breaker_states: dict[tuple[str, str], object] = {}

    async def deliver(
        self,
        event: CampaignConfirmed,
        rows: Sequence[RecipientRow],
        starts: Mapping[int, int] | None = None,
        gate: Gate | None = None,
        share: Share = WHOLE,
    ) -> Delivered:
        """Status events for every recipient in rows (sent, failed or skipped), except those
        held because `gate` said stop (the campaign was paused or cancelled), published to
        the sink before this returns. Sends are paced at `share` of the account's rate (the
        work item's sub-key, domain/work.py)."""
        by_id = {row.id: row for row in rows}
        providers = await self.transport.for_account(event.account_id)
        if event.provider_accounts:
            providers = self.transport.chosen(providers, event.provider_accounts)
        pending = {row.id: (starts or {}).get(row.id, 1) for row in rows}
        pending = await self._outside_quiet_hours(event, by_id, pending)
        # Recipients that reached a provider (now or in an earlier pass) fail, not skip, when
        # no channel is left.
        tried = {rid for rid, start in pending.items() if start > 1}
        delivered = Delivered()
        events = delivered.events
        now_ms = _now_ms()
        while pending:
            messages: dict[int, Message] = {}
            for rid, start in pending.items():
                decision = compose(
                    event=event,
                    recipient=by_id[rid],
                    available=providers.keys(),
                    default_sms_sender=self.settings.twilio_from,
                    start_attempt=start,
                )
                if isinstance(decision, Skip):
                    events.append(
                        _unsendable(event.campaign_id, rid, decision, rid in tried, now_ms)
                    )
                else:
                    messages[rid] = decision
            if not messages:
                break
            round_events, unreachable = await self._send_round(
                event, messages, providers, gate, delivered, share
            )
            events.extend(round_events)
            tried.update(messages)
            pending = {
                rid: messages[rid].attempt + 1
                for rid in unreachable
                if messages[rid].attempt < len(event.channels)
            }
            for rid, start in pending.items():
                metrics.FALLBACKS.labels(
                    from_channel=messages[rid].channel.value,
                    to_channel=event.channels[start - 1].value,
                    reason="unreachable",
                ).inc()
        await self.sink.publish(event.campaign_id, events)
        return delivered

    async def _outside_quiet_hours(
        self, event: CampaignConfirmed, by_id: Mapping[int, RecipientRow], pending: dict[int, int]
    ) -> dict[int, int]:
        """Recipients it is quiet-hours for are held until their window opens."""
        hours = (await self.account_settings(event.account_id)).quiet_hours
        if hours is None:
            return pending
        now = datetime.now(UTC)
        held: list[tuple[int, int, datetime]] = []
        for rid, start in pending.items():
            phone = by_id[rid].phone
            until = quiet_until(now, timezone_for(phone) if phone else None, *hours)
            if until is not None:
                held.append((rid, start, until))
        if not held:
            return pending
        await self.attempts.hold(event.campaign_id, held)
        metrics.SKIPPED.labels(reason="quiet_hours_held").inc(len(held))
        waiting = {h[0] for h in held}
        return {rid: start for rid, start in pending.items() if rid not in waiting}

    async def _send_round(
        self,
        event: CampaignConfirmed,
        messages: dict[int, Message],
        providers: Mapping[Channel, Sequence[Provider]],
        gate: Gate | None,
        delivered: Delivered,
        share: Share = WHOLE,
    ) -> tuple[list[StatusEvent], set[int]]:
        """Send one round in micro-batches of one channel each: write the attempt rows, send,
        record the answers. A few micro-batches run at once, so the sends whose answer is not
        yet recorded (what a crash can repeat) stay near the concurrency, not the chunk."""
        by_channel: dict[Channel, list[int]] = defaultdict(list)
        for rid, message in messages.items():
            by_channel[message.channel].append(rid)
        size, in_flight = micro_batching(self.settings.worker_concurrency)
        groups = [
            (channel, ids[i : i + size])
            for channel, ids in by_channel.items()
            for i in range(0, len(ids), size)
        ]
        events: list[StatusEvent] = []
        unreachable: set[int] = set()
        lanes = anyio.Semaphore(in_flight)

        async def run(channel: Channel, ids: list[int]) -> None:
            try:
                got, moved = await self._send_micro(
                    event, providers[channel], channel, ids, messages, gate, delivered, share
                )
                events.extend(got)
                unreachable.update(moved)
            finally:
                lanes.release()

        async with anyio.create_task_group() as tg:
            for channel, ids in groups:
                await lanes.acquire()
                tg.start_soon(run, channel, ids)
        return events, unreachable

    def _pick(self, candidates: Sequence[Provider]) -> Provider:
        """The first provider account in priority order whose breaker lets sends through;
        when every one is open, the first (its breaker holds the work until it closes)."""
        for provider in candidates:
            breaker = self._breakers.get(provider.name)
            if breaker is None or breaker.admits():
                return provider
        return candidates[0]

    async def _send_micro(
        self,
        event: CampaignConfirmed,
        candidates: Sequence[Provider],
        channel: Channel,
        ids: list[int],
        messages: dict[int, Message],
        gate: Gate | None,
        delivered: Delivered,
        share: Share = WHOLE,
    ) -> tuple[list[StatusEvent], set[int]]:
        provider = self._pick(candidates)
        events: list[StatusEvent] = []
        unreachable: set[int] = set()
        created = await self.attempts.insert_pending(
            event.campaign_id,
            ids,
            [messages[i].attempt for i in ids],
            channel.value,
            provider.name,
        )
        to_send = [i for i in ids if i in created]
        seen_before = [i for i in ids if i not in created]
        if seen_before:
            resend = await self.attempts.claim_resend(event.campaign_id, seen_before, channel.value)
            if resend:
                metrics.AMBIGUOUS_RESENDS.labels(channel=channel.value, provider=provider.name).inc(
                    len(resend)
                )
                to_send.extend(sorted(resend))
            for recorded in await self.attempts.existing(
                event.campaign_id, seen_before, channel.value
            ):
                if recorded.recipient_id in resend:
                    continue
                again, moves_on = recorded_event(event.campaign_id, channel, recorded)
                events.append(again)
                if moves_on:
                    unreachable.add(recorded.recipient_id)

        results: dict[int, tuple[SendResult, str]] = {}
        held: list[int] = []

        async def send_one(rid: int) -> None:
            try:
                # Checked here (no slot is taken for a paused campaign) and again right before
                # each provider call (see _send_with_retries).
                if gate is not None and not await gate():
                    held.append(rid)
                    return
                sent = await self._send(event, rid, messages[rid], candidates, gate, share)
                if sent is None:
                    held.append(rid)
                else:
                    results[rid] = sent
            finally:
                self._slots.release()

        async with anyio.create_task_group() as tg:
            for rid in to_send:
                await self._slots.acquire()
                tg.start_soon(send_one, rid)

        rows: list[Result] = []
        now_ms = _now_ms()
        for rid, (result, used) in results.items():
            message = messages[rid]
            verdict = classify(result)
            code = error_code(result)
            rows.append(
                Result(
                    recipient_id=rid,
                    attempt_no=message.attempt,
                    provider=used,
                    outcome=verdict.outcome,
                    provider_message_id=result.provider_message_id,
                    error_code=code,
                    error_description=result.error_description,
                )
            )
            events.append(
                StatusEvent(
                    campaign_id=event.campaign_id,
                    recipient_id=rid,
                    attempt=message.attempt,
                    channel=channel.value,
                    status=verdict.status,
                    occurred_at_ms=now_ms,
                    source="worker",
                    accepted=result.accepted,
                    fallback=verdict.fallback,
                    provider_message_id=result.provider_message_id,
                    error_code=code,
                    error_description=result.error_description,
                )
            )
            if verdict.fallback:
                unreachable.add(rid)
            if self.budget.record(event.campaign_id, failed=budget_failure(result)):
                await self._pause_for_budget(event.account_id, event.campaign_id)
        await self.attempts.record_results(event.campaign_id, rows)
        if held:
            await self.attempts.forget_unsent(event.campaign_id, held, channel.value)
            delivered.held.update(held)
        return events, unreachable

    async def _pause_for_budget(self, account_id: str, campaign_id: str) -> None:
        window = self.settings.error_budget_window
        reason = (
            f"error_budget: more than {self.settings.error_budget_max_failure_ratio:.0%} of "
            f"the last {window} sends failed at the provider"
        )
        if await self.accounts.pause_for_budget(account_id, campaign_id, reason):
            metrics.ERROR_BUDGET_PAUSES.inc()
            log.warning(
                "campaign %s paused: %s",
                campaign_id,
                reason,
                extra={"event": "paused", "campaign_id": campaign_id},
            )

    async def _send(
        self,
        event: CampaignConfirmed,
        rid: int,
        message: Message,
        candidates: Sequence[Provider],
        gate: Gate | None = None,
        share: Share = WHOLE,
    ) -> tuple[SendResult, str] | None:
        mid = message_id(event.campaign_id, rid, message.attempt)
        callback = f"{self.settings.ingress_url}/callbacks/{message.channel.value}"
        if message.channel is Channel.SMS:
            callback = f"{self.settings.ingress_url}{PATH_CALLBACK_TWILIO}?m={mid}"
        template = None
        if message.template_name is not None:
            template = WhatsAppTemplate(
                name=message.template_name,
                language=message.template_language or "en_US",
                components=message.template_components,
            )
        outbound = OutboundMessage(
            message_id=mid,
            channel=message.channel,
            to=message.to,
            sender=message.sender,
            body=message.body,
            callback_url=callback,
            subject=message.subject,
            template=template,
        )
        limiter = await self.limiter_for(event.account_id, message.channel, share)
        return await self._send_with_retries(candidates, outbound, limiter, gate, share)

    def _provider_limiter(self, label: str, share: Share = WHOLE) -> AdaptiveLimiter | None:
        """A provider account's own rate, split over the sub-keys as the account's is: an
        account's own provider account then stays within its contract whichever workers
        send the account's sub-keys."""
        rate = self.transport.rates.get(label)
        if rate is None:
            return None
        limiter = self._provider_limiters.get((label, share.sub))
        if limiter is None:
            limiter = AdaptiveLimiter(share.rate_per_s(rate))
            self._provider_limiters[(label, share.sub)] = limiter
        return limiter

    async def account_settings(self, account_id: str) -> AccountSettings:
        """The account's rate and quiet hours, at most account_settings_ttl_s old: a change
        through the API reaches running sends within that time, without a restart."""
        seen = self._settings_seen.get(account_id)
        if seen is not None and (
            time.monotonic() - seen[0] < self.settings.account_settings_ttl_s
            or account_id in self._refreshing
        ):
            # One caller refreshes; the sends checking meanwhile use the last value.
            return seen[1]
        self._refreshing.add(account_id)
        try:
            current = await self.accounts.settings(account_id)
        finally:
            self._refreshing.discard(account_id)
        if len(self._settings_seen) > 10_000:
            self._settings_seen.clear()
        self._settings_seen[account_id] = (time.monotonic(), current)
        return current

    async def rate_of(self, account_id: str) -> float:
        """The account's send rate per channel (its own, else the deployment's default)."""
        rate = (await self.account_settings(account_id)).rate_per_s
        return rate or self.settings.default_rate_per_s

    async def limiter_for(
        self, account_id: str, channel: Channel, share: Share = WHOLE
    ) -> AdaptiveLimiter:
        """The one limiter of an account's sub-key and channel, at its share of the account's
        current rate: the sub-keys' limiters, wherever they run, add up to the rate."""
        rate_per_s = share.rate_per_s(await self.rate_of(account_id))
        # No await between the look-up and the store: concurrent first sends share one.
        key = (account_id, channel, share.sub)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = AdaptiveLimiter(rate_per_s)
        else:
            limiter.configure(rate_per_s)
        return limiter

    async def _send_with_retries(
        self,
        candidates: Sequence[Provider],
        message: OutboundMessage,
        limiter: AdaptiveLimiter,
        gate: Gate | None = None,
        share: Share = WHOLE,
    ) -> tuple[SendResult, str] | None:
        """The answer and the provider account that gave it; None when `gate` said stop
        before a try (nothing reached a provider on that try, and a 429 or retryable answer
        before it was not taken). Each try goes to the first provider account whose breaker
        is closed, so a failing one drains to the next; what follows an answer is
        domain.dispatch.after_answer's decision."""
        channel = message.channel.value
        waits = metrics.child(metrics.RATE_LIMIT_WAIT, channel=channel)
        tries = Tries()
        while True:
            provider = self._pick(candidates)
            breaker = self._breakers.get(provider.name)
            if breaker is None:
                breaker = self._breakers[provider.name] = Breaker()
            # Waiting for an open breaker is holding, not trying: it uses up no attempt.
            await breaker.wait()
            waited = time.perf_counter()
            await limiter.acquire()
            # A provider account with its own rate: whichever bucket is tighter decides.
            provider_limiter = self._provider_limiter(provider.name, share)
            if provider_limiter is not None:
                await provider_limiter.acquire()
            started = time.perf_counter()
            waits.observe(started - waited)
            # The waits above can take seconds under load: a pause that landed meanwhile holds
            # this send, so no send starts later than the gate's cache time after a pause.
            if gate is not None and not await gate():
                return None
            metrics.SENDS_IN_FLIGHT.inc()
            try:
                result = await provider.send(message)
            finally:
                metrics.SENDS_IN_FLIGHT.dec()
            self._observe(channel, provider.name, result, time.perf_counter() - started)
            step = after_answer(result, tries, random.random())
            if isinstance(step, Hold):
                # The breaker keeps every send of this provider account waiting until its
                # credential works again, and no recipient fails for it.
                breaker.trip()
                metrics.PROVIDER_UNAUTHORIZED.labels(provider=provider.name).inc()
                log.warning(
                    "%s refused herald's credential: sends held until it works again",
                    provider.name,
                    extra={"event": "provider_unauthorized", "provider": provider.name},
                )
            else:
                breaker.record(ok=breaker_ok(result))
            self._breaker_seen(provider.name, channel, breaker)
            for bucket in (limiter, provider_limiter):
                if bucket is None:
                    continue
                if result.error_class is ErrorClass.RATE_LIMITED:
                    bucket.throttled(result.retry_after_s)
                elif result.accepted:
                    bucket.succeeded()
            if isinstance(step, Again):
                tries = step.tries
                await anyio.sleep(step.after_s)
            elif not isinstance(step, Hold):
                return result, provider.name

    def _observe(self, channel: str, provider: str, result: SendResult, took_s: float) -> None:
        metrics.child(metrics.SEND_DURATION, channel=channel, provider=provider).observe(took_s)
        outcome = "accepted" if result.accepted else str(result.error_class)
        metrics.child(metrics.SENDS, channel=channel, provider=provider, outcome=outcome).inc()

    def _breaker_seen(self, provider: str, channel: str, breaker: Breaker) -> None:
        """Export the breaker's state when it changed."""
        state = breaker.state.state
        if self._breaker_states.get((provider, channel)) is not state:
            self._breaker_states[(provider, channel)] = state
            metrics.set_breaker_state(provider=provider, channel=channel, state=state)


def _unsendable(campaign_id: str, rid: int, skip: Skip, tried: bool, now_ms: int) -> StatusEvent:
    metrics.SKIPPED.labels(reason=skip.reason).inc()
    return StatusEvent(
        campaign_id=campaign_id,
        recipient_id=rid,
        attempt=0,
        channel="",
        # Nothing was ever sent: skipped. Something was, and no channel is left: failed.
        status=RecipientStatus.FAILED if tried else RecipientStatus.SKIPPED,
        occurred_at_ms=now_ms,
        source="worker",
        error_code="no_channel_left" if tried else skip.reason,
        error_description=skip.description,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)
