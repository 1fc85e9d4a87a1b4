"""The status consumer: folds status events into recipient states and exact counters.

Each poll's events are folded in one transaction: resolve events that name only a provider
message id (unknown ones are parked), lock the recipients and attempts the events name, fold
monotonically (domain.status.fold), write what changed, add the counter deltas, mark
recipients whose chain goes on at the next channel, and complete campaigns whose recipients
are all final. The Kafka offset is committed after the transaction, so a crash re-folds
events that are already applied, which changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import anyio
import asyncpg
from aiokafka import ConsumerRecord, TopicPartition

from herald import metrics
from herald.bus import codec
from herald.bus.consumer import DeadLetter
from herald.domain.channels import Channel, SendingMode, chain
from herald.domain.status import (
    WINDOW_EXPIRED,
    CounterDelta,
    RecipientState,
    RecipientStatus,
    StatusEvent,
    delta_flags,
    fold,
    for_recipient,
    from_wire,
    is_unresolved,
    to_wire,
)
from herald.store import attempts, campaigns, parked, recipients

log = logging.getLogger(__name__)

_DELIVERED = (RecipientStatus.DELIVERED, RecipientStatus.READ)


@dataclass(kw_only=True)
class FoldResult:
    orphans: set[tuple[str, int]] = field(default_factory=set)
    parked: int = 0
    fallbacks_due: int = 0


class StatusFolder:
    def __init__(self, *, pool: asyncpg.Pool, dead_letter: DeadLetter) -> None:
        self.pool = pool
        self.dead_letter = dead_letter
        self._chains: dict[str, tuple[Channel, ...]] = {}
        # Set when a fold marked recipients for fallback; the sweeper publishes them.
        self.fallback_wake = anyio.Event()

    async def handle(self, tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        events: list[tuple[ConsumerRecord, StatusEvent]] = []
        for record in records:
            try:
                raw = codec.decode(record.value)
                if not isinstance(raw, dict) or not isinstance(raw.get("events"), list):
                    raise ValueError("status record must be an object with an events list")
                parsed = [from_wire(item) for item in raw["events"]]
            except (codec.DecodeError, ValueError) as exc:
                await self.dead_letter.send(record, f"invalid_status: {exc}")
                continue
            events.extend((record, e) for e in parsed)
        if events:
            result = await self.fold([e for _, e in events])
            if result.orphans:
                bad = {
                    id(r): r for r, e in events if (e.campaign_id, e.recipient_id) in result.orphans
                }
                for record in bad.values():
                    await self.dead_letter.send(record, "unknown_recipient: no such recipient")
        return True

    async def fold(self, events: Sequence[StatusEvent]) -> FoldResult:
        """Fold events in one transaction."""
        started = time.perf_counter()
        result = FoldResult()
        async with self.pool.acquire() as conn, conn.transaction():
            events = await self._resolve(conn, events, result)
            by_recipient: dict[tuple[str, int], list[StatusEvent]] = defaultdict(list)
            by_attempt: dict[tuple[str, int, int], list[StatusEvent]] = defaultdict(list)
            for event in events:
                by_recipient[(event.campaign_id, event.recipient_id)].append(event)
                if event.attempt > 0:
                    by_attempt[(event.campaign_id, event.recipient_id, event.attempt)].append(event)
            chains = await self._chains_of(conn, {k[0] for k in by_recipient})

            current = await recipients.lock_states(conn, by_recipient)
            result.orphans = set(by_recipient) - set(current)
            writes: list[tuple[tuple[str, int], RecipientState]] = []
            # Metric increments are gathered per fold: a labels() call per event costs more
            # than the fold itself.
            folded_callbacks: Counter[tuple[str, str, str]] = Counter()
            totals: dict[str, list[int]] = defaultdict(lambda: [0] * 7)
            changed = 0
            for key, evs in by_recipient.items():
                before = current.get(key)
                if before is None:
                    continue
                length = len(chains.get(key[0], ()))
                after = fold(before, [for_recipient(e, length) for e in evs])
                if after != before:
                    writes.append((key, after))
                    _add(totals[key[0]], delta_flags(before, after))
                    changed += len(evs)
                outcome = "changed" if after != before else "unchanged"
                for e in evs:
                    if e.source not in _OWN_SOURCES:
                        folded_callbacks[(e.channel, e.status.value, outcome)] += 1

            locked = await attempts.lock_states(conn, (k for k in by_attempt if k[:2] in current))
            attempt_writes = []
            channel_totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * 7)
            fallback_due: list[tuple[str, int, int]] = []
            delays: dict[str, list[float]] = defaultdict(list)
            now = datetime.now(UTC)
            for akey, evs in by_attempt.items():
                found = locked.get(akey)
                if found is None:
                    continue
                after = fold(found.state, evs)
                if after == found.state:
                    continue
                provider_id = next(
                    (e.provider_message_id for e in evs if e.provider_message_id), None
                )
                attempt_writes.append((akey, after, provider_id))
                channel = found.state.channel or ""
                _add(channel_totals[(akey[0], channel)], delta_flags(found.state, after))
                if after.status in _DELIVERED and found.state.status not in _DELIVERED:
                    delays[channel].append(max(0.0, (now - found.created_at).total_seconds()))
                steps = chains.get(akey[0], ())
                if _hands_over(found.state, after, evs, akey[2], len(steps)):
                    fallback_due.append((akey[0], akey[1], akey[2] + 1))
                    metrics.FALLBACKS.labels(
                        from_channel=channel,
                        to_channel=steps[akey[2]].value,
                        reason="window_expired" if after.error_code == WINDOW_EXPIRED else "failed",
                    ).inc()

            await recipients.write_states(conn, writes)
            await attempts.write_states(conn, attempt_writes)
            await recipients.set_fallback_due(conn, fallback_due)
            await campaigns.apply_counters(conn, {k: CounterDelta.of(v) for k, v in totals.items()})
            await campaigns.apply_channel_counters(
                conn, {k: CounterDelta.of(v) for k, v in channel_totals.items()}
            )
            completed = await campaigns.complete_finished(conn, list({k[0] for k in by_recipient}))
        for channel, values in delays.items():
            histogram = metrics.CALLBACK_DELAY.labels(channel=channel)
            for value in values:
                histogram.observe(value)
        for (channel, status, outcome), n in folded_callbacks.items():
            metrics.CALLBACKS_FOLDED.labels(channel=channel, status=status, outcome=outcome).inc(n)
        result.fallbacks_due = len(fallback_due)
        if fallback_due:
            self.fallback_wake.set()
        for campaign_id in completed:
            metrics.CAMPAIGNS_COMPLETED.inc()
            log.info("campaign %s completed", campaign_id, extra={"event": "campaign_completed"})
        metrics.STATUS_EVENTS_FOLDED.labels(outcome="changed").inc(changed)
        metrics.STATUS_EVENTS_FOLDED.labels(outcome="unchanged").inc(len(events) - changed)
        metrics.FOLD_DURATION.observe(time.perf_counter() - started)
        return result

    async def _resolve(
        self, conn: asyncpg.Connection, events: Sequence[StatusEvent], result: FoldResult
    ) -> list[StatusEvent]:
        """Events that name only a provider message id get their attempt; unknown ones wait
        in parked_status_events (the callback raced the send's bookkeeping)."""
        unresolved = [e for e in events if is_unresolved(e)]
        if not unresolved:
            return list(events)
        ids = sorted({e.provider_message_id for e in unresolved if e.provider_message_id})
        located = await attempts.resolve(conn, ids)
        kept = [e for e in events if not is_unresolved(e)]
        to_park = []
        for event in unresolved:
            found = located.get(event.provider_message_id or "")
            if found is None:
                to_park.append((event.provider_message_id or "", to_wire(event)))
                continue
            kept.append(
                replace(
                    event,
                    campaign_id=found.campaign_id,
                    recipient_id=found.recipient_id,
                    attempt=found.attempt_no,
                    channel=found.channel,
                )
            )
        await parked.park(conn, to_park)
        result.parked = len(to_park)
        return kept

    async def _chains_of(
        self, conn: asyncpg.Connection, campaign_ids: set[str]
    ) -> dict[str, tuple[Channel, ...]]:
        missing = [c for c in campaign_ids if c not in self._chains]
        if missing:
            if len(self._chains) > 10_000:
                self._chains.clear()
            for cid, mode in (await campaigns.sending_modes(conn, missing)).items():
                self._chains[cid] = chain(SendingMode(mode))
        return {c: self._chains[c] for c in campaign_ids if c in self._chains}


_OWN_SOURCES = frozenset({"worker", "sweeper"})


def _add(total: list[int], flags: Sequence[int]) -> None:
    for i, value in enumerate(flags):
        total[i] += value


def _hands_over(
    before: RecipientState,
    after: RecipientState,
    events: Sequence[StatusEvent],
    attempt: int,
    chain_length: int,
) -> bool:
    """An asynchronous failure that moves the recipient to the next channel. Synchronous
    ones (source "worker") are handed over by the worker within its own pass."""
    if after.status is not RecipientStatus.FAILED or before.status is RecipientStatus.FAILED:
        return False
    if attempt >= chain_length:
        return False
    return any(
        e.status is RecipientStatus.FAILED and e.fallback and e.source != "worker" for e in events
    )
