"""Kafka producers for integration tests: the real one with what it was given kept, one
whose last ack fails, and one whose broker is unreachable."""

from __future__ import annotations

import asyncio
from typing import Any

from herald.bus import envelope
from herald.domain.status import StatusEvent, from_wire


class Recording:
    """The real producer, with every (key, value) it was given kept for the test to read."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes, partition: int | None = None) -> Any:
        self.sent.append((key, value))
        return await self.inner.send(topic, value, key=key, partition=partition)

    async def partitions_for(self, topic: str) -> Any:
        return await self.inner.partitions_for(topic)

    @property
    def values(self) -> list[bytes]:
        return [value for _, value in self.sent]

    def events(self) -> list[StatusEvent]:
        """The status events of every status-events record sent."""
        return [from_wire(i) for v in self.values for i in envelope.status_items(v)]


class LastAckFails(Recording):
    """Every send reaches the broker, but the ack of the `sends`-th and later ones fails."""

    def __init__(self, inner: Any, sends: int) -> None:
        super().__init__(inner)
        self.sends = sends

    async def send(self, topic: str, value: bytes, key: bytes, partition: int | None = None) -> Any:
        ack = await super().send(topic, value, key, partition)
        if len(self.sent) < self.sends:
            return ack
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(OSError("no ack"))
        return failed


class Broken:
    async def send(self, topic: str, value: bytes, key: bytes, partition: int | None = None) -> Any:
        raise OSError("broker unreachable")
