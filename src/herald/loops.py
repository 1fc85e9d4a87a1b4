"""The loops a role runs beside its consumers (the scheduler's tick, the relay, the sweeps).

A round runs again at once while it finds work, else after an interval or when woken. An
outage never ends a loop: a round that fails on PostgreSQL or Kafka (a dropped connection, a
broker timeout) logs one WARNING with the error class, no traceback, and is tried again
after a backoff; only the stop event or cancellation ends it. What a round did not finish
is still owed in PostgreSQL (its transaction rolled back), so the next round does it. Any
other error is a bug: it ends the role, and the pod restarts with the traceback in its log.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from herald import retry
from herald.bus import client
from herald.store import db

log = logging.getLogger(__name__)

# What a round survives: the store's errors and the broker's.
ROUND_ERRORS: Final[tuple[type[BaseException], ...]] = (*db.LOOP_ERRORS, *client.ERRORS)

# Quick at first (a dropped connection is replaced at once), then every 10 s at most, so a
# long outage costs one line per loop every 10 s.
BACKOFF: Final = retry.Backoff(first_s=0.5, cap_s=10.0)


async def every(
    name: str,
    interval_s: float,
    step: Callable[[], Awaitable[bool]],
    stop: anyio.Event,
    wake: Callable[[], anyio.Event] | None = None,
) -> None:
    """Run step until stopped: again at once while it returns True (more work now), else
    after interval_s or when the event wake() returns is set."""
    failures = 0
    while not stop.is_set():
        try:
            busy = await step()
        except ROUND_ERRORS as exc:
            failures += 1
            pause_s = retry.delay_s(BACKOFF, failures, random.random())
            log.warning(
                "%s round failed (%s); again in %.1f s",
                name,
                retry.one_line(exc),
                pause_s,
                extra={"event": "round_failed", "loop": name, "error": type(exc).__name__},
            )
            await _until(pause_s, stop)
            continue
        if failures:
            log.info(
                "%s rounds succeed again after %d failures",
                name,
                failures,
                extra={"event": "round_recovered", "loop": name},
            )
            failures = 0
        if not busy:
            await _until(interval_s, stop, wake() if wake is not None else None)


async def _until(timeout_s: float, *events: anyio.Event | None) -> None:
    """Wait timeout_s, or less if one of the events is set."""
    with anyio.move_on_after(timeout_s):
        async with anyio.create_task_group() as tg:

            async def first(event: anyio.Event) -> None:
                await event.wait()
                tg.cancel_scope.cancel()

            for event in events:
                if event is not None:
                    tg.start_soon(first, event)
            await anyio.sleep_forever()
