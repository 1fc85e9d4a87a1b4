"""A handler failing on the broker (a publish that timed out) is an outage, not a poison
record: it is retried, never dead-lettered, and the stop event ends the retries."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaTimeoutError, RequestTimedOutError

from herald.bus import consumer
from tests.unit.test_consumer_isolation import Recorder, record

TP = TopicPartition("t", 0)


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    # The consumer's jitter draw: no pause between retries.
    monkeypatch.setattr(random, "uniform", lambda a, b: 0.0)


async def test_broker_errors_are_retried_past_the_dead_letter_threshold() -> None:
    calls = 0

    async def handler(tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        nonlocal calls
        calls += 1
        if calls <= 2 * consumer.MAX_HANDLER_FAILURES:
            raise RequestTimedOutError() if calls % 2 else KafkaTimeoutError()
        return True

    dead = Recorder()
    with anyio.fail_after(5):
        done = await consumer._handle(TP, [record(1, b"ok")], handler, dead, anyio.Event())  # type: ignore[arg-type]
    assert done
    assert calls == 2 * consumer.MAX_HANDLER_FAILURES + 1
    assert dead.sent == []


async def test_stop_ends_the_retries_and_leaves_the_offset() -> None:
    stop = anyio.Event()

    async def handler(tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        stop.set()  # SIGTERM while the broker hangs
        raise RequestTimedOutError()

    dead = Recorder()
    with anyio.fail_after(5):
        done = await consumer._handle(TP, [record(1, b"ok")], handler, dead, stop)  # type: ignore[arg-type]
    assert not done  # not committed: the record comes again after the restart
    assert dead.sent == []


async def test_a_failed_dead_letter_leaves_the_records_for_later() -> None:
    class Consumer:
        def __init__(self) -> None:
            self.seeks: list[tuple[TopicPartition, int]] = []
            self.resumed: list[TopicPartition] = []
            self.commits: list[Any] = []

        def assignment(self) -> set[TopicPartition]:
            return {TP}

        def seek(self, tp: TopicPartition, offset: int) -> None:
            self.seeks.append((tp, offset))

        def resume(self, tp: TopicPartition) -> None:
            self.resumed.append(tp)

        async def commit(self, offsets: Any) -> None:
            self.commits.append(offsets)

    class BrokenDeadLetter:
        async def send(self, record: Any, reason: str) -> None:
            raise RequestTimedOutError()

        send_record = send

    async def poison(tp: TopicPartition, records: Sequence[ConsumerRecord]) -> bool:
        raise ValueError("cannot parse")

    fake = Consumer()
    runs = {TP: consumer._Run()}
    with anyio.fail_after(5):
        await consumer._process(
            fake,
            TP,
            [record(7, b"poison")],
            poison,
            BrokenDeadLetter(),  # type: ignore[arg-type]
            anyio.Event(),
            runs,
        )
    # Not committed, read again from the same offset, and the partition goes on.
    assert fake.commits == []
    assert fake.seeks == [(TP, 7)]
    assert fake.resumed == [TP] and runs == {}
