"""The final close of a Kafka client is bounded: a broker that never answers costs the
close its budget, not the client's request timeout; a cancelled caller still closes."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from herald.bus import consumer, producer


class Client:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class Hung:
    """A client whose stop() waits on a broker that never answers, with a background task
    (a heartbeat, a sender) still running."""

    def __init__(self) -> None:
        self._client = self.client = Client()
        self.task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            anyio.sleep_forever()
        )
        self._coordinator = type("Coordinator", (), {"_heartbeat_task": self.task})()
        self._sender = type("Sender", (), {"sender_task": self.task})()
        self.stops = 0

    async def stop(self) -> None:
        self.stops += 1
        await anyio.sleep_forever()


@pytest.mark.parametrize("close", [consumer.close, producer.close])
async def test_a_hung_close_is_abandoned_at_its_budget(close: Any) -> None:
    hung = Hung()
    started = anyio.current_time()
    with anyio.fail_after(5):
        await close(hung, 0.2)
    elapsed_s = anyio.current_time() - started
    assert 0.2 <= elapsed_s < 0.2 + producer.ABANDON_S
    assert hung.stops == 1
    # Abandoned: sockets closed, background work cancelled, nothing left running.
    assert hung.client.closed
    assert hung.task.cancelled()


@pytest.mark.parametrize("close", [consumer.close, producer.close])
async def test_a_cancelled_caller_still_closes(close: Any) -> None:
    hung = Hung()
    with anyio.CancelScope() as scope:
        scope.cancel()  # the drain window ended: the role's task group is cancelled
        await close(hung, 0.1)
    assert hung.stops == 1 and hung.client.closed
