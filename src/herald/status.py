"""The status consumer: folds status events into recipient states and exact counters.

Each poll's events are folded in one transaction: lock the recipients and attempts they name,
fold monotonically (domain.status.fold), write what changed, add the counter deltas, complete
campaigns whose recipients are all final. The Kafka offset is committed after the transaction,
so a crash re-folds events that are already applied, which changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from aiokafka import ConsumerRecord, TopicPartition

from herald import metrics
from herald.bus import codec
from herald.bus.consumer import DeadLetter
from herald.domain.status import (
    CounterDelta,
    RecipientState,
    RecipientStatus,
    StatusEvent,
    delta,
    fold,
    from_wire,
)
from herald.store import attempts, campaigns, recipients

log = logging.getLogger(__name__)


class StatusFolder:
    def __init__(self, *, pool: asyncpg.Pool, dead_letter: DeadLetter) -> None:
        self.pool = pool
        self.dead_letter = dead_letter

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
            orphans = await self.fold([e for _, e in events])
            if orphans:
                bad_records = {
                    id(r): r for r, e in events if (e.campaign_id, e.recipient_id) in orphans
                }
                for record in bad_records.values():
                    await self.dead_letter.send(record, "unknown_recipient: no such recipient")
        return True

    async def fold(self, events: Sequence[StatusEvent]) -> set[tuple[str, int]]:
        """Fold events in one transaction; returns recipient keys that do not exist."""
        started = time.perf_counter()
        by_recipient: dict[tuple[str, int], list[StatusEvent]] = defaultdict(list)
        by_attempt: dict[tuple[str, int, int], list[StatusEvent]] = defaultdict(list)
        for event in events:
            by_recipient[(event.campaign_id, event.recipient_id)].append(event)
            if event.attempt > 0:
                by_attempt[(event.campaign_id, event.recipient_id, event.attempt)].append(event)

        changed = 0
        async with self.pool.acquire() as conn, conn.transaction():
            current = await recipients.lock_states(conn, by_recipient)
            orphans = set(by_recipient) - set(current)
            writes: list[tuple[tuple[str, int], RecipientState]] = []
            totals: dict[str, CounterDelta] = defaultdict(CounterDelta)
            for key, evs in by_recipient.items():
                before = current.get(key)
                if before is None:
                    continue
                after = fold(before, evs)
                if after != before:
                    writes.append((key, after))
                    totals[key[0]] += delta(before, after)
                    changed += len(evs)

            locked = await attempts.lock_states(conn, (k for k in by_attempt if k[:2] in current))
            attempt_writes = []
            channel_totals: dict[tuple[str, str], CounterDelta] = defaultdict(CounterDelta)
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
                channel_totals[(akey[0], found.state.channel or "")] += delta(found.state, after)
                if after.status in (RecipientStatus.DELIVERED, RecipientStatus.READ) and (
                    found.state.status not in (RecipientStatus.DELIVERED, RecipientStatus.READ)
                ):
                    metrics.CALLBACK_DELAY.labels(channel=found.state.channel or "").observe(
                        max(0.0, (now - found.created_at).total_seconds())
                    )

            await recipients.write_states(conn, writes)
            await attempts.write_states(conn, attempt_writes)
            await campaigns.apply_counters(conn, totals)
            await campaigns.apply_channel_counters(conn, channel_totals)
            completed = await campaigns.complete_finished(conn, list({k[0] for k in by_recipient}))
        for campaign_id in completed:
            metrics.CAMPAIGNS_COMPLETED.inc()
            log.info("campaign %s completed", campaign_id, extra={"event": "campaign_completed"})
        metrics.STATUS_EVENTS_FOLDED.labels(outcome="changed").inc(changed)
        metrics.STATUS_EVENTS_FOLDED.labels(outcome="unchanged").inc(len(events) - changed)
        metrics.FOLD_DURATION.observe(time.perf_counter() - started)
        return orphans
