"""Every Kafka client herald builds connects through bus.client.connection_kwargs: the
embedded broker over PLAINTEXT, end to end (admin, producer, consumer group)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from herald.bus import client, codec, consumer, producer, topics
from herald.constants import ALL_TOPICS, GROUP_STATUS, TOPIC_STATUS_EVENTS
from herald.settings import Settings


async def _topics(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(**client.connection_kwargs(settings))
    await admin.start()
    try:
        return {t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)}
    finally:
        await admin.close()


async def test_plaintext_round_trip(settings: Settings) -> None:
    # The embedded broker holds a group's first join a while: keep it short.
    settings = settings.with_overrides(kafka_session_timeout_ms=3_000)
    assert client.connection_kwargs(settings) == {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": "PLAINTEXT",
    }
    await topics.ensure_topics(settings)
    assert await _topics(settings) == {settings.topic(name) for name in ALL_TOPICS}
    seen: list[bytes] = []
    stop, up = anyio.Event(), anyio.Event()

    async def handler(tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        seen.extend(r.value for r in records)
        if len(seen) >= 3:
            stop.set()
        return True

    async with producer.producer(settings) as kafka:
        await producer.ping(kafka)
        for n in range(3):
            await kafka.send_and_wait(
                settings.topic(TOPIC_STATUS_EVENTS), codec.encode({"n": n}), key=b"c-1"
            )
        with anyio.fail_after(60):
            await consumer.consume(
                settings=settings,
                topic=TOPIC_STATUS_EVENTS,
                group_id=GROUP_STATUS,
                handler=handler,
                dead_letter=consumer.DeadLetter(settings=settings, producer=kafka),
                stop=stop,
                ready=up,
            )
    assert up.is_set()
    assert sorted(codec.decode(v)["n"] for v in seen) == [0, 1, 2]


async def test_topics_are_left_to_deploy_unless_told(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    production_like = settings.with_overrides(kafka_create_topics=False)
    with caplog.at_level(logging.INFO, logger="herald.bus.topics"):
        await topics.ensure_topics(production_like)
    assert await _topics(settings) == set()
    [line] = [r for r in caplog.records if r.name == "herald.bus.topics"]
    assert line.levelno == logging.INFO
    assert line.__dict__["event"] == "topics_not_created"
    assert "deploy/ owns them" in line.getMessage()
