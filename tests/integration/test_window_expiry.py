"""Fallback windows expire in every live status: a paused or cancelled campaign whose
callbacks never come does not leave its recipients `sent` forever."""

from __future__ import annotations

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
from herald.domain.status import WINDOW_EXPIRED, RecipientStatus, from_wire
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
        directory = Directory(settings=settings, pool=pool, session=None, defaults={})
        sweeper = Sweeper(
            settings=settings,
            pool=pool,
            producer=kafka,
            dead_letter=DeadLetter(settings=settings, producer=kafka),
        )
        assert await sweeper.expire_windows(directory) == 2
        assert await sweeper.expire_windows(directory) == 0  # claimed once
    consumer = AIOKafkaConsumer(
        settings.topic(TOPIC_STATUS_EVENTS),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
        events = [
            e
            for records in batch.values()
            for r in records
            for e in codec.decode(r.value)["events"]
        ]
    finally:
        await consumer.stop()
    parsed = [from_wire(e) for e in events]
    assert sorted(e.recipient_id for e in parsed) == [1, 2]
    assert {(e.status, e.error_code, e.fallback) for e in parsed} == {
        (RecipientStatus.FAILED, WINDOW_EXPIRED, True)
    }
