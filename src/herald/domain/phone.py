"""E.164 phone numbers, validated with the phonenumbers library."""

from __future__ import annotations

import functools
import re

import phonenumbers

# What people type between the digits of a number; E.164 has none of it.
_SEPARATORS = re.compile(r"[\s().\-/]")


class InvalidPhone(ValueError):
    pass


# A recipient's number is checked by each channel of its chain it is composed for; parsing
# is a fifth of the dispatch core's CPU (load-tests/bench_send_loop.py).
@functools.lru_cache(maxsize=8192)
def normalize_e164(raw: str) -> str:
    """The E.164 form of a number given with its country code; InvalidPhone otherwise."""
    text = raw.strip()
    if not text.startswith("+"):
        raise InvalidPhone("not in E.164 form (must start with + and a country code)")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone("not a phone number") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhone("impossible number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def canonical(raw: str) -> str:
    """The address expansion deduplicates on, cheap enough for millions: a number given with
    its country code, separators dropped (`+1 (415) 555-0100` is `+14155550100`, as E.164
    formats it); anything else trimmed and as given (it is skipped as invalid at send)."""
    text = raw.strip()
    if text.startswith("+"):
        digits = _SEPARATORS.sub("", text[1:])
        if digits.isdigit():
            return "+" + digits
    return text


def is_e164(raw: str) -> bool:
    try:
        normalize_e164(raw)
    except InvalidPhone:
        return False
    return True
