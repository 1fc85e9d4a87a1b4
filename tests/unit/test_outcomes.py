"""Simulator outcomes are a pure function of the last two digits of the number."""

from __future__ import annotations

import pytest

from herald.simulator.outcomes import (
    SmsOutcome,
    expected_accepted,
    expected_final,
    last_two_digits,
    sms_outcome,
)

DELIVERED = (("sent", None), ("delivered", None))
UNREACHABLE = (("sent", None), ("undelivered", "30003"))
LANDLINE = (("sent", None), ("undelivered", "30006"))


@pytest.mark.parametrize(
    ("suffix", "http_status", "error_code", "callbacks", "final"),
    [
        ("00", 201, None, DELIVERED, "delivered"),
        ("84", 201, None, DELIVERED, "delivered"),
        ("85", 201, None, UNREACHABLE, "failed"),
        ("89", 201, None, UNREACHABLE, "failed"),
        ("90", 201, None, LANDLINE, "failed"),
        ("94", 201, None, LANDLINE, "failed"),
        ("95", 400, 21211, (), "failed"),
        ("97", 400, 21211, (), "failed"),
        ("98", 400, 21610, (), "failed"),
        ("99", 400, 21610, (), "failed"),
    ],
)
def test_boundaries(
    suffix: str,
    http_status: int,
    error_code: int | None,
    callbacks: tuple[tuple[str, str | None], ...],
    final: str,
) -> None:
    phone = f"+155512345{suffix}"
    outcome = sms_outcome(phone)
    assert outcome == SmsOutcome(
        http_status=http_status, error_code=error_code, callbacks=callbacks
    )
    assert expected_final(phone) == final
    assert expected_accepted(phone) is (http_status == 201)
    assert outcome.accepted is (http_status == 201)


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+15005550100", 0),
        ("+1 (500) 555-0198", 98),
        ("+4915112345607", 7),
        ("+1", 1),
        ("", 0),
    ],
)
def test_last_two_digits_ignores_punctuation(phone: str, expected: int) -> None:
    assert last_two_digits(phone) == expected


def test_every_suffix_has_one_outcome() -> None:
    finals = [expected_final(f"+1555000{n:04d}") for n in range(100)]
    assert finals.count("delivered") == 85
    assert finals.count("failed") == 15
    assert sum(expected_accepted(f"+1555000{n:04d}") for n in range(100)) == 95
