"""The dispatch decisions (domain/dispatch.py): what an answer means and what follows it."""

from __future__ import annotations

import pytest

from herald.domain.dispatch import (
    FINISH,
    HOLD,
    MAX_SEND_TRIES,
    MAX_THROTTLED,
    Again,
    Tries,
    after_answer,
    breaker_ok,
    budget_failure,
    classify,
    error_code,
)
from herald.domain.status import RecipientStatus
from herald.providers.base import ErrorClass, SendResult

OK = SendResult(accepted=True, provider_message_id="m1")
E = ErrorClass


def _failed(error_class: ErrorClass, code: str | None = None, after_s: float | None = None):
    return SendResult(
        accepted=False, error_class=error_class, error_code=code, retry_after_s=after_s
    )


@pytest.mark.parametrize(
    ("result", "outcome", "status", "fallback", "breaker", "budget", "code"),
    [
        (OK, "accepted", RecipientStatus.SENT, False, True, False, None),
        (
            _failed(E.UNREACHABLE, "63024"),
            "unreachable",
            RecipientStatus.FAILED,
            True,
            True,
            False,
            "63024",
        ),
        (
            _failed(E.OPTED_OUT, "21610"),
            "rejected",
            RecipientStatus.FAILED,
            False,
            True,
            False,
            "21610",
        ),
        (
            _failed(E.PERMANENT, "21211"),
            "rejected",
            RecipientStatus.FAILED,
            False,
            True,
            True,
            "21211",
        ),
        (
            _failed(E.AMBIGUOUS, "timeout"),
            "ambiguous",
            RecipientStatus.SENT,
            False,
            False,
            True,
            "timeout",
        ),
        (
            _failed(E.RETRYABLE),
            "rejected",
            RecipientStatus.FAILED,
            False,
            False,
            True,
            "retries_exhausted",
        ),
        (
            _failed(E.RETRYABLE, "503"),
            "rejected",
            RecipientStatus.FAILED,
            False,
            False,
            True,
            "503",
        ),
        (
            _failed(E.RATE_LIMITED),
            "rejected",
            RecipientStatus.FAILED,
            False,
            True,
            True,
            "retries_exhausted",
        ),
    ],
)
def test_what_a_final_answer_means(
    result: SendResult,
    outcome: str,
    status: RecipientStatus,
    fallback: bool,
    breaker: bool,
    budget: bool,
    code: str | None,
) -> None:
    verdict = classify(result)
    assert (verdict.outcome, verdict.status, verdict.fallback) == (outcome, status, fallback)
    assert breaker_ok(result) is breaker
    assert budget_failure(result) is budget
    assert error_code(result) == code


@pytest.mark.parametrize(
    ("result", "tries", "draw", "expected"),
    [
        (OK, Tries(), 0.5, FINISH),
        (_failed(E.PERMANENT), Tries(), 0.5, FINISH),
        (_failed(E.UNREACHABLE), Tries(), 0.5, FINISH),
        (_failed(E.AMBIGUOUS), Tries(), 0.5, FINISH),
        # A refused credential holds the send, whatever it used up.
        (_failed(E.UNAUTHORIZED), Tries(4, 100), 0.5, HOLD),
        # Retryable: full jitter under 0.2 s doubling per try, 5 s at most.
        (_failed(E.RETRYABLE), Tries(), 0.5, Again(0.1, Tries(1, 0))),
        (_failed(E.RETRYABLE), Tries(1, 0), 0.5, Again(0.2, Tries(2, 0))),
        (_failed(E.RETRYABLE), Tries(3, 0), 0.999, Again(0.1 * 2**4 * 0.999, Tries(4, 0))),
        (_failed(E.RETRYABLE), Tries(MAX_SEND_TRIES - 1, 0), 0.5, FINISH),
        # A 429 uses up no try, and its Retry-After is a floor...
        (_failed(E.RATE_LIMITED, after_s=2.0), Tries(), 0.5, Again(2.0, Tries(0, 1))),
        (_failed(E.RATE_LIMITED), Tries(2, 9), 1.0, Again(5.0, Tries(2, 10))),
        # ...within a bound, after which 429s count.
        (
            _failed(E.RATE_LIMITED),
            Tries(0, MAX_THROTTLED),
            0.0,
            Again(0.0, Tries(1, MAX_THROTTLED)),
        ),
        (_failed(E.RATE_LIMITED), Tries(MAX_SEND_TRIES - 1, MAX_THROTTLED), 0.0, FINISH),
    ],
)
def test_what_follows_an_answer(
    result: SendResult, tries: Tries, draw: float, expected: object
) -> None:
    step = after_answer(result, tries, draw)
    if isinstance(expected, Again):
        assert isinstance(step, Again)
        assert step.tries == expected.tries
        assert step.after_s == pytest.approx(expected.after_s)
    else:
        assert step == expected


def test_a_send_that_keeps_failing_is_tried_five_times() -> None:
    tries, sends = Tries(), 0
    while True:
        sends += 1
        step = after_answer(_failed(E.RETRYABLE), tries, 0.0)
        if not isinstance(step, Again):
            break
        tries = step.tries
    assert step == FINISH
    assert sends == MAX_SEND_TRIES
