"""The consumer loop every role uses: manual commits after durable work, a dead-letter path,
and a graceful drain on stop.

A handler gets one partition's records and returns True when all of them are durable; only
then is the offset committed. A handler that returns False (it saw the stop event) leaves the
offset where it was, so the records come back after a restart or a rebalance and are resumed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from herald import metrics
from herald.constants import HEADER_DLQ_REASON, TOPIC_DEAD_LETTER
from herald.settings import Settings
from herald.store.db import TRANSIENT, UNAVAILABLE, StoreError

log = logging.getLogger(__name__)

Handler = Callable[[TopicPartition, Sequence[ConsumerRecord]], Awaitable[bool]]

# A handler that fails this many times in a row on the same records dead-letters them, so a
# bug or a poison record never blocks its partition.
MAX_HANDLER_FAILURES = 3


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    settings: Settings
    producer: AIOKafkaProducer

    async def send(self, record: ConsumerRecord, reason: str) -> None:
        await self.send_value(
            value=record.value,
            key=record.key,
            reason=reason,
            source=(record.topic, record.partition, record.offset),
        )

    async def send_value(
        self,
        *,
        value: bytes | None,
        key: bytes | None,
        reason: str,
        source: tuple[str, int, int] | None = None,
    ) -> None:
        """Dead-letter a value that did not come straight from a record (a parked event)."""
        headers = [(HEADER_DLQ_REASON, reason.encode()[:1000])]
        if source is not None:
            topic, partition, offset = source
            headers += [
                ("herald-source-topic", topic.encode()),
                ("herald-source-partition", str(partition).encode()),
                ("herald-source-offset", str(offset).encode()),
            ]
        await self.producer.send_and_wait(
            self.settings.topic(TOPIC_DEAD_LETTER), value=value, key=key, headers=headers
        )
        topic_label = source[0] if source else "parked"
        metrics.DEAD_LETTERS.labels(topic=topic_label, reason=reason.split(":", 1)[0]).inc()
        log.warning(
            "dead-lettered from %s: %s", topic_label, reason, extra={"event": "dead_lettered"}
        )


async def consume(
    *,
    settings: Settings,
    topic: str,
    group_id: str,
    handler: Handler,
    dead_letter: DeadLetter,
    stop: anyio.Event,
    max_records: int = 500,
    ready: anyio.Event | None = None,
) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.topic(group_id),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_interval_ms=300_000,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.kafka_session_timeout_ms // 10),
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    if ready is not None:
        ready.set()
    busy: set[TopicPartition] = set()
    try:
        async with anyio.create_task_group() as tg:
            # The poll loop never waits for a handler: partitions being handled are paused, so
            # getmany keeps the member alive (aiokafka's max_poll_interval_ms counts the time
            # between polls) while other partitions (other accounts) go on in parallel.
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=max_records)
                for tp, records in batches.items():
                    if tp in busy:
                        # Reassigned to us while still being handled: read again afterwards.
                        consumer.seek(tp, records[0].offset)
                        continue
                    consumer.pause(tp)
                    busy.add(tp)
                    tg.start_soon(_process, consumer, tp, records, handler, dead_letter, stop, busy)
    finally:
        with anyio.CancelScope(shield=True):
            await consumer.stop()


async def _process(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    records: Sequence[ConsumerRecord],
    handler: Handler,
    dead_letter: DeadLetter,
    stop: anyio.Event,
    busy: set[TopicPartition],
) -> None:
    try:
        done = await _handle(tp, records, handler, dead_letter, stop)
        if not done:
            if tp in consumer.assignment():
                consumer.seek(tp, records[0].offset)
            return
        metrics.CONSUMER_LAG.labels(topic=tp.topic).set(
            max(0, (consumer.highwater(tp) or 0) - (records[-1].offset + 1))
        )
        try:
            await consumer.commit({tp: records[-1].offset + 1})
        except (CommitFailedError, KafkaError) as exc:
            # The partition moved to another member mid-batch; it resumes there.
            log.warning("commit failed: %s", exc, extra={"event": "commit_failed"})
    finally:
        busy.discard(tp)
        if tp in consumer.assignment():
            consumer.resume(tp)


async def _handle(
    tp: TopicPartition,
    records: Sequence[ConsumerRecord],
    handler: Handler,
    dead_letter: DeadLetter,
    stop: anyio.Event,
) -> bool:
    failures = 0
    while True:
        try:
            return await handler(tp, records)
        except StoreError as exc:
            if not exc.retryable:
                failures += 1
            reason = f"store: {exc}"
        except UNAVAILABLE as exc:
            # The transaction rolled back whole: try again, uncounted, however long it takes.
            reason = f"store: {type(exc).__name__}"
            log.warning("retrying after %s: %s", reason, exc, extra={"event": "handler_retry"})
        except TRANSIENT as exc:
            # A connection cut mid-operation, or a mistake the driver reports the same way.
            failures += 1
            reason = f"store: {type(exc).__name__}: {exc}"
            log.warning("retrying after %s", reason, extra={"event": "handler_retry"})
        except Exception as exc:
            failures += 1
            reason = f"handler: {type(exc).__name__}: {exc}"
            log.exception("handler failed", extra={"event": "handler_failed"})
        if failures >= MAX_HANDLER_FAILURES:
            if len(records) == 1:
                await dead_letter.send(records[0], reason)
                return True
            # One poison record must not take good ones with it: try each on its own, so only
            # the ones that fail by themselves are dead-lettered.
            for record in records:
                if not await _handle(tp, [record], handler, dead_letter, stop):
                    return False
            return True
        if stop.is_set():
            return False
        # Full jitter keeps many consumers from retrying a recovering database in step.
        await anyio.sleep(random.uniform(0, min(5.0, 0.2 * 2**failures)))
