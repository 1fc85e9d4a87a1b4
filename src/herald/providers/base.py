"""The one small interface every provider adapter implements, and the one error taxonomy."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from herald.domain.channels import Channel


class ErrorClass(StrEnum):
    RETRYABLE = "retryable"  # the provider did not take it; safe to try again
    RATE_LIMITED = "rate_limited"  # slow down; honour retry_after_s
    UNREACHABLE = "unreachable"  # this recipient cannot be reached on this channel
    PERMANENT = "permanent"  # bad data or content; never retry, never fall back
    OPTED_OUT = "opted_out"  # the recipient said stop; never retry, never fall back
    AMBIGUOUS = "ambiguous"  # the provider may have taken it; the answer was lost


@dataclass(frozen=True, kw_only=True)
class OutboundMessage:
    message_id: str  # herald's stable campaign.recipient.attempt id
    channel: Channel
    to: str
    sender: str
    body: str
    callback_url: str


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
