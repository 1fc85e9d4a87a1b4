"""A role's loop survives every outage error a round can meet, and only stop ends it."""

from __future__ import annotations

import logging

import anyio
import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, RequestTimedOutError

from herald import loops, retry
from herald.store.db import StoreError

OUTAGES = [
    RequestTimedOutError(),  # a hung broker: what killed the scheduler
    KafkaConnectionError("Connection at 10.0.0.7:9092 closed"),
    TimeoutError(),
    ConnectionResetError(104, "Connection reset by peer"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
    asyncpg.exceptions.AdminShutdownError("terminating connection"),
    StoreError("CannotConnectNowError: the database system is starting up", retryable=True),
]


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loops, "BACKOFF", retry.Backoff(first_s=0.001, cap_s=0.002))


async def test_every_outage_error_is_survived(caplog: pytest.LogCaptureFixture) -> None:
    stop = anyio.Event()
    rounds = 0

    async def step() -> bool:
        nonlocal rounds
        rounds += 1
        if rounds <= len(OUTAGES):
            raise OUTAGES[rounds - 1]
        stop.set()
        return False

    with caplog.at_level(logging.INFO, logger="herald.loops"), anyio.fail_after(5):
        await loops.every("scheduler tick", 60.0, step, stop)
    assert rounds == len(OUTAGES) + 1
    failed = [r for r in caplog.records if r.__dict__.get("event") == "round_failed"]
    assert [r.__dict__["error"] for r in failed] == [type(e).__name__ for e in OUTAGES]
    for record in failed:
        # One line naming the loop and the error class; no traceback.
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert record.getMessage().startswith(
            f"scheduler tick round failed ({type(OUTAGES[failed.index(record)]).__name__}"
        )
    assert [r.__dict__.get("event") for r in caplog.records][-1] == "round_recovered"


async def test_a_bug_ends_the_loop() -> None:
    async def step() -> bool:
        raise KeyError("campaign_id")

    with anyio.fail_after(5), pytest.raises(KeyError):
        await loops.every("relay", 0.01, step, anyio.Event())


async def test_busy_rounds_run_at_once_and_wake_cuts_the_wait() -> None:
    stop = anyio.Event()
    wake = anyio.Event()
    rounds: list[float] = []

    async def step() -> bool:
        rounds.append(anyio.current_time())
        if len(rounds) == 5:
            stop.set()
        return len(rounds) < 3  # busy twice, then idle

    async def wake_soon() -> None:
        await anyio.sleep(0.1)
        wake.set()

    started = anyio.current_time()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wake_soon)
            # Idle rounds wait 60 s unless woken: the wake (set once) ends the waits.
            await loops.every("sweep", 60.0, step, stop, lambda: wake)
    assert len(rounds) == 5
    assert rounds[2] - started < 0.05
    assert anyio.current_time() - started < 1.0


async def test_stop_ends_a_wait_at_once() -> None:
    stop = anyio.Event()

    async def step() -> bool:
        return False

    async def stop_soon() -> None:
        await anyio.sleep(0.05)
        stop.set()

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_soon)
            await loops.every("relay", 3600.0, step, stop)
