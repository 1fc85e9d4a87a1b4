"""A circuit breaker per provider: a storm of 5xx answers stops sends to that provider for a
while instead of hammering it, then one trial send decides whether it is back.

closed --(FAILURES_TO_OPEN retryable failures in a row)--> open --(cooldown)--> half-open
half-open --(trial succeeds)--> closed; --(trial fails)--> open with a doubled cooldown.
While open, work waits (it is held, not failed); with a second provider account for the
channel it would drain there instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import anyio

# The states are the values herald_circuit_breaker_state exports.
from herald.metrics import BreakerState as State

FAILURES_TO_OPEN = 20
COOLDOWN_S = 2.0
MAX_COOLDOWN_S = 60.0


@dataclass(frozen=True, kw_only=True)
class BreakerState:
    state: State = State.CLOSED
    failures: int = 0
    opened_at_s: float = 0.0
    cooldown_s: float = COOLDOWN_S
    trial_in_flight: bool = False


def on_result(current: BreakerState, *, ok: bool, now_s: float) -> BreakerState:
    if ok:
        return BreakerState()
    if current.state is State.HALF_OPEN:
        return replace(
            current,
            state=State.OPEN,
            opened_at_s=now_s,
            cooldown_s=min(MAX_COOLDOWN_S, current.cooldown_s * 2),
            trial_in_flight=False,
        )
    failures = current.failures + 1
    if failures >= FAILURES_TO_OPEN:
        return replace(current, state=State.OPEN, failures=failures, opened_at_s=now_s)
    return replace(current, failures=failures)


def refused(current: BreakerState, *, now_s: float) -> BreakerState:
    """The provider refused the credential: open at once (one answer is enough, and every
    further send would be refused too), backing off while it stays refused."""
    cooldown_s = COOLDOWN_S
    if current.state is not State.CLOSED:
        cooldown_s = min(MAX_COOLDOWN_S, current.cooldown_s * 2)
    return replace(
        current,
        state=State.OPEN,
        failures=max(current.failures, FAILURES_TO_OPEN),
        opened_at_s=now_s,
        cooldown_s=cooldown_s,
        trial_in_flight=False,
    )


def admit(current: BreakerState, *, now_s: float) -> tuple[bool, BreakerState]:
    """Whether a send may go now, and the state after letting it (a trial takes the slot)."""
    if current.state is State.CLOSED:
        return True, current
    if current.state is State.OPEN and now_s - current.opened_at_s >= current.cooldown_s:
        return True, replace(current, state=State.HALF_OPEN, trial_in_flight=True)
    if current.state is State.HALF_OPEN and not current.trial_in_flight:
        return True, replace(current, trial_in_flight=True)
    return False, current


class Breaker:
    def __init__(self) -> None:
        self.state = BreakerState()

    def admits(self) -> bool:
        """Whether a send would go now (without taking a half-open trial slot)."""
        allowed, _ = admit(self.state, now_s=time.monotonic())
        return allowed

    async def wait(self) -> None:
        while True:
            allowed, self.state = admit(self.state, now_s=time.monotonic())
            if allowed:
                return
            await anyio.sleep(0.05)

    def record(self, *, ok: bool) -> None:
        self.state = on_result(self.state, ok=ok, now_s=time.monotonic())

    def trip(self) -> None:
        self.state = refused(self.state, now_s=time.monotonic())
