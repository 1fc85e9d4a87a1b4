"""Loops that turn database state into work: fallback publishing, parked callbacks, windows.

- Fallback publishing (status role): recipients the fold marked with a next attempt are
  published as fallback work on dispatch-batches (on the account's sub-key that each
  recipient's id picks, domain/work.recipient_share) and stamped, in one round of the
  publishing engine (bus/publisher.py); a crash republishes, which the worker's attempt rows
  make harmless.
- Parked callbacks (status role): events that named an unknown provider message id are tried
  again until their attempt is recorded, then folded; past HERALD_STATUS_PARK_TIMEOUT_S they
  are dead-lettered with the reason, never dropped.
- Fallback windows (worker role): an accepted attempt with no delivery within the campaign's
  fallback_window_s is declared failed so the chain goes on (on the last channel the
  recipient fails: no report came, so the campaign still completes; a late delivery still
  wins). RBM messages are revoked first, and only a won revoke counts as a failure (else the
  delivery is on its way). The revoke is an HTTP call, so it runs between two rounds, never
  inside a transaction holding attempt rows the status fold locks; a lease keeps other
  sweepers off a window meanwhile, and a won revoke is recorded before its failure is
  published (RBM answers a repeated revoke 404, as if the message had been delivered).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import partial

import anyio
import asyncpg
from aiokafka import AIOKafkaProducer

from herald import loops
from herald.bus import codec, dispatch, envelope, publisher
from herald.bus.consumer import DeadLetter
from herald.constants import TOPIC_STATUS_EVENTS
from herald.domain.channels import Channel
from herald.domain.status import (
    WINDOW_EXPIRED,
    RecipientStatus,
    StatusEvent,
    from_wire,
    message_id,
)
from herald.domain.work import (
    MAX_FALLBACK_ITEMS,
    FallbackItem,
    Share,
    recipient_share,
    shares_for,
)
from herald.providers.directory import Directory
from herald.providers.rbm import RevokeError
from herald.settings import Settings
from herald.status import StatusFolder
from herald.store import attempts, parked, recipients

log = logging.getLogger(__name__)

CLAIM_LIMIT = 1_000
# A sweeper revoking a window's message keeps other sweepers off it this long (two revokes of
# one message at once would make the loser's 404 look like a delivery). It starts no revoke
# past REVOKE_BUDGET_S into a round, so a round in flight ends well inside its lease (each
# revoke is bounded by the provider's own timeout).
REVOKE_LEASE_S = 300
REVOKE_BUDGET_S = 120.0


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
        # Asked before the transaction: a broker that is away fails the round, not a claim.
        count = await dispatch.partitions(self.producer, self.settings)
        due = await publisher.publish_claimed(
            self.pool,
            self.producer,
            claim=partial(recipients.claim_fallback_due, limit=CLAIM_LIMIT),
            encode=partial(self._fallback_messages, partitions=count),
            mark=recipients.mark_fallback_published,
        )
        return len(due)

    def _fallback_messages(
        self, due: Sequence[recipients.FallbackDue], *, partitions: int
    ) -> list[publisher.Message]:
        shares = shares_for(self.settings.dispatch_subkeys, partitions)
        groups: dict[tuple[str, str, Share], list[tuple[int, int]]] = defaultdict(list)
        for d in due:
            share = recipient_share(d.recipient_id, shares)
            groups[(d.campaign_id, d.account_id, share)].append((d.recipient_id, d.next_attempt))
        messages = []
        for (campaign_id, account_id, share), pairs in groups.items():
            for start in range(0, len(pairs), MAX_FALLBACK_ITEMS):
                item = FallbackItem(
                    campaign_id=campaign_id,
                    account_id=account_id,
                    recipients=tuple(pairs[start : start + MAX_FALLBACK_ITEMS]),
                    share=share,
                )
                # On its sub-key: the worker that owns that share of the rate takes it.
                messages.append(dispatch.message(self.settings, item, partitions))
        return messages

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
                    value=envelope.status_items_value([p.event]),
                    key=codec.key(p.provider_message_id),
                    reason=(
                        "unknown_message: no send recorded for provider message id "
                        f"{p.provider_message_id} after {self.settings.status_park_timeout_s:g} s"
                    ),
                )
            await parked.delete(conn, [p.id for p in ready + expired])
        return len(ready) + len(expired)

    async def expire_windows(self, directory: Directory) -> int:
        """Declare expired fallback windows failed; returns the attempts claimed.

        No provider call happens inside a transaction: the status fold locks the same attempt
        rows. (1) One round claims the expired windows: those needing no revoke are published
        as failures and marked; those whose message can be revoked are leased (no other
        sweeper takes them for REVOKE_LEASE_S) and the transaction ends. (2) The revokes go
        out with no transaction open; a won revoke is recorded at once. (3) One round claims
        the leased attempts still waiting and publishes a failure for each whose revoke is
        recorded; a lost revoke (delivered first) is marked with no event, since its callback
        says what happened. A revoke that failed leaves its attempt leased, so it is tried
        again once the lease lapses."""
        ready: list[attempts.Waiting] = []  # no revoke needed: the failure goes out now
        leased: list[attempts.Waiting] = []  # revoked after this transaction
        lease: datetime | None = None

        async def claim(conn: asyncpg.Connection) -> list[attempts.Waiting]:
            waiting = await attempts.claim_expired_windows(conn, CLAIM_LIMIT)
            for w in waiting:
                (ready if _revoker(directory, w) is None else leased).append(w)
            return waiting

        async def mark(conn: asyncpg.Connection, _: object) -> None:
            nonlocal lease
            await attempts.mark_window_expired(conn, ready)
            lease = await attempts.lease_windows(conn, leased, REVOKE_LEASE_S)

        claimed = await publisher.publish_claimed(
            self.pool,
            self.producer,
            claim=claim,
            encode=lambda _: self._window_messages(ready),
            mark=mark,
        )
        if lease is None:
            return len(claimed)
        decided = await self._revoke(directory, leased)
        if decided:
            held = lease
            await publisher.publish_claimed(
                self.pool,
                self.producer,
                claim=lambda conn: attempts.reclaim_windows(conn, decided, held),
                encode=lambda waiting: self._window_messages([w for w in waiting if w.revoked]),
                mark=attempts.mark_window_expired,
            )
        return len(claimed)

    async def _revoke(
        self, directory: Directory, leased: Sequence[attempts.Waiting]
    ) -> list[attempts.Waiting]:
        """Revoke the leased windows' messages, one at a time and outside any transaction;
        returns those whose revoke answered (won or lost)."""
        decided: list[attempts.Waiting] = []
        deadline = time.monotonic() + REVOKE_BUDGET_S
        for w in leased:
            revoke = _revoker(directory, w)
            if revoke is None or w.phone is None:
                continue  # never so: only windows with a revoker are leased
            if time.monotonic() > deadline:
                break  # the rest keep their lease: another round takes them once it lapses
            mid = message_id(w.campaign_id, w.recipient_id, w.attempt_no)
            try:
                withdrawn = await revoke(mid, w.phone)
            except RevokeError as exc:
                log.warning(
                    "revoke of %s failed (%s): tried again in %d s",
                    mid,
                    exc.code,
                    REVOKE_LEASE_S,
                    extra={"event": "revoke_failed", "error": exc.error_class.value},
                )
                continue
            if withdrawn:
                # Before the failure is published: a repeated revoke would answer 404 as if
                # the message had been delivered.
                await attempts.record_revoked(self.pool, w)
            decided.append(w)
        return decided

    def _window_messages(self, expired: Sequence[attempts.Waiting]) -> list[publisher.Message]:
        """A failure event per expired window, one record per campaign (keyed by campaign)."""
        now_ms = int(time.time() * 1000)
        by_campaign: dict[str, list[StatusEvent]] = defaultdict(list)
        for w in expired:
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
        return [
            publisher.Message(topic, codec.key(campaign_id), envelope.status_value(events))
            for campaign_id, events in by_campaign.items()
        ]


def _revoker(
    directory: Directory, w: attempts.Waiting
) -> Callable[[str, str], Awaitable[bool]] | None:
    """The revoke a window's message needs before its failure counts: none when its provider
    cannot revoke, the attempt has no phone, or a revoke of it already won."""
    if w.revoked or not w.phone:
        return None
    provider = directory.by_label(w.provider, Channel(w.channel))
    revoke: Callable[[str, str], Awaitable[bool]] | None = getattr(provider, "revoke", None)
    return revoke


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
