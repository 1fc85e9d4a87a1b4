"""Deterministic simulator outcomes, chosen by the last two digits of the destination number.

Tests and load runs compute the exact counters they expect from the numbers they send to,
so the mapping is a pure function of the number and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from herald.domain.channels import Channel

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


# -- WhatsApp, RCS and Viber ------------------------------------------------------------
#
# d = last two digits, u = d % 10, t = d // 10. The unit digit says whether the number is on a
# channel, the tens digit says whether the user reads (t even) and whether delivery is slow
# (t == 7). The unit sets overlap so that chains exercise every fallback path: u = 6, 7 are
# on RCS only, u = 4 on WhatsApp and Viber, u = 5 on WhatsApp only, u = 8, 9 on SMS only.
#
# Viber addresses user ids, not numbers: the simulator's bot users are made for a phone
# (simulator/viber.py). A user whose phone is in VIBER_USER_UNITS subscribes and gets the
# outcome below; any other opens the conversation without subscribing, and a send to it is
# answered status 6 receiverNotSubscribed. A contact herald knows no user id for is not sent
# to on Viber at all (no attempt; the chain moves on).

WHATSAPP_USER_UNITS: Final = frozenset({0, 1, 2, 3, 4, 5})
RCS_CAPABLE_UNITS: Final = frozenset({0, 1, 2, 3, 6, 7})
VIBER_USER_UNITS: Final = frozenset({0, 1, 2, 3, 4})
SLOW_TENS: Final = 7

# Codes the simulator reports on those channels.
CODE_WA_UNDELIVERABLE: Final = "131026"
CODE_RBM_NOT_FOUND: Final = "NOT_FOUND"
CODE_VIBER_NOT_REGISTERED: Final = "5"
CODE_VIBER_NOT_SUBSCRIBED: Final = "6"

HTTP_OK: Final = 200
HTTP_NOT_FOUND: Final = 404

# Herald's final attempt statuses along a chain.
PATH_DELIVERED: Final = "delivered"
PATH_READ: Final = "read"
PATH_FAILED: Final = "failed"
PATH_UNREACHABLE: Final = "unreachable"
PATH_REJECTED: Final = "rejected"


@dataclass(frozen=True, kw_only=True)
class ChannelOutcome:
    """How the simulator answers one number on WhatsApp, RCS or Viber.

    `callbacks` are in the provider's own words: WhatsApp sent/delivered/read/failed, RBM
    DELIVERED/READ, Viber delivered/seen; the code is set on a failure.
    """

    accepted: bool
    http_status: int
    error_code: str | None  # the synchronous refusal, when not accepted
    callbacks: tuple[Callback, ...]


def _units(phone: str) -> tuple[int, int]:
    suffix = last_two_digits(phone)
    return suffix % 10, suffix // 10


def reads(phone: str) -> bool:
    """Whether the user opens the message (a read/seen callback follows delivered)."""
    return _units(phone)[1] % 2 == 0


def is_slow(phone: str) -> bool:
    """Whether the delivered callback comes only after Behaviour.slow_delivery_ms."""
    return _units(phone)[1] == SLOW_TENS


def whatsapp_outcome(phone: str) -> ChannelOutcome:
    if _units(phone)[0] not in WHATSAPP_USER_UNITS:
        # Meta takes any number and reports the non-user later, as Cloud API does.
        return ChannelOutcome(
            accepted=True,
            http_status=HTTP_OK,
            error_code=None,
            callbacks=(("failed", CODE_WA_UNDELIVERABLE),),
        )
    read = (("read", None),) if reads(phone) else ()
    return ChannelOutcome(
        accepted=True,
        http_status=HTTP_OK,
        error_code=None,
        callbacks=(("sent", None), ("delivered", None), *read),
    )


def rcs_outcome(phone: str) -> ChannelOutcome:
    if _units(phone)[0] not in RCS_CAPABLE_UNITS:
        return ChannelOutcome(
            accepted=False, http_status=HTTP_NOT_FOUND, error_code=CODE_RBM_NOT_FOUND, callbacks=()
        )
    read = (("READ", None),) if reads(phone) else ()
    return ChannelOutcome(
        accepted=True, http_status=HTTP_OK, error_code=None, callbacks=(("DELIVERED", None), *read)
    )


def viber_outcome(phone: str) -> ChannelOutcome:
    """How the simulator answers a send to the Viber user made for phone (a user the
    simulator never made is status 5, one not subscribed status 6: simulator/viber.py)."""
    if _units(phone)[0] not in VIBER_USER_UNITS:
        # Viber reports errors inside an HTTP 200.
        return ChannelOutcome(
            accepted=False,
            http_status=HTTP_OK,
            error_code=CODE_VIBER_NOT_REGISTERED,
            callbacks=(),
        )
    seen = (("seen", None),) if reads(phone) else ()
    return ChannelOutcome(
        accepted=True,
        http_status=HTTP_OK,
        error_code=None,
        callbacks=(("delivered", None), *seen),
    )


def channel_final(phone: str, channel: Channel) -> tuple[str, bool]:
    """(herald's final attempt status on channel, whether the next channel is tried)."""
    if channel is Channel.SMS:
        sms = sms_outcome(phone)
        if not sms.accepted:
            return PATH_REJECTED, False
        # Undelivered SMS ends the chain: SMS is always its last channel.
        delivered = sms.callbacks and sms.callbacks[-1][0] == "delivered"
        return (PATH_DELIVERED if delivered else PATH_FAILED), False
    done = PATH_READ if reads(phone) else PATH_DELIVERED
    if channel is Channel.WHATSAPP:
        user = _units(phone)[0] in WHATSAPP_USER_UNITS
        return (done, False) if user else (PATH_FAILED, True)
    if channel is Channel.RCS:
        return (done, False) if rcs_outcome(phone).accepted else (PATH_UNREACHABLE, True)
    if channel is Channel.VIBER:
        return (done, False) if viber_outcome(phone).accepted else (PATH_UNREACHABLE, True)
    raise ValueError(f"the simulator does not serve {channel.value}")


def expected_path(
    phone: str, channels: Sequence[Channel], *, viber_linked: bool = True
) -> list[tuple[Channel, str]]:
    """The (channel, final attempt status) herald should record along a chain.

    Stops at the first delivered/read or at a failure that must not fall back. Injected
    faults (Behaviour) are not modelled: herald is expected to retry through them. With
    viber_linked False (the contact has no Viber user id) Viber is passed over: no attempt.
    """
    path: list[tuple[Channel, str]] = []
    for channel in channels:
        if channel is Channel.VIBER and not viber_linked:
            continue
        status, fall_back = channel_final(phone, channel)
        path.append((channel, status))
        if not fall_back:
            break
    return path
