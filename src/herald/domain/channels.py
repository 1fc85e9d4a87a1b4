"""Channels and the fallback chains that sending modes name."""

from __future__ import annotations

import functools
from enum import StrEnum


class Channel(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    RCS = "rcs"
    VIBER = "viber"
    EMAIL = "email"


class SendingMode(StrEnum):
    SMS = "SMS"
    RCS = "RCS"
    WHATSAPP = "WHATSAPP"
    VIBER = "VIBER"
    EMAIL = "EMAIL"
    RCS_SMS = "RCS_SMS"
    WHATSAPP_SMS = "WHATSAPP_SMS"
    WHATSAPP_RCS = "WHATSAPP_RCS"
    WHATSAPP_RCS_SMS = "WHATSAPP_RCS_SMS"


@functools.cache  # every compose asks (CampaignConfirmed.channels)
def chain(mode: SendingMode) -> tuple[Channel, ...]:
    """The channels a mode tries, in order: WHATSAPP_RCS_SMS is WhatsApp, then RCS, then SMS."""
    return tuple(Channel(part.lower()) for part in mode.value.split("_"))


def uses_phone(channel: Channel) -> bool:
    return channel is not Channel.EMAIL
