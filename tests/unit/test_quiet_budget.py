"""Quiet hours in the recipient's zone and the campaign error budget, as tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.budget import ErrorBudget, exhausted
from herald.domain.quiet import quiet_until, timezone_for


@pytest.mark.parametrize(
    ("phone", "zones"),
    [
        # UK mobiles span the Crown dependencies' zones; all keep London's time.
        (
            "+447911123456",
            {"Europe/London", "Europe/Guernsey", "Europe/Jersey", "Europe/Isle_of_Man"},
        ),
        ("+33612345678", {"Europe/Paris"}),
        ("+81312345678", {"Asia/Tokyo"}),
        ("+447700900123", {None}),  # a number set aside for drama: no zone
        ("not a number", {None}),
    ],
)
def test_timezone_for(phone: str, zones: set[str | None]) -> None:
    assert timezone_for(phone) in zones


def utc(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, 15, hour, minute, tzinfo=UTC)  # winter: London = UTC, Paris = +1


@pytest.mark.parametrize(
    ("now", "zone", "start", "end", "opens"),
    [
        (utc(12), "Europe/London", 21, 8, None),  # midday: send
        (utc(22), "Europe/London", 21, 8, utc(8).replace(day=16)),  # night, wraps midnight
        (utc(3), "Europe/London", 21, 8, utc(8)),  # small hours
        (utc(7, 59), "Europe/London", 21, 8, utc(8)),
        (utc(8), "Europe/London", 21, 8, None),  # the window opens on the hour
        (utc(20, 30), "Europe/Paris", 21, 8, utc(7).replace(day=16)),  # 21:30 in Paris
        (utc(13), "Europe/London", 12, 14, utc(14)),  # a lunch break, not wrapping
        (utc(13), "Europe/London", 9, 9, None),  # start == end: no quiet hours
        (utc(23), None, 21, 8, None),  # unknown zone: cannot apply
        (utc(23), "Europe/London", None, None, None),  # account without quiet hours
    ],
)
def test_quiet_until(
    now: datetime, zone: str | None, start: int | None, end: int | None, opens: datetime | None
) -> None:
    got = quiet_until(now, zone, start, end)
    if opens is None:
        assert got is None
    else:
        assert got is not None
        assert got == opens


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([True] * 49, False),  # not enough samples yet (half the window)
        ([True] * 50, True),
        ([True] * 25 + [False] * 25, False),  # exactly half may fail
        ([True] * 26 + [False] * 24, True),
        ([False] * 200 + [True] * 50, False),  # only the last window counts: 50 of 100
        ([False] * 200 + [True] * 51, True),
    ],
)
def test_exhausted(outcomes: list[bool], expected: bool) -> None:
    assert exhausted(outcomes, window=100, max_failure_ratio=0.5) is expected


def test_budget_fires_once_then_starts_a_fresh_window() -> None:
    budget = ErrorBudget(window=10, max_failure_ratio=0.5)
    fired = [budget.record("c1", failed=True) for _ in range(10)]
    # Half a window of samples is the minimum; firing clears the window.
    assert fired == [False] * 4 + [True] + [False] * 4 + [True]
    assert not budget.record("c2", failed=True)  # campaigns are separate
