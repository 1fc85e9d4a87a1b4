"""Dispatch batches (scheduler) and fallback work (sweeper) through the publishing engine,
against real PostgreSQL and the embedded broker: every message acknowledged before its rows
are marked, and one failed ack marks none of them."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from herald.bus import codec
from herald.bus.consumer import DeadLetter
from herald.bus.producer import producer
from herald.bus.topics import ensure_topics
from herald.demo import campaign_event
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.domain.work import BatchItem, FallbackItem, parse_work
from herald.scheduler import Scheduler
from herald.settings import Settings
from herald.store import campaigns, db
from herald.sweeper import Sweeper
from tests.producers import LastAckFails, Recording

PHONES = [f"+1415555{n:04d}" for n in range(100, 105)]


async def _campaign(pool: asyncpg.Pool, cid: str) -> None:
    """Five recipients in batches of two (three batches), sending."""
    raw = campaign_event(campaign_id=cid, account_id="acct", mode=SendingMode.RCS_SMS, tags=[])
    raw["audience"] = {"destinations": PHONES}
    raw["batch_size"] = 2
    event = parse_campaign_confirmed(raw)
    assert await campaigns.insert(pool, event, raw)
    async with pool.acquire() as conn, conn.transaction():
        assert await campaigns.expand(conn, event) == 5
    await pool.execute("UPDATE campaigns SET status = 'sending' WHERE id = $1", cid)


async def test_batches_are_marked_only_once_every_ack_is_in(settings: Settings) -> None:
    cid = "pub-batches"
    # One sub-key: every record on the account's own key (tests/unit/test_subkeys.py has them).
    one_key = settings.with_overrides(dispatch_subkeys=1)
    await ensure_topics(settings)
    async with db.pool(settings.database_url) as pool, producer(settings) as kafka:
        await _campaign(pool, cid)

        def scheduler(p: Any) -> Scheduler:
            return Scheduler(
                settings=one_key,
                pool=pool,
                producer=p,
                dead_letter=DeadLetter(settings=settings, producer=kafka),
            )

        failing = LastAckFails(kafka, sends=3)
        with pytest.raises(OSError, match="no ack"):
            await scheduler(failing).publish_due()
        assert len(failing.sent) == 3  # all sent at once, then the acks awaited
        unpublished = "SELECT count(*) FROM batches WHERE campaign_id = $1 AND published_at IS NULL"
        assert await pool.fetchval(unpublished, cid) == 3

        recording = Recording(kafka)
        assert await scheduler(recording).publish_due() == 3
        assert await pool.fetchval(unpublished, cid) == 0
        items = [parse_work(codec.decode(v)) for _, v in recording.sent]
        batches = [i for i in items if isinstance(i, BatchItem)]
        assert len(batches) == len(items)
        assert sorted((i.campaign_id, i.first_id) for i in batches) == [
            (cid, 1),
            (cid, 3),
            (cid, 5),
        ]
        assert {k for k, _ in recording.sent} == {b"acct"}
        assert await scheduler(recording).publish_due() == 0


async def test_fallback_work_is_marked_only_once_every_ack_is_in(settings: Settings) -> None:
    cid = "pub-fallbacks"
    one_key = settings.with_overrides(dispatch_subkeys=1)
    await ensure_topics(settings)
    async with db.pool(settings.database_url) as pool, producer(settings) as kafka:
        await _campaign(pool, cid)
        await pool.execute(
            "UPDATE recipients SET next_attempt = 2 WHERE campaign_id = $1 AND id <= 4", cid
        )

        def sweeper(p: Any) -> Sweeper:
            return Sweeper(
                settings=one_key,
                pool=pool,
                producer=p,
                dead_letter=DeadLetter(settings=settings, producer=kafka),
            )

        unmarked = (
            "SELECT count(*) FROM recipients WHERE campaign_id = $1"
            " AND next_attempt IS NOT NULL AND fallback_published_at IS NULL"
        )
        with pytest.raises(OSError, match="no ack"):
            await sweeper(LastAckFails(kafka, sends=1)).publish_fallbacks()
        assert await pool.fetchval(unmarked, cid) == 4

        recording = Recording(kafka)
        assert await sweeper(recording).publish_fallbacks() == 4
        assert await pool.fetchval(unmarked, cid) == 0
        [(key, value)] = recording.sent
        item = parse_work(codec.decode(value))
        assert key == b"acct"
        assert isinstance(item, FallbackItem)
        assert item.recipients == ((1, 2), (2, 2), (3, 2), (4, 2))
        assert await sweeper(recording).publish_fallbacks() == 0
