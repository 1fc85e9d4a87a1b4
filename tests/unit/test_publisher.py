"""The publishing engine (bus/publisher.py) with an in-memory producer and a recording
transaction: every ack awaited, one failed ack fails the round and marks nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from herald.bus import envelope, publisher
from herald.domain.status import RecipientStatus, StatusEvent, from_wire


class FakeProducer:
    """AIOKafkaProducer's send: returns the ack's future. Acks settle when `settle` runs,
    failing for the values in `failing`, or at once when `auto` is set."""

    def __init__(self, *, failing: frozenset[bytes] = frozenset(), auto: bool = True) -> None:
        self.failing = failing
        self.auto = auto
        self.sent: list[publisher.Message] = []
        self.acks: list[asyncio.Future[None]] = []
        self.raise_on: bytes | None = None

    async def send(
        self, topic: str, value: bytes, key: bytes, partition: int | None = None
    ) -> asyncio.Future[None]:
        if value == self.raise_on:
            raise OSError("buffer full")
        self.sent.append(publisher.Message(topic, key, value, partition))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        if self.auto:
            asyncio.get_running_loop().call_soon(self._settle, ack, value)
        return ack

    def _settle(self, ack: asyncio.Future[None], value: bytes) -> None:
        if value in self.failing:
            ack.set_exception(OSError(f"no ack for {value!r}"))
        else:
            ack.set_result(None)


class FakeConnection:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.log.append("begin")
        try:
            yield
        except BaseException:
            self.log.append("rollback")
            raise
        self.log.append("commit")


class FakePool:
    """asyncpg.Pool's acquire and a connection's transaction, recorded."""

    def __init__(self) -> None:
        self.log: list[str] = []

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConnection]:
        yield FakeConnection(self.log)


def _messages(*values: bytes) -> list[publisher.Message]:
    return [publisher.Message("topic", b"key", v) for v in values]


async def test_publish_returns_once_every_ack_is_in() -> None:
    producer = FakeProducer()
    await publisher.publish(producer, _messages(b"1", b"2", b"3"))
    assert [m.value for m in producer.sent] == [b"1", b"2", b"3"]
    assert all(a.done() and a.exception() is None for a in producer.acks)


async def test_publish_sends_all_before_awaiting_any_ack() -> None:
    producer = FakeProducer(auto=False)
    task = asyncio.create_task(publisher.publish(producer, _messages(b"1", b"2", b"3")))
    for _ in range(5):
        await asyncio.sleep(0)
    # All three are on their way while no ack has come back.
    assert len(producer.sent) == 3 and not task.done()
    for ack in producer.acks[:2]:
        ack.set_result(None)
    await asyncio.sleep(0)
    assert not task.done()  # one ack still owed
    producer.acks[2].set_result(None)
    await task


async def test_one_failed_ack_fails_after_all_settled() -> None:
    producer = FakeProducer(failing=frozenset({b"2", b"3"}))
    with pytest.raises(OSError, match="no ack for b'2'"):
        await publisher.publish(producer, _messages(b"1", b"2", b"3"))
    # Every ack settled, and each failure was retrieved (asyncio logs none at collection).
    assert all(a.done() for a in producer.acks)


async def test_a_send_that_raises_still_awaits_the_acks_before_it() -> None:
    producer = FakeProducer(auto=False)
    producer.raise_on = b"3"
    task = asyncio.create_task(publisher.publish(producer, _messages(b"1", b"2", b"3")))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()  # the two acks already pending are awaited first
    for ack in producer.acks:
        ack.set_result(None)
    with pytest.raises(OSError, match="buffer full"):
        await task


async def test_round_marks_every_row_once_all_are_acked() -> None:
    pool, producer = FakePool(), FakeProducer()
    marked: list[Sequence[int]] = []

    async def claim(conn: Any) -> list[int]:
        pool.log.append("claim")
        return [1, 2, 3]

    async def mark(conn: Any, rows: Sequence[int]) -> None:
        pool.log.append("mark")
        marked.append(rows)

    rows = await publisher.publish_claimed(
        pool,
        producer,
        claim=claim,
        encode=lambda rows: _messages(*(str(r).encode() for r in rows)),
        mark=mark,
    )
    assert rows == [1, 2, 3]
    assert marked == [[1, 2, 3]]
    assert [m.value for m in producer.sent] == [b"1", b"2", b"3"]
    assert pool.log == ["begin", "claim", "mark", "commit"]


async def test_round_with_a_failed_ack_marks_nothing_and_rolls_back() -> None:
    pool, producer = FakePool(), FakeProducer(failing=frozenset({b"2"}))
    marked: list[Sequence[int]] = []

    async def claim(conn: Any) -> list[int]:
        return [1, 2, 3]

    async def mark(conn: Any, rows: Sequence[int]) -> None:
        marked.append(rows)

    with pytest.raises(OSError):
        await publisher.publish_claimed(
            pool,
            producer,
            claim=claim,
            encode=lambda rows: _messages(*(str(r).encode() for r in rows)),
            mark=mark,
        )
    assert marked == []
    assert pool.log == ["begin", "rollback"]
    assert len(producer.sent) == 3  # every message went out; the rows come again


async def test_round_with_nothing_due_sends_and_marks_nothing() -> None:
    pool, producer = FakePool(), FakeProducer()
    marked: list[Sequence[int]] = []

    async def claim(conn: Any) -> list[int]:
        return []

    async def mark(conn: Any, rows: Sequence[int]) -> None:
        marked.append(rows)

    rows = await publisher.publish_claimed(
        pool,
        producer,
        claim=claim,
        encode=lambda rows: _messages(b"never"),
        mark=mark,
    )
    assert rows == [] and marked == [] and producer.sent == []


def test_status_envelope_round_trips() -> None:
    event = StatusEvent(
        campaign_id="c",
        recipient_id=7,
        attempt=2,
        channel="sms",
        status=RecipientStatus.FAILED,
        occurred_at_ms=1,
        source="sweeper",
        accepted=True,
        fallback=True,
        error_code="fallback_window",
    )
    items = envelope.status_items(envelope.status_value([event, event]))
    assert [from_wire(i) for i in items] == [event, event]
    assert envelope.status_items(envelope.status_items_value([{"x": 1}])) == [{"x": 1}]


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (None, "empty record"),
        (b"{", "not JSON"),
        (b"[]", "events list"),
        (b'{"v": 1, "events": {}}', "events list"),
    ],
)
def test_status_envelope_refuses_what_is_not_one(raw: bytes | None, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        envelope.status_items(raw)
