"""Per-account, per-channel send rates: a token bucket (aiolimiter) whose rate adapts.

A provider's 429 is the ground truth: the rate halves (multiplicative decrease) and sends
wait out its Retry-After; every second without one gives back a tenth of the configured
rate (additive increase) up to the configured rate. The decisions are pure functions over
RateState; AdaptiveLimiter applies them to a bucket that holds 40 ms of tokens,
so a rate is kept smoothly within each second instead of in bursts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import anyio
from aiolimiter import AsyncLimiter

MIN_SHARE = 0.05  # never below 5% of the configured rate
DECREASE = 0.5
INCREASE_SHARE = 0.1
INCREASE_EVERY_S = 1.0
# The bucket holds 40 ms of tokens: after a lull any one-second window carries at most 4%
# more than the rate (a bigger bucket lets a burst push a window past the +5% bound).
BUCKET_S = 0.04


@dataclass(frozen=True, kw_only=True)
class RateState:
    configured_per_s: float
    current_per_s: float
    hold_until_s: float = 0.0
    last_change_s: float = 0.0


def initial(configured_per_s: float) -> RateState:
    return RateState(configured_per_s=configured_per_s, current_per_s=configured_per_s)


def on_throttled(state: RateState, *, now_s: float, retry_after_s: float | None) -> RateState:
    floor = state.configured_per_s * MIN_SHARE
    # Several in-flight sends see the same 429 burst: halve once per increase period.
    if now_s - state.last_change_s < INCREASE_EVERY_S and state.current_per_s < (
        state.configured_per_s
    ):
        current = state.current_per_s
    else:
        current = max(floor, state.current_per_s * DECREASE)
    hold = max(state.hold_until_s, now_s + (retry_after_s if retry_after_s else 0.0))
    return replace(state, current_per_s=current, hold_until_s=hold, last_change_s=now_s)


def on_success(state: RateState, *, now_s: float) -> RateState:
    if state.current_per_s >= state.configured_per_s:
        return state
    if now_s - state.last_change_s < INCREASE_EVERY_S:
        return state
    current = min(
        state.configured_per_s,
        state.current_per_s + state.configured_per_s * INCREASE_SHARE,
    )
    return replace(state, current_per_s=current, last_change_s=now_s)


def _bucket(rate_per_s: float) -> AsyncLimiter:
    capacity = max(1.0, rate_per_s * BUCKET_S)
    return AsyncLimiter(capacity, capacity / rate_per_s)


class AdaptiveLimiter:
    def __init__(self, configured_per_s: float) -> None:
        self.state = initial(max(configured_per_s, 0.1))
        self._bucket = _bucket(self.state.current_per_s)

    async def acquire(self) -> None:
        wait_s = self.state.hold_until_s - time.monotonic()
        if wait_s > 0:
            await anyio.sleep(wait_s)
        await self._bucket.acquire()

    def throttled(self, retry_after_s: float | None) -> None:
        self._apply(on_throttled(self.state, now_s=time.monotonic(), retry_after_s=retry_after_s))

    def succeeded(self) -> None:
        self._apply(on_success(self.state, now_s=time.monotonic()))

    def _apply(self, state: RateState) -> None:
        if state.current_per_s != self.state.current_per_s:
            # Waiters on the old bucket finish at the old rate; new sends use the new one.
            self._bucket = _bucket(state.current_per_s)
        self.state = state
