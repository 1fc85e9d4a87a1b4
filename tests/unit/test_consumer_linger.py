"""Holding a partition's records back for a fuller handler run (consumer.py _ready, _poll_ms)."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from herald.bus.consumer import _poll_ms, _ready

A = TopicPartition("status", 0)
B = TopicPartition("status", 1)


def _records(tp: TopicPartition, first: int, n: int) -> list[ConsumerRecord]:
    return [
        ConsumerRecord(tp.topic, tp.partition, first + i, 0, 0, None, b"v", None, 1, 0, [])
        for i in range(n)
    ]


def test_without_linger_every_poll_goes_at_once() -> None:
    lingering: dict = {}
    polled = {A: _records(A, 0, 1)}
    assert _ready(lingering, polled, 10.0, min_records=100, linger_s=0.0) == polled
    assert lingering == {}


@pytest.mark.parametrize(
    ("polls", "at_s", "min_records", "expected"),
    [
        # (records per poll, time of the last poll): few records wait for more...
        ([3], 0.0, 10, None),
        # ...until enough came, in order and whole...
        ([3, 4, 5], 0.05, 10, list(range(12))),
        # ...or the linger since the first ran out.
        ([3, 1], 0.1, 10, [0, 1, 2, 3]),
        ([3, 1], 0.099, 10, None),
        ([10], 0.0, 10, list(range(10))),
    ],
)
def test_records_wait_for_more_or_for_the_linger(
    polls: list[int], at_s: float, min_records: int, expected: list[int] | None
) -> None:
    lingering: dict = {}
    offset = 0
    ready: dict = {}
    for i, n in enumerate(polls):
        now = at_s if i == len(polls) - 1 else 0.0
        ready = _ready(
            lingering, {A: _records(A, offset, n)}, now, min_records=min_records, linger_s=0.1
        )
        offset += n
    if expected is None:
        assert ready == {}
        assert [r.offset for r in lingering[A][1]] == list(range(offset))
    else:
        assert [r.offset for r in ready[A]] == expected
        assert A not in lingering


def test_a_due_partition_goes_on_an_empty_poll_and_others_keep_waiting() -> None:
    lingering: dict = {}
    _ready(lingering, {A: _records(A, 0, 2)}, 0.0, min_records=10, linger_s=0.1)
    _ready(lingering, {B: _records(B, 0, 2)}, 0.05, min_records=10, linger_s=0.1)
    ready = _ready(lingering, {}, 0.1, min_records=10, linger_s=0.1)
    assert list(ready) == [A]
    assert list(lingering) == [B]


@pytest.mark.parametrize(
    ("until", "now", "expected_ms"),
    [(None, 0.0, 200), (0.05, 0.0, 51), (1.0, 0.0, 200), (0.0, 0.5, 0)],
)
def test_a_poll_waits_no_longer_than_the_first_held_records(
    until: float | None, now: float, expected_ms: int
) -> None:
    lingering = {} if until is None else {A: (until, _records(A, 0, 1))}
    assert _poll_ms(lingering, now) == expected_ms
