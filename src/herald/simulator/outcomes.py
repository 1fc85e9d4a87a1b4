"""Deterministic simulator outcomes, chosen by the last two digits of the destination number.

Tests and load runs compute the exact counters they expect from the numbers they send to,
so the mapping is a pure function of the number and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

# Twilio error codes the simulator produces.
CODE_INVALID_TO = 21211
CODE_UNSUBSCRIBED = 21610
CODE_HANDSET_UNREACHABLE = 30003
CODE_LANDLINE = 30006

HTTP_CREATED = 201
HTTP_BAD_REQUEST = 400

Callback = tuple[str, str | None]  # (MessageStatus, ErrorCode or None)


@dataclass(frozen=True, kw_only=True)
class SmsOutcome:
    http_status: int
    error_code: int | None
    callbacks: tuple[Callback, ...]

    @property
    def accepted(self) -> bool:
        return self.http_status == HTTP_CREATED


_DELIVERED = SmsOutcome(
    http_status=HTTP_CREATED,
    error_code=None,
    callbacks=(("sent", None), ("delivered", None)),
)
_UNREACHABLE = SmsOutcome(
    http_status=HTTP_CREATED,
    error_code=None,
    callbacks=(("sent", None), ("undelivered", str(CODE_HANDSET_UNREACHABLE))),
)
_LANDLINE = SmsOutcome(
    http_status=HTTP_CREATED,
    error_code=None,
    callbacks=(("sent", None), ("undelivered", str(CODE_LANDLINE))),
)
_INVALID_TO = SmsOutcome(http_status=HTTP_BAD_REQUEST, error_code=CODE_INVALID_TO, callbacks=())
_UNSUBSCRIBED = SmsOutcome(http_status=HTTP_BAD_REQUEST, error_code=CODE_UNSUBSCRIBED, callbacks=())


def last_two_digits(phone: str) -> int:
    """The number formed by the last two digits of phone, ignoring '+' and any punctuation."""
    digits = "".join(ch for ch in phone if ch.isascii() and ch.isdigit())
    return int(digits[-2:]) if digits else 0


def sms_outcome(phone: str) -> SmsOutcome:
    suffix = last_two_digits(phone)
    if suffix <= 84:
        return _DELIVERED
    if suffix <= 89:
        return _UNREACHABLE
    if suffix <= 94:
        return _LANDLINE
    if suffix <= 97:
        return _INVALID_TO
    return _UNSUBSCRIBED


def expected_accepted(phone: str) -> bool:
    """Whether the simulator answers 201 for this number (herald counts it as sent)."""
    return sms_outcome(phone).accepted


def expected_final(phone: str) -> str:
    """Herald's final recipient status for an SMS-only send: "delivered" or "failed"."""
    outcome = sms_outcome(phone)
    if outcome.accepted and outcome.callbacks and outcome.callbacks[-1][0] == "delivered":
        return "delivered"
    return "failed"
