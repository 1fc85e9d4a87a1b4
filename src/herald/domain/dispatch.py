"""The dispatch decisions: what a provider's answer means, and what the worker does next.

Pure functions returning values; delivery.py drives them with the I/O (attempt rows, the
provider call, the waits). A send is tried until an answer is final: accepted, or refused for
good, or five tries that each failed in a way worth repeating. A 429 was never processed, so
repeating it uses up no try (a storm slows the account down instead of failing its
recipients), within MAX_THROTTLED. A refused credential holds the send without using a try:
the provider account's breaker keeps it waiting until the credential works again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from herald.domain.status import RecipientStatus
from herald.providers.base import ErrorClass, SendResult
from herald.retry import Backoff, delay_s

MAX_SEND_TRIES: Final = 5
MAX_THROTTLED: Final = 100
# Full jitter, from 0.2 s doubling to 5 s: the same capped exponential as every other wait.
SEND_BACKOFF: Final = Backoff(first_s=0.2, cap_s=5.0, jitter=1.0)

# Answers that say the provider itself is in trouble (they feed its circuit breaker).
PROVIDER_TROUBLE: Final = frozenset({ErrorClass.RETRYABLE, ErrorClass.AMBIGUOUS})
# Failures that say something about the recipient, not the campaign: outside its budget.
NOT_PROVIDER_FAILURES: Final = frozenset({ErrorClass.UNREACHABLE, ErrorClass.OPTED_OUT})
_REPEATABLE: Final = frozenset({ErrorClass.RETRYABLE, ErrorClass.RATE_LIMITED})


@dataclass(frozen=True, kw_only=True)
class Classified:
    outcome: str  # accepted, rejected, unreachable, ambiguous: stored on the attempt row
    status: RecipientStatus
    fallback: bool  # the next channel may be tried


_ACCEPTED: Final = Classified(outcome="accepted", status=RecipientStatus.SENT, fallback=False)
_UNREACHABLE: Final = Classified(
    outcome="unreachable", status=RecipientStatus.FAILED, fallback=True
)
# The provider may have it: treated as sent, never failed over at once (that could send
# twice). Its callbacks decide, or the fallback window does when none come.
_AMBIGUOUS: Final = Classified(outcome="ambiguous", status=RecipientStatus.SENT, fallback=False)
_REJECTED: Final = Classified(outcome="rejected", status=RecipientStatus.FAILED, fallback=False)


def classify(result: SendResult) -> Classified:
    """The attempt outcome and status event one final provider answer means."""
    if result.accepted:
        return _ACCEPTED
    if result.error_class is ErrorClass.UNREACHABLE:
        return _UNREACHABLE
    if result.error_class is ErrorClass.AMBIGUOUS:
        return _AMBIGUOUS
    return _REJECTED


def error_code(result: SendResult) -> str | None:
    """The code stored for a final answer: one that was still worth repeating when the tries
    ran out says so when the provider gave no code."""
    if result.error_class in _REPEATABLE and not result.accepted:
        return result.error_code or "retries_exhausted"
    return result.error_code


def breaker_ok(result: SendResult) -> bool:
    """Whether the answer counts as the provider working, for its circuit breaker."""
    return result.error_class not in PROVIDER_TROUBLE


def budget_failure(result: SendResult) -> bool:
    """Whether the answer counts against the campaign's error budget."""
    return not result.accepted and result.error_class not in NOT_PROVIDER_FAILURES


@dataclass(frozen=True)
class Tries:
    """What a send has used up: tries that count, and 429s that do not (within a bound)."""

    counted: int = 0
    throttled: int = 0


@dataclass(frozen=True)
class Finish:
    """The answer stands: record it."""


@dataclass(frozen=True)
class Again:
    """Try again after `after_s`, having used `tries`."""

    after_s: float
    tries: Tries


@dataclass(frozen=True)
class Hold:
    """The provider refused herald's credential: wait for its breaker, using up no try."""


FINISH: Final = Finish()
HOLD: Final = Hold()


def after_answer(result: SendResult, tries: Tries, draw: float) -> Finish | Again | Hold:
    """The next step of a send after one answer; `draw` in [0, 1) jitters the wait."""
    if result.error_class is ErrorClass.UNAUTHORIZED:
        return HOLD
    if result.accepted or result.error_class not in _REPEATABLE:
        return FINISH
    if result.error_class is ErrorClass.RATE_LIMITED and tries.throttled < MAX_THROTTLED:
        tries = Tries(tries.counted, tries.throttled + 1)
    else:
        tries = Tries(tries.counted + 1, tries.throttled)
    if tries.counted >= MAX_SEND_TRIES:
        return FINISH
    wait_s = delay_s(SEND_BACKOFF, max(tries.counted, tries.throttled), draw)
    # A Retry-After from the provider is a floor.
    return Again(max(wait_s, result.retry_after_s or 0.0), tries)
