"""Publishing work items on dispatch-batches, each to its account sub-key's partition.

An account's sub-keys go to consecutive partitions, starting from the one the default
partitioner gives the account id (so sub-key 0 lands where every item of the account landed
before sub-keys, and where items still on the topic from then are). Consecutive partitions,
not hashed ones: hashing S sub-keys onto the partitions would put some on the same partition,
whose items are handled one after the other, and the account would fall short of its rate;
consecutive ones are dealt to different members by the round-robin assignor (aiokafka's
default, the one herald's consumers use), so N workers each hold about S / N of them.

The scheduler (batches), the worker (a batch's rest) and the status role's sweep (fallback
work) all publish through here, so one sub-key always means one partition and one owner.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from herald.bus import codec, publisher
from herald.constants import TOPIC_DISPATCH_BATCHES
from herald.domain.work import (
    BatchItem,
    FallbackItem,
    Share,
    batch_to_wire,
    fallback_to_wire,
    shares_for,
    subkey,
)
from herald.settings import Settings


def partition_of(account_id: str, share: Share, partitions: int) -> int:
    """The partition of an account's sub-key: the account id's own (Kafka's default
    partitioner: murmur2 of the key, as the Java client) and the next ones in turn."""
    hashed: int = murmur2(codec.key(account_id))
    home = (hashed & 0x7FFFFFFF) % partitions
    return (home + share.sub) % partitions


async def partitions(producer: AIOKafkaProducer, settings: Settings) -> int:
    """The dispatch topic's partition count, from the producer's metadata (cached; a missing
    topic is waited for within the producer's request timeout)."""
    found = await producer.partitions_for(settings.topic(TOPIC_DISPATCH_BATCHES))
    return len(found)


async def shares(producer: AIOKafkaProducer, settings: Settings) -> int:
    """The sub-keys an account's new work is spread over (domain/work.shares_for)."""
    return shares_for(settings.dispatch_subkeys, await partitions(producer, settings))


def message(
    settings: Settings, item: BatchItem | FallbackItem, partitions: int
) -> publisher.Message:
    """The item as a record on its sub-key's partition of a topic with that many partitions."""
    wire = batch_to_wire(item) if isinstance(item, BatchItem) else fallback_to_wire(item)
    return publisher.Message(
        settings.topic(TOPIC_DISPATCH_BATCHES),
        codec.key(subkey(item.account_id, item.share)),
        codec.encode(wire),
        partition=partition_of(item.account_id, item.share, partitions),
    )


async def send(
    producer: AIOKafkaProducer, settings: Settings, item: BatchItem | FallbackItem
) -> asyncio.Future[object]:
    """Queue the item on its sub-key's partition; the returned future is its broker ack."""
    m = message(settings, item, await partitions(producer, settings))
    future: asyncio.Future[object] = await producer.send(
        m.topic, m.value, key=m.key, partition=m.partition
    )
    return future
