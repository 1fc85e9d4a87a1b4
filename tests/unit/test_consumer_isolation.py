"""A batch that keeps failing is split, so only the record that fails on its own is
dead-lettered (a pure check of the consumer's handling, with a recording dead letter)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
from aiokafka import ConsumerRecord, TopicPartition

from herald.bus import consumer


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []

    async def send(self, record: Any, reason: str) -> None:
        self.sent.append((record.offset, reason))


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
