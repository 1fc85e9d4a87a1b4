"""A campaign's error budget: when too many of its recent sends fail at the provider, herald
pauses it with a pause_reason instead of burning through the audience."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

MIN_SAMPLES_SHARE = 0.5


def exhausted(outcomes: Sequence[bool], *, window: int, max_failure_ratio: float) -> bool:
    """outcomes: True for a send that failed at the provider, newest last."""
    recent = list(outcomes)[-window:]
    if len(recent) < max(1, int(window * MIN_SAMPLES_SHARE)):
        return False
    return sum(recent) / len(recent) > max_failure_ratio


class ErrorBudget:
    def __init__(self, *, window: int, max_failure_ratio: float) -> None:
        self.window = window
        self.max_failure_ratio = max_failure_ratio
        self._outcomes: dict[str, deque[bool]] = {}

    def record(self, campaign_id: str, *, failed: bool) -> bool:
        """Record one send; True the first time the budget is exhausted."""
        outcomes = self._outcomes.setdefault(campaign_id, deque(maxlen=self.window))
        outcomes.append(failed)
        if exhausted(outcomes, window=self.window, max_failure_ratio=self.max_failure_ratio):
            outcomes.clear()  # report once; a resumed campaign starts a fresh window
            return True
        return False

    def ratio(self, campaign_id: str) -> float:
        outcomes = self._outcomes.get(campaign_id)
        return sum(outcomes) / len(outcomes) if outcomes else 0.0
