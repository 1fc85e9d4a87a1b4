"""Waiting out an outage: capped exponential backoff with jitter.

A role started while PostgreSQL or Kafka is down waits for it within HERALD_STARTUP_TIMEOUT_S
(inside the startupProbe's window) instead of exiting with a traceback into CrashLoopBackOff;
a loop that meets an outage later backs off the same way (loops.py).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from herald.errors import Unreachable

log = logging.getLogger(__name__)

T = TypeVar("T")

# Past this many doublings every backoff has reached its cap; it also keeps the power finite.
_MAX_DOUBLINGS = 32


@dataclass(frozen=True, kw_only=True)
class Backoff:
    first_s: float = 0.5
    cap_s: float = 10.0
    factor: float = 2.0
    # The random share of each pause. A half keeps every pause at least half its ceiling (no
    # near-zero retries at a recovering server); all of it spreads retries widest.
    jitter: float = 0.5


# A dependency coming up: the first retries are quick (a broker restarting for seconds), then
# every 10 s at most, so a long outage costs a line per 10 s and a recovered server is seen
# within one pause.
STARTUP = Backoff(first_s=0.5, cap_s=10.0)


def delay_s(backoff: Backoff, failures: int, draw: float) -> float:
    """The pause after `failures` failures in a row (1 for the first): the capped exponential,
    of which the jitter share is scaled by `draw` in [0, 1), so that processes failing together
    do not retry together."""
    doublings = min(max(failures, 1) - 1, _MAX_DOUBLINGS)
    ceiling = min(backoff.cap_s, backoff.first_s * backoff.factor**doublings)
    return ceiling * (1 - backoff.jitter) + ceiling * backoff.jitter * draw


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The error class and message on one line: what an operator reads in a log or exit line."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    text = text.removeprefix(f"{name}: ")  # aiokafka's errors name their class themselves
    return f"{name}: {text[:limit]}" if text and text != name else name


async def until_up(
    dependency: str,
    connect: Callable[[], Awaitable[T]],
    *,
    timeout_s: float,
    transient: Callable[[BaseException], bool],
    where: str = "",
    backoff: Backoff | None = None,
    draw: Callable[[], float] = random.random,
) -> T:
    """connect() until it succeeds, for at most timeout_s; then Unreachable (with timeout_s
    0: after one attempt).

    An error `transient` rejects (a wrong password, a bad setting) is raised at once: waiting
    would not fix it. Each attempt is cut off at the deadline, so a hung server cannot hold the
    start past it. Every failed attempt logs one WARNING naming the dependency and the error
    class, never a traceback: the cause is outside herald.
    """
    backoff = backoff or STARTUP
    named = f"{dependency} at {where}" if where else dependency
    deadline = anyio.current_time() + timeout_s
    failures = 0
    while True:
        # With no time to wait (timeout_s 0), one attempt on the driver's own timeouts.
        limit_s = max(0.0, deadline - anyio.current_time()) if timeout_s > 0 else None
        try:
            with anyio.fail_after(limit_s):
                return await connect()
        except Exception as exc:
            if not (isinstance(exc, TimeoutError) or transient(exc)):
                raise
            failures += 1
            last = exc
        pause = delay_s(backoff, failures, draw())
        left_s = deadline - anyio.current_time()
        if left_s <= pause:
            if timeout_s <= 0:
                raise Unreachable(dependency, f"{named} unreachable: {one_line(last)}") from None
            attempts = f"{failures} attempt{'s' if failures != 1 else ''}"
            raise Unreachable(
                dependency,
                f"{named} unreachable for {timeout_s:g} s ({attempts}); "
                f"last error {one_line(last)}",
            ) from None
        log.warning(
            "%s unreachable (%s); retrying in %.1f s, for %.0f s more",
            named,
            type(last).__name__,
            pause,
            left_s,
            extra={
                "event": "dependency_retry",
                "dependency": dependency,
                "error": type(last).__name__,
            },
        )
        await anyio.sleep(pause)
