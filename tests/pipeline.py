"""Helpers for tests that run the whole pipeline in-process against the embedded services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
from aiokafka import AIOKafkaConsumer

from herald import runner
from herald.bus import codec
from herald.bus.producer import producer as kafka_producer
from herald.constants import HEADER_DLQ_REASON, TOPIC_CAMPAIGN_EVENTS, TOPIC_DEAD_LETTER
from herald.settings import Settings
from herald.store import campaigns


@asynccontextmanager
async def running(settings: Settings, roles: frozenset[str] | None = None) -> AsyncIterator[None]:
    stop = anyio.Event()
    ready = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run_roles, settings, roles or frozenset(runner.ROLES), stop, ready)
        with anyio.fail_after(60):
            await ready.wait()
        try:
            yield
        finally:
            stop.set()


async def publish(settings: Settings, topic: str, values: list[bytes], key: str = "k") -> None:
    async with kafka_producer(settings) as producer:
        for value in values:
            await producer.send_and_wait(settings.topic(topic), value, key=codec.key(key))


async def publish_event(settings: Settings, event: dict[str, Any]) -> None:
    await publish(settings, TOPIC_CAMPAIGN_EVENTS, [codec.encode(event)], key=event["account_id"])


async def wait_completed(
    pool: asyncpg.Pool, campaign_id: str, timeout_s: float = 120, *, status: str = "completed"
) -> campaigns.Counters:
    with anyio.fail_after(timeout_s):
        while True:
            counters = await campaigns.counters(pool, campaign_id)
            if counters is not None and counters.status == status:
                return counters
            await anyio.sleep(0.2)


async def dead_letters(settings: Settings, expected: int, timeout_s: float = 30) -> list[str]:
    """Reasons of the first `expected` records on the dead-letter topic."""
    consumer = AIOKafkaConsumer(
        settings.topic(TOPIC_DEAD_LETTER),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    reasons: list[str] = []
    try:
        with anyio.move_on_after(timeout_s):
            while len(reasons) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        headers = dict(record.headers)
                        reasons.append(headers[HEADER_DLQ_REASON].decode())
    finally:
        await consumer.stop()
    return reasons
