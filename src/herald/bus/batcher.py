"""Group commit onto Kafka: many small items, few records, every caller answered after acks.

The ingress answers a provider only once its callback is durable on Kafka. One record per
callback caps the ingress near the broker's per-record round trip; gathering the callbacks
that arrive within a few milliseconds into one record per key keeps the same guarantee (each
caller waits for the ack of the record that holds its item) at a fraction of the cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer


class KeyedBatcher:
    def __init__(
        self,
        *,
        producer: AIOKafkaProducer,
        topic: str,
        encode: Callable[[list[Any]], bytes],
        max_items: int = 500,
        max_delay_s: float = 0.005,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._encode = encode
        self._max_items = max_items
        self._max_delay_s = max_delay_s
        self._pending: dict[str, tuple[list[Any], asyncio.Future[None]]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    async def add(self, key: str, item: Any) -> None:
        """Returns once the record holding `item` is acknowledged; raises if it failed."""
        entry = self._pending.get(key)
        if entry is None:
            entry = ([], asyncio.get_running_loop().create_future())
            self._pending[key] = entry
            loop = asyncio.get_running_loop()
            self._timers[key] = loop.call_later(self._max_delay_s, self._flush_soon, key)
        items, done = entry
        items.append(item)
        if len(items) >= self._max_items:
            self._flush_soon(key)
        await asyncio.shield(done)

    def _flush_soon(self, key: str) -> None:
        entry = self._pending.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if entry is not None:
            asyncio.get_running_loop().create_task(self._flush(key, *entry))

    async def _flush(self, key: str, items: list[Any], done: asyncio.Future[None]) -> None:
        try:
            await self._producer.send_and_wait(self._topic, self._encode(items), key=key.encode())
        except Exception as exc:
            done.set_exception(exc)
            # Every waiter sees the failure; retrieve it once so asyncio does not warn.
            done.exception()
        else:
            done.set_result(None)
