"""The rebalance listener: revoked partitions' handlers are told, and the listener returns only
once they have stopped (or after its bound)."""

from __future__ import annotations

import anyio
from aiokafka import TopicPartition

from herald.bus import consumer

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


async def test_revocation_waits_for_the_revoked_handlers_only() -> None:
    runs = {TP0: consumer._Run(), TP1: consumer._Run()}
    handover = consumer._Handover(runs, wait_s=5.0)
    finished: list[str] = []

    async def handler_stops_when_told() -> None:
        await runs[TP0].revoked.wait()
        await anyio.sleep(0.05)  # in-flight sends finish
        finished.append("handler")
        runs[TP0].done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(handler_stops_when_told)
        with anyio.fail_after(5):
            await handover.on_partitions_revoked({TP0})
        finished.append("listener")
    assert finished == ["handler", "listener"]
    assert not runs[TP1].revoked.is_set()


async def test_revocation_gives_up_after_its_bound() -> None:
    runs = {TP0: consumer._Run()}
    handover = consumer._Handover(runs, wait_s=0.1)
    with anyio.fail_after(5):
        await handover.on_partitions_revoked({TP0, TP1})
    assert runs[TP0].revoked.is_set() and not runs[TP0].done.is_set()


async def test_outside_a_consumer_run_nothing_is_revoked() -> None:
    assert not consumer.revoked().is_set()
