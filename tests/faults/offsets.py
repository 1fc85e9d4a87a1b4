"""Kafka offsets as the fault suite reads them, without joining any consumer group: end
offsets, committed offsets of herald's groups, and the dead-letter topic from its start."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import anyio
from aiokafka import AIOKafkaConsumer, TopicPartition

from herald.constants import (
    GROUP_SCHEDULER,
    GROUP_STATUS,
    GROUP_WORKER,
    HEADER_DLQ_REASON,
    TOPIC_CAMPAIGN_EVENTS,
    TOPIC_DEAD_LETTER,
    TOPIC_DISPATCH_BATCHES,
    TOPIC_STATUS_EVENTS,
)
from herald.settings import Settings

# Every consumer group and the topic it reads.
GROUP_TOPICS: Final[Mapping[str, str]] = {
    GROUP_SCHEDULER: TOPIC_CAMPAIGN_EVENTS,
    GROUP_WORKER: TOPIC_DISPATCH_BATCHES,
    GROUP_STATUS: TOPIC_STATUS_EVENTS,
}


@dataclass(frozen=True, kw_only=True)
class DeadLetterRecord:
    reason: str | None
    source_topic: str | None
    has_source_position: bool


class Offsets:
    """Committed and end offsets of herald's consumer groups, without joining any group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tails: dict[str, AIOKafkaConsumer] = {}
        self._groups: dict[str, AIOKafkaConsumer] = {}

    async def __aenter__(self) -> Offsets:
        return self

    async def __aexit__(self, *exc: object) -> None:
        consumers = [*self._tails.values(), *self._groups.values()]
        self._tails, self._groups = {}, {}
        with anyio.CancelScope(shield=True):
            for consumer in consumers:
                await consumer.stop()

    def _new(self, group: str | None = None) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.settings.topic(group) if group else None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )

    async def _group(self, group: str) -> AIOKafkaConsumer:
        if group not in self._groups:
            consumer = self._new(group)
            await consumer.start()
            self._groups[group] = consumer
        return self._groups[group]

    async def _tail(self, topic: str) -> AIOKafkaConsumer:
        """A consumer kept at the end of every partition of topic: its fetches carry the
        high watermark. (The embedded broker answers ListOffsets with the last batch's base
        offset + 1, short of the end when that batch holds several records.)"""
        if topic not in self._tails:
            consumer = self._new()
            await consumer.start()
            self._tails[topic] = consumer
            consumer.assign(self.partitions(topic))
            await consumer.seek_to_end()
        return self._tails[topic]

    def partitions(self, topic: str) -> list[TopicPartition]:
        name = self.settings.topic(topic)
        return [TopicPartition(name, p) for p in range(self.settings.topic_partitions)]

    async def end(self, topic: str) -> dict[TopicPartition, int]:
        """Each partition's high watermark, from a fetch answered after this call began."""
        tail = await self._tail(topic)
        tps = self.partitions(topic)
        asked_ms = time.time() * 1000
        with anyio.move_on_after(10):
            while True:
                await tail.getmany(timeout_ms=50)  # drains, so the fetches go on
                if all((tail.last_poll_timestamp(tp) or 0) >= asked_ms for tp in tps):
                    break
        return {tp: tail.highwater(tp) or 0 for tp in tps}

    async def lagging(self, groups: Sequence[str]) -> list[str]:
        """'group topic[p]: committed c of end e' for every partition not committed to its end."""
        behind = []
        for group in groups:
            topic = GROUP_TOPICS[group]
            consumer = await self._group(group)
            for tp, end in (await self.end(topic)).items():
                committed = await consumer.committed(tp) or 0
                if committed < end:
                    behind.append(
                        f"{group} {topic}[{tp.partition}]: committed {committed} of {end}"
                    )
        return behind

    async def dead_letters(self) -> list[DeadLetterRecord]:
        """Every record on the dead-letter topic, read from the start to the end offsets."""
        ends = {tp: end for tp, end in (await self.end(TOPIC_DEAD_LETTER)).items() if end > 0}
        if not ends:
            return []
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False
        )
        await reader.start()
        found: list[DeadLetterRecord] = []
        try:
            reader.assign(list(ends))
            await reader.seek_to_beginning(*ends)
            with anyio.fail_after(30):
                while await _behind(reader, ends):
                    batch = await reader.getmany(timeout_ms=500)
                    for records in batch.values():
                        for record in records:
                            headers = {k: v.decode(errors="replace") for k, v in record.headers}
                            found.append(
                                DeadLetterRecord(
                                    reason=headers.get(HEADER_DLQ_REASON),
                                    source_topic=headers.get("herald-source-topic"),
                                    has_source_position="herald-source-partition" in headers
                                    and "herald-source-offset" in headers,
                                )
                            )
        finally:
            with anyio.CancelScope(shield=True):
                await reader.stop()
        return found


async def _behind(reader: AIOKafkaConsumer, ends: Mapping[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await reader.position(tp) < end:
            return True
    return False
