"""The one publishing engine: claim rows → send their messages → await every ack → mark → commit.

Everything herald derives from its own state (dispatch batches, outbox rows, fallback work,
window expiries) goes out this way. The claim locks the rows (FOR UPDATE SKIP LOCKED) in a
transaction that stays open until every message of the round is acknowledged and the rows are
marked, so one failed ack marks nothing: the rows come again in a later round. Delivery is at
least once (a crash between the acks and the commit publishes again); consumers deduplicate
by their own keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import asyncpg

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Message:
    topic: str  # the full topic name (settings.topic applied)
    key: bytes
    value: bytes
    # None: the key's partition (Kafka's default partitioner); dispatch work names its own.
    partition: int | None = None


class Sender(Protocol):
    """What the engine needs of AIOKafkaProducer: send enqueues and returns the ack's future."""

    async def send(
        self, topic: str, value: bytes, key: bytes, partition: int | None = None
    ) -> Awaitable[Any]: ...


async def publish(producer: Sender, messages: Iterable[Message]) -> None:
    """Send every message, then await every ack: returns once all are acknowledged, else
    raises the first failure once the others have settled (their errors retrieved)."""
    acks: list[Awaitable[Any]] = []
    try:
        # All sends first: the producer batches them into a few requests.
        for m in messages:
            acks.append(await producer.send(m.topic, m.value, key=m.key, partition=m.partition))
    finally:
        # Even when a send raised, the acks already pending are awaited, so none is left
        # with an error nobody retrieved.
        results = await asyncio.gather(*acks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def publish_claimed(
    pool: asyncpg.Pool,
    producer: Sender,
    *,
    claim: Callable[[asyncpg.Connection], Awaitable[Sequence[T]]],
    encode: Callable[[Sequence[T]], Iterable[Message]],
    mark: Callable[[asyncpg.Connection, Sequence[T]], Awaitable[None]],
) -> Sequence[T]:
    """One round in one transaction: claim rows, publish what encode makes of them, mark them.
    Returns the rows claimed (empty: nothing was due, nothing was sent). Raises what a send,
    an ack or the store raised, and then nothing is marked."""
    async with pool.acquire() as conn, conn.transaction():
        claimed = await claim(conn)
        if not claimed:
            return claimed
        await publish(producer, encode(claimed))
        await mark(conn, claimed)
    return claimed
