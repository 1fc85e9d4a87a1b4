"""The scheduler: campaign.confirmed in, recipient rows and dispatch batches out.

Receiving and expanding are separate so that both are crash-safe. The consumer stores each
valid event as a `scheduled` campaign (deduplicated by campaign id) and commits. A ticker
claims due campaigns with FOR UPDATE SKIP LOCKED and expands each in one transaction
(set-based SQL, never a loop over recipients), then publishes due batches and marks them
published. A crash anywhere repeats a step whose effect is idempotent.

Each batch_size range is expanded into one batch per sub-key of the account, and batch k is
published on sub-key (k - 1) % shares (domain/work.py, bus/dispatch.py): one account's
campaign is sent by that many workers at once, each at its share of the account's rate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial

import anyio
import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from herald import loops, metrics
from herald.bus import codec, dispatch, publisher
from herald.bus.consumer import DeadLetter
from herald.domain.events import EventError, parse_campaign_confirmed
from herald.domain.work import BatchItem, batch_ranges, batch_share, shares_for
from herald.settings import Settings
from herald.store import campaigns, reconcile
from herald.store.db import TRANSIENT, translate

log = logging.getLogger(__name__)

PUBLISH_LIMIT = 100


class Scheduler:
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
        self._wake = anyio.Event()

    async def handle(self, tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        for record in records:
            try:
                raw = codec.decode(record.value)
                event = parse_campaign_confirmed(raw)
            except codec.DecodeError as exc:
                await self.dead_letter.send(record, f"invalid_event: {exc}")
                continue
            except EventError as exc:
                await self.dead_letter.send(record, f"invalid_event: {exc}")
                continue
            try:
                admitted = await campaigns.admit(
                    self.pool,
                    event,
                    raw,
                    create_accounts=self.settings.accounts_create_on_first_event,
                )
            except (asyncpg.PostgresError, *TRANSIENT) as exc:
                raise translate(exc) from exc
            if admitted is campaigns.Admission.UNKNOWN_ACCOUNT:
                await self.dead_letter.send(
                    record, f"unknown_account: no account {event.account_id!r}"
                )
                continue
            if admitted is campaigns.Admission.ID_TAKEN:
                await self.dead_letter.send(
                    record, "campaign_id_taken: another account holds this campaign id"
                )
                continue
            log.info(
                "campaign %s %s",
                event.campaign_id,
                "received" if admitted is campaigns.Admission.INSERTED else "already known",
                extra={
                    "event": "campaign_received",
                    "campaign_id": event.campaign_id,
                    "account_id": event.account_id,
                },
            )
        self._wake.set()
        return True

    async def tick_forever(self, stop: anyio.Event) -> None:
        """Expand due campaigns and publish due batches until stopped. A tick that fails on
        PostgreSQL or Kafka (a broker that stopped answering) is retried after a backoff;
        the batches it did not mark published are published then."""
        await loops.every(
            "scheduler tick", self.settings.scheduler_poll_s, self.tick, stop, lambda: self._wake
        )

    async def reconcile_forever(self, stop: anyio.Event) -> None:
        """Put back, every reconcile_interval_s, the work PostgreSQL says is owed and Kafka
        no longer carries (store/reconcile.py)."""
        await loops.every("reconcile", self.settings.reconcile_interval_s, self.reconcile, stop)

    async def archive_forever(self, stop: anyio.Event) -> None:
        """Move ended campaigns' recipient rows into the archive schema once
        recipients_retention_days have passed (never, when it is 0)."""
        if self.settings.recipients_retention_days <= 0:
            return
        await loops.every(
            "recipients archive",
            self.settings.recipients_archive_interval_s,
            self.archive,
            stop,
        )

    async def archive(self) -> bool:
        """Archives one campaign's recipient rows if one is due; True when it did (there may
        be more)."""
        ended_before = datetime.now(UTC) - timedelta(days=self.settings.recipients_retention_days)
        done = await campaigns.archive_recipients(self.pool, ended_before)
        if done is None:
            return False
        campaign_id, table = done
        log.info(
            "campaign %s recipients archived into %s",
            campaign_id,
            table,
            extra={"event": "recipients_archived", "campaign_id": campaign_id, "table": table},
        )
        return True

    async def reconcile(self) -> bool:
        repaired = await reconcile.repair(self.pool, after_s=self.settings.reconcile_after_s)
        for kind in ("batches", "fallbacks", "admitted"):
            metrics.RECONCILED.labels(kind=kind).inc(getattr(repaired, kind))
        if repaired.total:
            # Work coming back means Kafka lost it: worth a line an operator sees.
            log.warning(
                "reconciled lost work: %d batches, %d fallbacks, %d campaigns admitted",
                repaired.batches,
                repaired.fallbacks,
                repaired.admitted,
                extra={"event": "reconciled"},
            )
            self._wake.set()
        return False

    async def tick(self) -> bool:
        """One round; True when there may be more work right away."""
        # A fresh wake event first, so a campaign received meanwhile wakes the next round.
        self._wake = anyio.Event()
        expanded = await self.expand_one()
        published = await self.publish_due()
        return expanded or published >= PUBLISH_LIMIT

    async def expand_one(self) -> bool:
        # Asked before the transaction: a broker that is away fails the round, not a claim.
        parts = await dispatch.shares(self.producer, self.settings)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await campaigns.claim_due(conn)
            if row is None:
                return False
            started = time.perf_counter()
            try:
                event = parse_campaign_confirmed(row["event"])
            except EventError as exc:  # stored events were validated; a schema change got here
                log.error("stored event unreadable: %s", exc, extra={"event": "event_unreadable"})
                return False
            total = await campaigns.expand(
                conn, event, parts=parts, partition_from=self.settings.recipients_partition_from
            )
        elapsed = time.perf_counter() - started
        batches = batch_ranges(total, event.batch_size, parts)
        metrics.EXPANSION_DURATION.observe(elapsed)
        metrics.BATCHES_EXPANDED.inc(len(batches))
        for batch in batches:
            metrics.BATCH_SIZE.observe(batch.last_id - batch.first_id + 1)
        log.info(
            "campaign %s expanded: %d recipients in %d batches (%.2fs)",
            event.campaign_id,
            total,
            len(batches),
            elapsed,
            extra={"event": "campaign_expanded"},
        )
        return True

    async def publish_due(self) -> int:
        # Asked before the transaction: a broker that is away fails the round, not a claim.
        count = await dispatch.partitions(self.producer, self.settings)
        shares = shares_for(self.settings.dispatch_subkeys, count)

        def encode(due: Sequence[BatchItem]) -> list[publisher.Message]:
            # On its sub-key: one worker owns each share of the account's rate at a time.
            return [
                dispatch.message(
                    self.settings, replace(b, share=batch_share(b.batch_no, shares)), count
                )
                for b in due
            ]

        async def mark(conn: asyncpg.Connection, due: Sequence[BatchItem]) -> None:
            by_campaign: dict[str, list[int]] = {}
            for batch in due:
                by_campaign.setdefault(batch.campaign_id, []).append(batch.batch_no)
            for campaign_id, numbers in by_campaign.items():
                await campaigns.mark_published(conn, campaign_id, numbers)

        published = await publisher.publish_claimed(
            self.pool,
            self.producer,
            claim=partial(campaigns.due_batches, limit=PUBLISH_LIMIT),
            encode=encode,
            mark=mark,
        )
        return len(published)
