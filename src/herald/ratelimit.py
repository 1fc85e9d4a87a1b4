"""Per-account, per-channel send rates: a pacer whose rate adapts and can be changed in place.

A provider's 429 is the ground truth: the rate halves (multiplicative decrease) and sends
wait out its Retry-After; every second without one gives back a tenth of the configured
rate (additive increase) up to the configured rate. The decisions are pure functions over
RateState.

Sends are paced by slots (GCRA, the virtual-scheduling form of a token bucket): each send
takes the next slot, one interval after the one before. A new pacer starts empty, so the
first second carries the rate and no burst; after a lull at most BURST_S worth of slots
(whole ones) may go early, so any one-second window stays within the rate + 2 %. A slot is
taken synchronously, so concurrent first sends cannot share one, and a rate change re-slots
every waiter at once instead of letting the queue drain at the old rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import anyio

MIN_SHARE = 0.05  # never below 5% of the configured rate
DECREASE = 0.5
INCREASE_SHARE = 0.1
INCREASE_EVERY_S = 1.0
# After a lull up to 20 ms of sends may go early (whole slots only): enough to keep the rate
# when a sender wakes late, small enough that a window carries at most 2 % over the rate,
# which leaves the rest of the 5 % bound to the network's and the provider's jitter (a
# provider counts arrivals, and a stalled hop bunches them).
BURST_S = 0.02
MIN_RATE_PER_S = 0.1


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


def reconfigured(state: RateState, configured_per_s: float) -> RateState:
    """The account's rate was changed: a limiter at full rate moves to the new rate; one slowed
    by 429s keeps its slower rate unless the new rate is lower still."""
    if configured_per_s == state.configured_per_s:
        return state
    throttled = state.current_per_s < state.configured_per_s
    current = min(state.current_per_s, configured_per_s) if throttled else configured_per_s
    return replace(state, configured_per_s=configured_per_s, current_per_s=current)


@dataclass(frozen=True, kw_only=True)
class Slot:
    start_s: float  # when this send may start
    next_s: float  # the theoretical time of the send after it


def take_slot(next_s: float, *, now_s: float, rate_per_s: float) -> Slot:
    """The slot for a send asked for at now_s, given the pacer's theoretical next send time
    (GCRA). Up to BURST_S of whole slots may be taken early after a lull, never more."""
    interval_s = 1.0 / rate_per_s
    early_s = math.floor(rate_per_s * BURST_S) * interval_s
    theoretical = max(next_s, now_s)
    start = max(now_s, theoretical - early_s)
    return Slot(start_s=start, next_s=theoretical + interval_s)


def fresh_next_s(now_s: float, rate_per_s: float) -> float:
    """A new pacer's theoretical next send time: the early allowance is already used up, so
    the first second carries no burst."""
    return now_s + math.floor(rate_per_s * BURST_S) / rate_per_s


class AdaptiveLimiter:
    """The pacer for one (account, channel) or one provider account."""

    def __init__(
        self, configured_per_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self.state = initial(max(configured_per_s, MIN_RATE_PER_S))
        # Two pacers at the same rate: slots to wake up on, taken when a send asks (so waiters
        # wake one interval apart), and slots to go out on, taken on waking (so waiters that
        # wake late together, the process having stalled, still go out one interval apart).
        self._next_s = fresh_next_s(clock(), self.state.current_per_s)
        self._out_next_s = self._next_s
        # The start of the latest slot a send went out on: re-slotting starts after it.
        self._last_start_s = -math.inf
        self._generation = 0
        self._changed: anyio.Event | None = None  # made on first wait, inside the event loop

    def reserve(self) -> float:
        """Takes the next slot and returns its start time (synchronous: no two sends share
        a slot, whatever the concurrency)."""
        slot = take_slot(self._next_s, now_s=self._clock(), rate_per_s=self.state.current_per_s)
        self._next_s = slot.next_s
        return slot.start_s

    async def acquire(self) -> None:
        while True:
            wait_s = self.state.hold_until_s - self._clock()
            if wait_s > 0:
                await anyio.sleep(wait_s)
            generation = self._generation
            start_s = self.reserve()
            wait_s = start_s - self._clock()
            if wait_s > 0:
                if self._changed is None:
                    self._changed = anyio.Event()
                # A rate change wakes every waiter to take a slot at the new rate.
                with anyio.move_on_after(wait_s):
                    await self._changed.wait()
            if generation != self._generation:
                continue
            wait_s = self.going_out() - self._clock()
            if wait_s > 0:
                await anyio.sleep(wait_s)
            return

    def going_out(self) -> float:
        """Takes the slot a woken send goes out on and returns its start time."""
        out = take_slot(self._out_next_s, now_s=self._clock(), rate_per_s=self.state.current_per_s)
        self._out_next_s = out.next_s
        # Wake-ups never run ahead of what may go out: after a stall the lost time stays lost
        # instead of being made up in a burst.
        self._next_s = max(self._next_s, out.next_s)
        self._last_start_s = max(self._last_start_s, out.start_s)
        return out.start_s

    def configure(self, configured_per_s: float) -> None:
        """The account's rate changed (through the API): applies to every send from now on."""
        self._apply(reconfigured(self.state, max(configured_per_s, MIN_RATE_PER_S)))

    def throttled(self, retry_after_s: float | None) -> None:
        self._apply(on_throttled(self.state, now_s=self._clock(), retry_after_s=retry_after_s))

    def succeeded(self) -> None:
        self._apply(on_success(self.state, now_s=self._clock()))

    def _apply(self, state: RateState) -> None:
        rate_changed = state.current_per_s != self.state.current_per_s
        self.state = state
        if not rate_changed:
            return
        # Slots handed out but not yet reached are void: the waiters take new ones, paced at
        # the new rate from the last send that went out, with no early allowance.
        after_s = max(self._clock(), self._last_start_s + 1.0 / state.current_per_s)
        self._next_s = self._out_next_s = fresh_next_s(after_s, state.current_per_s)
        self._generation += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None
