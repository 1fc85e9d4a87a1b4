"""AIMD rate decisions and the circuit breaker's state machine, as tables."""

from __future__ import annotations

import pytest

from herald.breaker import (
    COOLDOWN_S,
    FAILURES_TO_OPEN,
    MAX_COOLDOWN_S,
    BreakerState,
    State,
    admit,
    on_result,
    refused,
)
from herald.ratelimit import initial, on_success, on_throttled


def test_throttle_halves_and_holds() -> None:
    state = on_throttled(initial(100.0), now_s=10.0, retry_after_s=2.0)
    assert state.current_per_s == 50.0
    assert state.hold_until_s == 12.0


def test_one_burst_of_429s_halves_once() -> None:
    state = on_throttled(initial(100.0), now_s=10.0, retry_after_s=None)
    state = on_throttled(state, now_s=10.2, retry_after_s=None)
    assert state.current_per_s == 50.0
    state = on_throttled(state, now_s=11.5, retry_after_s=None)
    assert state.current_per_s == 25.0


def test_rate_never_drops_below_its_floor() -> None:
    state = initial(100.0)
    for second in range(30):
        state = on_throttled(state, now_s=float(second * 2), retry_after_s=None)
    assert state.current_per_s == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("seconds_later", "expected"),
    [(0.5, 50.0), (1.0, 60.0), (1.5, 60.0)],
)
def test_additive_increase_once_per_second(seconds_later: float, expected: float) -> None:
    throttled = on_throttled(initial(100.0), now_s=0.0, retry_after_s=None)
    assert on_success(throttled, now_s=seconds_later).current_per_s == expected


def test_recovery_stops_at_the_configured_rate() -> None:
    state = on_throttled(initial(100.0), now_s=0.0, retry_after_s=None)
    for second in range(1, 20):
        state = on_success(state, now_s=float(second))
    assert state.current_per_s == 100.0


def test_breaker_opens_after_a_run_of_failures() -> None:
    state = BreakerState()
    for _ in range(FAILURES_TO_OPEN - 1):
        state = on_result(state, ok=False, now_s=0.0)
    assert state.state is State.CLOSED
    state = on_result(state, ok=False, now_s=0.0)
    assert state.state is State.OPEN


def test_success_resets_the_run() -> None:
    state = BreakerState()
    for _ in range(FAILURES_TO_OPEN - 1):
        state = on_result(state, ok=False, now_s=0.0)
    state = on_result(state, ok=True, now_s=0.0)
    assert state.failures == 0


@pytest.mark.parametrize(
    ("state", "now_s", "allowed", "after"),
    [
        (BreakerState(), 0.0, True, State.CLOSED),
        (BreakerState(state=State.OPEN, opened_at_s=10.0), 10.5, False, State.OPEN),
        (
            BreakerState(state=State.OPEN, opened_at_s=10.0),
            10.0 + COOLDOWN_S,
            True,
            State.HALF_OPEN,
        ),
        (BreakerState(state=State.HALF_OPEN, trial_in_flight=True), 99.0, False, State.HALF_OPEN),
        (BreakerState(state=State.HALF_OPEN), 99.0, True, State.HALF_OPEN),
    ],
)
def test_admit(state: BreakerState, now_s: float, allowed: bool, after: State) -> None:
    ok, new = admit(state, now_s=now_s)
    assert ok is allowed
    assert new.state is after


def test_failed_trial_doubles_the_cooldown() -> None:
    half_open = BreakerState(state=State.HALF_OPEN, trial_in_flight=True)
    reopened = on_result(half_open, ok=False, now_s=5.0)
    assert reopened.state is State.OPEN
    assert reopened.cooldown_s == 2 * COOLDOWN_S
    assert on_result(half_open, ok=True, now_s=5.0).state is State.CLOSED


@pytest.mark.parametrize(
    ("before", "cooldown_s"),
    [
        # One refused credential opens a closed breaker at once, with the first cooldown.
        (BreakerState(), COOLDOWN_S),
        # Refused again on the trial send: the wait doubles, up to the cap.
        (BreakerState(state=State.HALF_OPEN, cooldown_s=4.0, trial_in_flight=True), 8.0),
        (BreakerState(state=State.OPEN, cooldown_s=MAX_COOLDOWN_S), MAX_COOLDOWN_S),
    ],
)
def test_a_refused_credential_opens_the_breaker_at_once(
    before: BreakerState, cooldown_s: float
) -> None:
    after = refused(before, now_s=100.0)
    assert after.state is State.OPEN and after.opened_at_s == 100.0
    assert after.cooldown_s == cooldown_s and not after.trial_in_flight
    # It holds until the cooldown, then lets one trial through.
    assert admit(after, now_s=100.0 + cooldown_s / 2)[0] is False
    assert admit(after, now_s=100.0 + cooldown_s)[0] is True
