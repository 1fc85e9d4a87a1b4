"""A batch that keeps failing is split, so only the record that fails on its own is
dead-lettered (a pure check of the consumer's handling, with a recording dead letter)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
from aiokafka import ConsumerRecord, TopicPartition

from herald.bus import consumer
from herald.settings import Settings


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send(self, record: Any, reason: str) -> None:
        self.sent.append((record.offset, reason))

    send_record = send


def record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=(),
    )


async def test_only_the_poison_record_is_dead_lettered(monkeypatch: Any) -> None:
    monkeypatch.setattr(consumer.random, "uniform", lambda a, b: 0.0)
    handled: list[int] = []

    async def handler(tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        if any(r.value == b"poison" for r in records):
            raise RuntimeError("cannot handle poison")
        handled.extend(r.offset for r in records)
        return True

    dead = Recorder()
    batch = [record(1, b"ok"), record(2, b"poison"), record(3, b"ok")]
    done = await consumer._handle(
        TopicPartition("t", 0),
        batch,
        handler,
        dead,
        anyio.Event(),  # type: ignore[arg-type]
    )
    assert done
    assert handled == [1, 3]
    assert [offset for offset, _ in dead.sent] == [2]
    assert "cannot handle poison" in dead.sent[0][1]


class FakeProducer:
    def __init__(self) -> None:
        self.offsets: list[int] = []

    async def send_and_wait(self, topic: str, **kw: Any) -> None:
        headers = dict(kw["headers"])
        self.offsets.append(int(headers["herald-source-offset"]))


async def test_a_bad_record_is_dead_lettered_once_however_often_its_batch_is_retried(
    monkeypatch: Any,
) -> None:
    """The handler refuses record 1 itself (an invalid payload) on every run, and record 3
    breaks each run it is in: record 1 used to be dead-lettered on every retry of the batch
    and again on its own."""
    monkeypatch.setattr(consumer.random, "uniform", lambda a, b: 0.0)
    producer = FakeProducer()
    dead = consumer.DeadLetter(settings=Settings.development(), producer=producer)  # type: ignore[arg-type]
    runs = 0

    async def handler(tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        nonlocal runs
        runs += 1
        for r in records:
            if r.value == b"invalid":
                await dead.send(r, "invalid_event: not JSON")
        if any(r.value == b"poison" for r in records):
            raise RuntimeError("cannot handle poison")
        return True

    batch = [record(1, b"invalid"), record(2, b"ok"), record(3, b"poison")]
    done = await consumer._handle(TopicPartition("t", 0), batch, handler, dead, anyio.Event())
    assert done and runs > 3
    assert sorted(producer.offsets) == [1, 3]
