"""The one small interface every provider adapter implements, and the one error taxonomy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from herald.domain.channels import Channel


class ErrorClass(StrEnum):
    RETRYABLE = "retryable"  # the provider did not take it; safe to try again
    RATE_LIMITED = "rate_limited"  # slow down; honour retry_after_s
    UNREACHABLE = "unreachable"  # this recipient cannot be reached on this channel
    PERMANENT = "permanent"  # bad data or content; never retry, never fall back
    OPTED_OUT = "opted_out"  # the recipient said stop; never retry, never fall back
    AMBIGUOUS = "ambiguous"  # the provider may have taken it; the answer was lost
    # The provider refused herald's credential (expired, revoked): the provider account is
    # held (its breaker opens) until it works again; never the recipient's failure.
    UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True, kw_only=True)
class WhatsAppTemplate:
    name: str
    language: str
    # Cloud API template components with every {{placeholder}} already filled in.
    components: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True)
class OutboundMessage:
    message_id: str  # herald's stable campaign.recipient.attempt id
    channel: Channel
    to: str  # E.164 for phone channels, an address for email
    sender: str  # SMS from, RBM agent id, Viber sender name, email from address
    body: str  # SMS/RCS/Viber text, email body
    callback_url: str  # where this message's status callbacks go (SMS carries it per message)
    subject: str | None = None  # email only
    template: WhatsAppTemplate | None = None  # WhatsApp only


@dataclass(frozen=True, kw_only=True)
class SendResult:
    accepted: bool
    provider_message_id: str | None = None
    error_class: ErrorClass | None = None
    error_code: str | None = None
    error_description: str | None = None
    retry_after_s: float | None = None


class Provider(Protocol):
    name: str
    channel: Channel

    async def send(self, message: OutboundMessage) -> SendResult: ...

    async def close(self) -> None: ...


class Revocable(Protocol):
    """A provider that can withdraw a message not yet delivered (RBM)."""

    async def revoke(self, message_id: str, to: str) -> bool:
        """True when the message was withdrawn; False when it was delivered first."""
        ...
