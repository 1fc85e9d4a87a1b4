"""The send pacer on a virtual clock: no burst at first, whole windows within the rate + 5 %,
one slot per send under concurrency, rate changes in place; and one limiter per account and
channel in Delivery however many first sends ask at once."""

from __future__ import annotations

import math
from pathlib import Path

import anyio
import pytest

from herald.delivery import Delivery
from herald.domain.channels import Channel
from herald.fakes import MemoryAccounts, MemoryAttemptLog, MemorySink, MemoryTransport
from herald.ratelimit import (
    BURST_S,
    AdaptiveLimiter,
    RateState,
    fresh_next_s,
    initial,
    on_throttled,
    reconfigured,
    take_slot,
)
from herald.settings import Settings
from herald.store.accounts import AccountSettings


class Clock:
    def __init__(self, now_s: float = 1000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def _worst_window(starts: list[float], window_s: float = 1.0) -> int:
    """The most sends any window [t, t + window_s) holds (slots summed from intervals may
    land a hair early: a nanosecond of slack)."""
    times = sorted(starts)
    best = 0
    j = 0
    for i, first in enumerate(times):
        while j < len(times) and times[j] < first + window_s - 1e-9:
            j += 1
        best = max(best, j - i)
    return best


def _paced(rate_per_s: float, asks_s: list[float]) -> list[float]:
    """Start times the pacer gives sends asked for at asks_s (in order), from a fresh pacer."""
    next_s = fresh_next_s(asks_s[0], rate_per_s)
    starts = []
    for ask in asks_s:
        slot = take_slot(next_s, now_s=ask, rate_per_s=rate_per_s)
        assert slot.start_s >= ask
        next_s = slot.next_s
        starts.append(slot.start_s)
    return starts


@pytest.mark.parametrize("rate_per_s", [1.0, 5.0, 20.0, 200.0, 2000.0])
def test_a_fresh_pacer_keeps_the_rate_from_its_first_send(rate_per_s: float) -> None:
    # Many more sends than the rate, all asked for at the same instant (the first chunk).
    starts = _paced(rate_per_s, [0.0] * int(rate_per_s * 3 + 10))
    assert starts[0] == 0.0  # the first send does not wait
    first_second = sum(1 for s in starts if s < 1.0 - 1e-9)
    assert first_second == math.ceil(rate_per_s)  # the rate, not a bucketful more
    assert _worst_window(starts) <= rate_per_s * 1.05


@pytest.mark.parametrize("rate_per_s", [20.0, 200.0, 2000.0])
def test_after_a_lull_the_burst_stays_within_five_percent(rate_per_s: float) -> None:
    # A second of sends, a lull of 3 s, then a flood: the window over the flood's start
    # carries the early slots and the paced ones.
    flood = [0.0] * int(rate_per_s * 2) + [3.0] * int(rate_per_s * 2)
    starts = _paced(rate_per_s, flood)
    assert _worst_window(starts) <= rate_per_s * 1.05
    # The lull's allowance is used: the flood's first sends do not wait.
    assert sum(1 for s in starts if s == 3.0) >= math.floor(rate_per_s * BURST_S)


def test_sends_woken_late_together_still_go_out_paced() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(100.0, clock=clock)
    woken = [limiter.reserve() for _ in range(20)]  # wake-ups 10 ms apart
    clock.now_s += 0.5  # the process stalled: every one of them wakes now, late
    assert all(w < clock.now_s for w in woken)
    out = [limiter.going_out() for _ in woken]
    # The lull's small allowance (BURST_S: 2 slots at 100/s) goes at once, the rest one
    # interval apart.
    early = math.floor(100.0 * BURST_S)
    assert sum(1 for s in out if s == clock.now_s) == 1 + early
    assert out[-1] == pytest.approx(clock.now_s + (19 - early) * 0.01)
    assert _worst_window(out, window_s=0.1) <= 10 + early
    # And the next wake-ups come after them, not in the past.
    assert limiter.reserve() >= out[-1]


def test_slots_are_spaced_by_the_interval() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(10.0, clock=clock)
    starts = [limiter.reserve() for _ in range(5)]
    assert starts == pytest.approx([clock.now_s + k * 0.1 for k in range(5)])


async def test_a_rate_change_applies_to_the_next_slot() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(10.0, clock=clock)
    await limiter.acquire()  # the first slot is free and starts now
    limiter.configure(100.0)
    assert limiter.state.configured_per_s == 100.0
    second, third = limiter.reserve(), limiter.reserve()
    # Paced at the new rate from the send that went out, with no burst for the change.
    assert [second, third] == pytest.approx([clock.now_s + 0.01, clock.now_s + 0.02])


@pytest.mark.parametrize(
    ("state", "new_rate", "current"),
    [
        (initial(100.0), 50.0, 50.0),  # at full rate: moves to the new rate
        (initial(100.0), 400.0, 400.0),
        (RateState(configured_per_s=100.0, current_per_s=25.0), 400.0, 25.0),  # throttled
        (RateState(configured_per_s=100.0, current_per_s=25.0), 10.0, 10.0),
        (initial(100.0), 100.0, 100.0),
    ],
)
def test_reconfigured(state: RateState, new_rate: float, current: float) -> None:
    after = reconfigured(state, new_rate)
    assert after.configured_per_s == new_rate
    assert after.current_per_s == current


async def test_concurrent_acquires_take_distinct_slots() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(1000.0, clock=clock)
    taken: list[float] = []
    reserve = limiter.reserve

    def recording() -> float:
        start = reserve()
        taken.append(start)
        return start

    limiter.reserve = recording  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(limiter.acquire)
    assert len(set(taken)) == 50
    assert max(taken) - min(taken) == pytest.approx(49 / 1000.0)


async def test_a_rate_change_wakes_waiters_at_once() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(0.1, clock=clock)  # one send per 10 s
    await limiter.acquire()  # the first slot is free
    done = anyio.Event()

    async def second() -> None:
        await limiter.acquire()
        done.set()

    with anyio.fail_after(5):  # without the wake-up it would sleep 10 s
        async with anyio.create_task_group() as tg:
            tg.start_soon(second)
            await anyio.sleep(0.05)
            assert not done.is_set()
            limiter.configure(1000.0)
    assert done.is_set()


async def test_a_throttle_voids_the_slots_handed_out() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(100.0, clock=clock)
    await limiter.acquire()
    for _ in range(10):
        limiter.reserve()  # slots of waiters still asleep
    limiter.throttled(retry_after_s=None)
    assert limiter.state == on_throttled(initial(100.0), now_s=clock.now_s, retry_after_s=None)
    first, second = limiter.reserve(), limiter.reserve()
    assert [first, second] == pytest.approx([clock.now_s + 0.02, clock.now_s + 0.04])


async def test_concurrent_first_sends_share_one_limiter(tmp_path: Path) -> None:
    reads = 0

    class SlowAccounts(MemoryAccounts):
        async def settings(self, account_id: str) -> AccountSettings:
            nonlocal reads
            reads += 1
            await anyio.sleep(0.01)  # every first send is inside this await at once
            return AccountSettings(rate_per_s=20.0, quiet_hours=None)

    settings = Settings.development(data_dir=tmp_path)
    delivery = Delivery(
        settings=settings,
        attempts=MemoryAttemptLog(),
        accounts=SlowAccounts(),
        transport=MemoryTransport({}),
        sink=MemorySink(),
    )
    got: list[AdaptiveLimiter] = []

    async def first_send() -> None:
        got.append(await delivery.limiter_for("acct", Channel.SMS))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(first_send)
    assert reads >= 1
    assert len({id(limiter) for limiter in got}) == 1
    assert got[0].state.configured_per_s == 20.0
