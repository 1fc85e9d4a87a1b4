"""The outbox relay against real PostgreSQL and the embedded Kafka-protocol broker."""

from __future__ import annotations

import uuid

import anyio
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from herald.bus import codec
from herald.bus.producer import producer as kafka_producer
from herald.bus.topics import ensure_topics
from herald.constants import TOPIC_CAMPAIGN_EVENTS
from herald.relay import Relay
from herald.settings import Settings
from herald.store import db, outbox


async def _read(settings: Settings, count: int) -> list[tuple[str, dict[str, object]]]:
    consumer = AIOKafkaConsumer(
        settings.topic(TOPIC_CAMPAIGN_EVENTS),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"relay-test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen: list[tuple[str, dict[str, object]]] = []
    try:
        with anyio.fail_after(20):
            while len(seen) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    seen += [(r.key.decode(), codec.decode(r.value)) for r in records]
    finally:
        await consumer.stop()
    return seen


async def test_relay_publishes_in_order_and_marks_rows(settings: Settings) -> None:
    await ensure_topics(settings)
    async with db.pool(settings.database_url, max_size=4) as pool:
        async with pool.acquire() as conn, conn.transaction():
            for n in range(5):
                await outbox.insert(conn, TOPIC_CAMPAIGN_EVENTS, "acct-1", {"n": n})
        # A row written in a transaction that rolls back is never seen by the relay.
        conn = await pool.acquire()
        try:
            tx = conn.transaction()
            await tx.start()
            await outbox.insert(conn, TOPIC_CAMPAIGN_EVENTS, "acct-1", {"n": "rolled back"})
            await tx.rollback()
        finally:
            await pool.release(conn)

        stop = anyio.Event()
        async with kafka_producer(settings) as producer, anyio.create_task_group() as tg:
            relay = Relay(settings=settings, pool=pool, producer=producer, batch=2, poll_s=0.05)
            tg.start_soon(relay.run, stop)
            with anyio.fail_after(20):
                while await outbox.pending(pool):
                    await anyio.sleep(0.05)
            stop.set()
        assert relay.published == 5
        published = await pool.fetch("SELECT published_at FROM outbox ORDER BY id")
        assert all(r["published_at"] is not None for r in published)

    seen = await _read(settings, 5)
    assert [key for key, _ in seen] == ["acct-1"] * 5
    assert [payload["n"] for _, payload in seen] == [0, 1, 2, 3, 4]


async def test_concurrent_relays_claim_disjoint_rows(settings: Settings) -> None:
    await ensure_topics(settings)
    async with db.pool(settings.database_url, max_size=6) as pool:
        async with pool.acquire() as conn, conn.transaction():
            for n in range(40):
                await outbox.insert(conn, TOPIC_CAMPAIGN_EVENTS, f"acct-{n % 3}", {"n": n})
        async with kafka_producer(settings) as producer:
            relays = [
                Relay(settings=settings, pool=pool, producer=producer, batch=7) for _ in range(3)
            ]
            async with anyio.create_task_group() as tg:
                for relay in relays:
                    for _ in range(4):
                        tg.start_soon(relay.publish_once)
            while await outbox.pending(pool):
                await relays[0].publish_once()
        assert await outbox.pending(pool) == 0
    seen = await _read(settings, 40)
    assert sorted(int(str(payload["n"])) for _, payload in seen) == list(range(40))


async def test_relay_keeps_rows_when_kafka_fails(settings: Settings) -> None:
    async with db.pool(settings.database_url, max_size=2) as pool:
        async with pool.acquire() as conn, conn.transaction():
            await outbox.insert(conn, TOPIC_CAMPAIGN_EVENTS, "acct-1", {"n": 1})

        class Broken:
            async def send(self, *args: object, **kwargs: object) -> object:
                raise OSError("broker unreachable")

        relay = Relay(settings=settings, pool=pool, producer=Broken())
        with pytest.raises(OSError):
            await relay.publish_once()
        assert await outbox.pending(pool) == 1
        row = await pool.fetchrow("SELECT published_at FROM outbox")
        assert isinstance(row, asyncpg.Record) and row["published_at"] is None
