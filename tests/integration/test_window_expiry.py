"""Fallback windows expire in every live status: a paused or cancelled campaign whose
callbacks never come does not leave its recipients `sent` forever."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from herald.bus import codec
from herald.bus.consumer import DeadLetter
from herald.bus.producer import producer
from herald.bus.topics import ensure_topics
from herald.constants import TOPIC_STATUS_EVENTS
from herald.demo import campaign_event
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.domain.status import WINDOW_EXPIRED, RecipientStatus, StatusEvent, from_wire
from herald.providers.directory import Directory
from herald.settings import Settings
from herald.store import attempts, campaigns, db
from herald.sweeper import Sweeper


@pytest.mark.parametrize("status", ["sending", "paused", "cancelled"])
async def test_windows_expire_in_every_live_status(settings: Settings, status: str) -> None:
    cid = f"win-{status}"
    raw = campaign_event(campaign_id=cid, account_id="a", mode=SendingMode.WHATSAPP_SMS, tags=[])
    raw["audience"] = {"destinations": ["+14155550100", "+14155550101"]}
    raw["fallback_window_s"] = 1
    event = parse_campaign_confirmed(raw)
    await ensure_topics(settings)
    async with db.pool(settings.database_url) as pool, producer(settings) as kafka:
        assert await campaigns.insert(pool, event, raw)
        async with pool.acquire() as conn, conn.transaction():
            assert await campaigns.expand(conn, event) == 2
        await attempts.insert_pending(pool, cid, [1, 2], [1, 1], "whatsapp", "whatsapp")
        await pool.execute(
            "UPDATE attempts SET status = 'sent', accepted = true,"
            " created_at = now() - interval '1 minute' WHERE campaign_id = $1",
            cid,
        )
        await pool.execute("UPDATE campaigns SET status = $2 WHERE id = $1", cid, status)
        assert await _sweep(settings, pool, kafka) == 2
        assert await _sweep(settings, pool, kafka) == 0  # claimed once
    parsed = await _published(settings)
    assert sorted(e.recipient_id for e in parsed) == [1, 2]
    assert {(e.status, e.error_code, e.fallback) for e in parsed} == {
        (RecipientStatus.FAILED, WINDOW_EXPIRED, True)
    }


async def test_windows_follow_the_fallback_policy(settings: Settings) -> None:
    """A step's after_s replaces the campaign's window for its channel; a step whose success
    is accepted ends the chain there (its expiry carries no fallback); a campaign without a
    policy keeps fallback_window_s."""
    policies: dict[str, list[dict[str, object]] | None] = {
        "pol-delivered": [{"channel": "whatsapp", "after_s": 30, "success": "delivered"}],
        "pol-accepted": [{"channel": "whatsapp", "after_s": 30, "success": "accepted"}],
        "pol-none": None,
    }
    await ensure_topics(settings)
    async with db.pool(settings.database_url) as pool, producer(settings) as kafka:
        for cid, policy in policies.items():
            raw = campaign_event(
                campaign_id=cid, account_id="a", mode=SendingMode.WHATSAPP_SMS, tags=[]
            )
            raw["audience"] = {"destinations": ["+14155550100", "+14155550101"]}
            raw["fallback_window_s"] = 3600
            if policy is not None:
                raw["fallback"] = policy
            event = parse_campaign_confirmed(raw)
            assert await campaigns.insert(pool, event, raw)
            async with pool.acquire() as conn, conn.transaction():
                assert await campaigns.expand(conn, event) == 2
            await attempts.insert_pending(pool, cid, [1, 2], [1, 1], "whatsapp", "whatsapp")
            # Recipient 1 waited a minute (past after_s), recipient 2 ten seconds.
            await pool.execute(
                "UPDATE attempts SET status = 'sent', accepted = true,"
                " created_at = now() - CASE recipient_id WHEN 1 THEN interval '1 minute'"
                " ELSE interval '10 seconds' END WHERE campaign_id = $1",
                cid,
            )
            await pool.execute("UPDATE campaigns SET status = 'sending' WHERE id = $1", cid)
        stored = await pool.fetchval(
            "SELECT fallback_policy FROM campaigns WHERE id = 'pol-delivered'"
        )
        assert stored == {"whatsapp": {"after_s": 30, "success": "delivered"}}
        async with pool.acquire() as conn, conn.transaction():
            claimed = await attempts.claim_expired_windows(conn, 100)
            mine = sorted(
                (w.campaign_id, w.recipient_id, w.chain_length)
                for w in claimed
                if w.campaign_id in policies
            )
            # The accepted step comes back as its chain's end: expiry closes, never hands on.
            assert mine == [("pol-accepted", 1, 1), ("pol-delivered", 1, 2)]
        assert await _sweep(settings, pool, kafka) == 2
        assert await _sweep(settings, pool, kafka) == 0
    events = await _published(settings)
    assert sorted(
        (e.campaign_id, e.recipient_id, e.status, e.error_code, e.fallback)
        for e in events
        if e.campaign_id in policies
    ) == [
        ("pol-accepted", 1, RecipientStatus.FAILED, WINDOW_EXPIRED, False),
        ("pol-delivered", 1, RecipientStatus.FAILED, WINDOW_EXPIRED, True),
    ]


async def _sweep(settings: Settings, pool: Any, kafka: Any) -> int:
    """One window sweep, as the worker role runs it (no provider: nothing to revoke)."""
    directory = Directory(settings=settings, pool=pool, session=None, defaults={})
    sweeper = Sweeper(
        settings=settings,
        pool=pool,
        producer=kafka,
        dead_letter=DeadLetter(settings=settings, producer=kafka),
    )
    return await sweeper.expire_windows(directory)


async def _published(settings: Settings) -> list[StatusEvent]:
    """The status events on the test's topic."""
    consumer = AIOKafkaConsumer(
        settings.topic(TOPIC_STATUS_EVENTS),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    return [
        from_wire(e)
        for records in batch.values()
        for r in records
        for e in codec.decode(r.value)["events"]
    ]
