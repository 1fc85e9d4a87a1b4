"""The canonical address expansion deduplicates on agrees with E.164 as sending formats it."""

from __future__ import annotations

import pytest

from herald.domain.phone import canonical, normalize_e164


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+14155550100", "+14155550100"),
        ("+1 415 555 0100", "+14155550100"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("  +1.415.555.0100\t", "+14155550100"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+49 30/1234567", "+49301234567"),
        # Not given with a country code, or not a number: left for send to skip, trimmed.
        ("4155550100", "4155550100"),
        (" 12345 ", "12345"),
        ("+1 415 CALL NOW", "+1 415 CALL NOW"),
    ],
)
def test_canonical(raw: str, expected: str) -> None:
    assert canonical(raw) == expected


@pytest.mark.parametrize(
    "raw", ["+1 415 555 0100", "+1 (415) 555-0100", "+44 20 7946 0958", "+33 1 23 45 67 89"]
)
def test_canonical_is_what_sending_normalises_to(raw: str) -> None:
    assert canonical(raw) == normalize_e164(raw)
