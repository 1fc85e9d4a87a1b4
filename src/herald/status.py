"""The status consumer: folds status events into recipient states and exact counters.

Each poll's events are folded in one transaction: resolve events that name only a provider
message id (unknown ones are parked), lock the recipients and attempts the events name, fold
monotonically (domain.status.fold), write what changed, add the counter deltas, mark
recipients whose chain goes on at the next channel, and complete campaigns whose recipients
are all final. The Kafka offset is committed after the transaction, so a crash re-folds
events that are already applied, which changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import asyncpg
from aiokafka import ConsumerRecord, TopicPartition

from herald import metrics
from herald.bus import codec, envelope
from herald.bus.consumer import DeadLetter
from herald.domain import identities
from herald.domain.channels import Channel, SendingMode, chain
from herald.domain.identities import IdentityEvent
from herald.domain.status import (
    WINDOW_EXPIRED,
    CounterDelta,
    RecipientState,
    RecipientStatus,
    StatusEvent,
    delta_flags,
    fold,
    from_wire,
    is_unresolved,
    to_wire,
)
from herald.store import attempts, campaigns, contacts, parked, recipients

log = logging.getLogger(__name__)

_DELIVERED = (RecipientStatus.DELIVERED, RecipientStatus.READ)


@dataclass(kw_only=True)
class FoldResult:
    orphans: set[tuple[str, int]] = field(default_factory=set)
    # Events whose channel is not their attempt's (a callback of one provider naming an
    # attempt another channel made): never folded.
    mismatched: list[StatusEvent] = field(default_factory=list)
    parked: int = 0
    fallbacks_due: int = 0


class StatusFolder:
    def __init__(self, *, pool: asyncpg.Pool, dead_letter: DeadLetter) -> None:
        self.pool = pool
        self.dead_letter = dead_letter
        self._chains: dict[str, tuple[Channel, ...]] = {}
        # Campaign -> channels whose fallback step succeeds once the provider took it.
        self._stops: dict[str, frozenset[str]] = {}
        # Set when a fold marked recipients for fallback; the sweeper publishes them.
        self.fallback_wake = anyio.Event()

    async def handle(self, tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        with _gc_paused():
            return await self._handle(records)

    async def _handle(self, records: Sequence[ConsumerRecord]) -> bool:
        # Each record with its events, to find the records of events the fold refuses.
        decoded: list[tuple[ConsumerRecord, list[StatusEvent]]] = []
        events: list[StatusEvent] = []
        learned: list[IdentityEvent] = []
        is_identity = identities.is_identity
        for record in records:
            try:
                items = envelope.status_items(record.value)
                parsed = []
                known = []
                for item in items:
                    # Channel identities (a Viber user subscribing) travel on the same topic.
                    if is_identity(item):
                        known.append(identities.from_wire(item))
                    else:
                        parsed.append(from_wire(item))
            except (codec.DecodeError, ValueError) as exc:
                await self.dead_letter.send(record, f"invalid_status: {exc}")
                continue
            decoded.append((record, parsed))
            events += parsed
            learned += known
        if learned:
            async with self.pool.acquire() as conn, conn.transaction():
                await contacts.apply_identities(conn, learned)
        if events:
            result = await self.fold(events)
            if result.orphans:
                for record in _records_of(
                    decoded, lambda e: (e.campaign_id, e.recipient_id) in result.orphans
                ):
                    await self.dead_letter.send(record, "unknown_recipient: no such recipient")
            if result.mismatched:
                wrong = {_attempt_key(e) for e in result.mismatched}
                for record in _records_of(decoded, lambda e: _attempt_key(e) in wrong):
                    await self.dead_letter.send(
                        record, "channel_mismatch: the callback's channel is not its attempt's"
                    )
        return True

    async def fold(self, events: Sequence[StatusEvent]) -> FoldResult:
        """Fold events in one transaction."""
        with _gc_paused():
            return await self._fold(events)

    async def _fold(self, events: Sequence[StatusEvent]) -> FoldResult:
        started = time.perf_counter()
        result = FoldResult()
        # The loops below run once per event and per locked row, so they stay plain: tuples,
        # dict lookups, no objects per event beyond the events themselves.
        async with self.pool.acquire() as conn, conn.transaction():
            events = await self._resolve(conn, events, result)
            chains = await self._chains_of(conn, {e.campaign_id for e in events})
            events = _ends_on_acceptance(events, self._stops)
            by_recipient, by_attempt = _grouped(events, chains, result)
            lengths = {cid: len(steps) for cid, steps in chains.items()}

            current, variants = await recipients.lock_states(conn, by_recipient)
            result.orphans = by_recipient.keys() - current.keys()
            # PostgreSQL and Python take turns in a fold; with two queries each sent before
            # the Python work that does not need their answer, they work side by side.
            locked, rfold = await _meanwhile(
                attempts.lock_states(
                    conn,
                    (k for k in by_attempt if k[:2] in current) if result.orphans else by_attempt,
                ),
                lambda: _fold_recipients(by_recipient, current, lengths, variants),
            )
            _, afold = await _meanwhile(
                recipients.write_states(conn, rfold.writes),
                lambda: _fold_attempts(by_attempt, locked, chains),
            )
            await attempts.write_states(conn, afold.writes)
            await recipients.set_fallback_due(conn, afold.fallback_due)
            await campaigns.apply_counters(
                conn, {k: CounterDelta.of(v) for k, v in rfold.totals.items()}
            )
            if rfold.variant_totals:
                await campaigns.apply_variant_counters(
                    conn, {k: CounterDelta.of(v) for k, v in rfold.variant_totals.items()}
                )
            await campaigns.apply_channel_counters(
                conn, {k: CounterDelta.of(v) for k, v in afold.channel_totals.items()}
            )
            ended = await campaigns.finish(conn, list({k[0] for k in by_recipient}))
        delays, fallback_due, changed = afold.delays, afold.fallback_due, rfold.changed
        for channel, to_channel, reason in afold.fallbacks:
            metrics.FALLBACKS.labels(
                from_channel=channel, to_channel=to_channel, reason=reason
            ).inc()
        for channel, values in delays.items():
            metrics.observe_all(metrics.child(metrics.CALLBACK_DELAY, channel=channel), values)
        for (channel, status, moved), n in rfold.folded_callbacks.items():
            metrics.CALLBACKS_FOLDED.labels(
                channel=channel, status=status.value, outcome="changed" if moved else "unchanged"
            ).inc(n)
        result.fallbacks_due = len(fallback_due)
        if fallback_due:
            self.fallback_wake.set()
        for campaign_id, end in ended.items():
            ended_as = metrics.CAMPAIGNS_FAILED if end == "failed" else metrics.CAMPAIGNS_COMPLETED
            ended_as.inc()
            log.info(
                "campaign %s %s",
                campaign_id,
                end,
                extra={"event": "campaign_ended", "campaign_id": campaign_id, "status": end},
            )
        metrics.STATUS_EVENTS_FOLDED.labels(outcome="changed").inc(changed)
        # Every event that was folded is in a recipient's group (mismatched ones are not).
        folded = sum(len(group) for group in by_recipient.values())
        metrics.STATUS_EVENTS_FOLDED.labels(outcome="unchanged").inc(folded - changed)
        metrics.FOLD_DURATION.observe(time.perf_counter() - started)
        return result

    async def _resolve(
        self, conn: asyncpg.Connection, events: Sequence[StatusEvent], result: FoldResult
    ) -> list[StatusEvent]:
        """Events that name only a provider message id get their attempt; unknown ones wait
        in parked_status_events (the callback raced the send's bookkeeping)."""
        # is_unresolved, inline: this runs once per event.
        unresolved = [e for e in events if not e.campaign_id]
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
            if event.channel and event.channel != found.channel:
                result.mismatched.append(event)
                continue
            kept.append(
                event._replace(
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
                self._stops.clear()
            for cid, (mode, stops) in (await campaigns.sending_modes(conn, missing)).items():
                self._chains[cid] = chain(SendingMode(mode))
                if stops:
                    self._stops[cid] = stops
        return {c: self._chains[c] for c in campaign_ids if c in self._chains}


_OWN_SOURCES = frozenset({"worker", "sweeper"})


def _attempt_key(event: StatusEvent) -> tuple[str, int, int, str | None]:
    return (event.campaign_id, event.recipient_id, event.attempt, event.provider_message_id)


def _records_of(
    decoded: Sequence[tuple[ConsumerRecord, Sequence[StatusEvent]]],
    refused: Callable[[StatusEvent], bool],
) -> list[ConsumerRecord]:
    """The records holding at least one refused event, each once, in order."""
    return [record for record, events in decoded if any(refused(e) for e in events)]


def _ends_on_acceptance(
    events: list[StatusEvent], stops: dict[str, frozenset[str]]
) -> list[StatusEvent]:
    """A provider's failure report on a channel whose fallback step succeeds once the
    provider took the message (success accepted or sent) ends the chain there: the recipient
    fails on that channel instead of moving on. Herald's own answers (a synchronous "not
    reachable" from the worker) still move on: the provider never took those."""
    if not stops:
        return events
    return [
        e._replace(fallback=False)
        if e.fallback and e.source not in _OWN_SOURCES and e.channel in stops.get(e.campaign_id, ())
        else e
        for e in events
    ]


def _grouped(
    events: list[StatusEvent], chains: dict[str, tuple[Channel, ...]], result: FoldResult
) -> tuple[dict[tuple[str, int], list[StatusEvent]], dict[tuple[str, int, int], list[StatusEvent]]]:
    """Events by recipient and by attempt, in one pass. Only events whose channel is the one
    their attempt used: attempt n of a campaign is the n-th channel of its chain; anything else
    (a WhatsApp `read` naming an SMS attempt) is set aside in result.mismatched."""
    # Channel names by value once, not an enum attribute read per event.
    names = {cid: tuple(step.value for step in steps) for cid, steps in chains.items()}
    by_recipient: dict[tuple[str, int], list[StatusEvent]] = {}
    by_attempt: dict[tuple[str, int, int], list[StatusEvent]] = {}
    for event in events:
        campaign_id, recipient_id, n = event.campaign_id, event.recipient_id, event.attempt
        if n > 0:
            steps = names.get(campaign_id)
            if steps is not None and (n > len(steps) or steps[n - 1] != event.channel):
                result.mismatched.append(event)
                continue
            akey = (campaign_id, recipient_id, n)
            group = by_attempt.get(akey)
            if group is None:
                by_attempt[akey] = [event]
            else:
                group.append(event)
        rkey = (campaign_id, recipient_id)
        group = by_recipient.get(rkey)
        if group is None:
            by_recipient[rkey] = [event]
        else:
            group.append(event)
    return by_recipient, by_attempt


T = TypeVar("T")
U = TypeVar("U")


async def _meanwhile(query: Coroutine[Any, Any, T], work: Callable[[], U]) -> tuple[T, U]:
    """Sends query, runs work (Python only, no awaits) while PostgreSQL answers it, and
    returns both results."""
    task = asyncio.ensure_future(query)
    # One turn of the loop: the task writes the query to the socket before work starts.
    await asyncio.sleep(0)
    try:
        done = work()
    except BaseException:
        with contextlib.suppress(Exception):
            await task  # the connection is free again before the transaction rolls back
        raise
    return await task, done


@dataclass(kw_only=True)
class _RecipientFold:
    writes: list[tuple[tuple[str, int], RecipientState]]
    totals: dict[str, list[int]]
    # (campaign, A/B variant) -> the same sums, for recipients that have a variant.
    variant_totals: dict[tuple[str, int], list[int]]
    folded_callbacks: dict[tuple[str, RecipientStatus, bool], int]
    changed: int


def _fold_recipients(
    by_recipient: dict[tuple[str, int], list[StatusEvent]],
    current: dict[tuple[str, int], RecipientState],
    lengths: dict[str, int],
    variants: dict[tuple[str, int], int],
) -> _RecipientFold:
    """Recipients' new states, counter totals per campaign and per A/B variant (`variants`:
    the locked recipients that have one) and callback counts (metrics are gathered per fold: a
    labels() call per event costs more than the fold itself). Runs once per event: plain
    tuples and dict lookups only."""
    writes: list[tuple[tuple[str, int], RecipientState]] = []
    folded_callbacks: dict[tuple[str, RecipientStatus, bool], int] = {}
    # Counters as flag tuples per transition (and variant), counted, then summed once.
    transitions: dict[tuple[str, int | None, RecipientState, RecipientState], int] = {}
    variant_of = variants.get
    changed = 0
    for key, evs in by_recipient.items():
        before = current.get(key)
        if before is None:
            continue
        after = fold(before, evs, lengths.get(key[0], 0))
        moved = after != before
        if moved:
            writes.append((key, after))
            tkey = (key[0], variant_of(key), before, after)
            transitions[tkey] = transitions.get(tkey, 0) + 1
            changed += len(evs)
        for e in evs:
            if e.source not in _OWN_SOURCES:
                ckey = (e.channel, e.status, moved)
                folded_callbacks[ckey] = folded_callbacks.get(ckey, 0) + 1
    totals: dict[str, list[int]] = {}
    variant_totals: dict[tuple[str, int], list[int]] = {}
    for (cid, variant, before, after), n in transitions.items():
        flags = delta_flags(before, after)
        _add(totals.setdefault(cid, [0] * 7), flags, n)
        if variant is not None:
            _add(variant_totals.setdefault((cid, variant), [0] * 7), flags, n)
    return _RecipientFold(
        writes=writes,
        totals=totals,
        variant_totals=variant_totals,
        folded_callbacks=folded_callbacks,
        changed=changed,
    )


@dataclass(kw_only=True)
class _AttemptFold:
    writes: list[tuple[tuple[str, int, int], RecipientState, str | None]]
    channel_totals: dict[tuple[str, str], list[int]]
    fallback_due: list[tuple[str, int, int]]
    # (from channel, to channel, reason) per hand-over, for the metric.
    fallbacks: list[tuple[str, str, str]]
    delays: dict[str, list[float]]


def _fold_attempts(
    by_attempt: dict[tuple[str, int, int], list[StatusEvent]],
    locked: dict[tuple[str, int, int], attempts.LockedAttempt],
    chains: dict[str, tuple[Channel, ...]],
) -> _AttemptFold:
    """Attempts' new states, per-channel counter totals, callback delays and the recipients
    whose chain goes on at the next channel."""
    writes = []
    # Channel counters as flag tuples per transition, counted, then summed once.
    transitions: dict[tuple[str, str, RecipientStatus, bool, RecipientStatus, bool], int] = {}
    fallback_due: list[tuple[str, int, int]] = []
    fallbacks: list[tuple[str, str, str]] = []
    delays: dict[str, list[float]] = defaultdict(list)
    now = datetime.now(UTC)
    failed = RecipientStatus.FAILED
    for akey, (state, created_at, has_message_id) in locked.items():
        evs = by_attempt[akey]
        after = fold(state, evs)
        if after == state:
            continue
        # A row that has its provider message id keeps it (the write would not change it).
        provider_id = (
            None
            if has_message_id
            else evs[0].provider_message_id
            or next((e.provider_message_id for e in evs if e.provider_message_id), None)
        )
        writes.append((akey, after, provider_id))
        channel = state.channel or ""
        tkey = (akey[0], channel, state.status, state.accepted, after.status, after.accepted)
        transitions[tkey] = transitions.get(tkey, 0) + 1
        if after.status in _DELIVERED and state.status not in _DELIVERED:
            delays[channel].append(max(0.0, (now - created_at).total_seconds()))
        if after.status is failed:
            steps = chains.get(akey[0], ())
            if _hands_over(state, after, evs, akey[2], len(steps)):
                fallback_due.append((akey[0], akey[1], akey[2] + 1))
                reason = "window_expired" if after.error_code == WINDOW_EXPIRED else "failed"
                fallbacks.append((channel, steps[akey[2]].value, reason))
    channel_totals: dict[tuple[str, str], list[int]] = {}
    for (cid, channel, b_status, b_accepted, a_status, a_accepted), n in transitions.items():
        flags = delta_flags(
            RecipientState(status=b_status, accepted=b_accepted),
            RecipientState(status=a_status, accepted=a_accepted),
        )
        _add(channel_totals.setdefault((cid, channel), [0] * 7), flags, n)
    return _AttemptFold(
        writes=writes,
        channel_totals=channel_totals,
        fallback_due=fallback_due,
        fallbacks=fallbacks,
        delays=delays,
    )


# Longest the collector stays off while folds overlap without a break (several partitions
# folded side by side): then it runs once, so cyclic garbage of other roles in the same
# process (`run all`) does not pile up.
GC_PAUSE_MAX_S = 5.0
_gc_pauses = 0
_gc_paused_at = 0.0


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while events are folded. A fold keeps tens of
    thousands of young tuples alive at once, across its queries, which made the collector run
    over and over (full collections too) and took about 40% of the fold's CPU; they hold no
    cycles and are freed by reference counts. Turning it off only around the stretches with
    no awaits did not help: the collections moved to the row decoding in between. Folds of
    several partitions may overlap (a counter): the collector is back on when the last ends."""
    global _gc_pauses, _gc_paused_at
    if _gc_pauses == 0:
        if not gc.isenabled():
            yield  # someone else turned it off; leave it as it is
            return
        gc.disable()
        _gc_paused_at = time.monotonic()
    _gc_pauses += 1
    try:
        yield
    finally:
        _gc_pauses -= 1
        if _gc_pauses == 0:
            gc.enable()
        elif time.monotonic() - _gc_paused_at > GC_PAUSE_MAX_S:
            gc.collect()
            _gc_paused_at = time.monotonic()


def _add(total: list[int], flags: Sequence[int], times: int = 1) -> None:
    for i, value in enumerate(flags):
        total[i] += value * times


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
