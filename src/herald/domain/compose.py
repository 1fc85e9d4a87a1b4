"""What to send to one recipient, or why to skip them: a pure decision per recipient."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from herald.domain.channels import Channel
from herald.domain.events import CampaignConfirmed
from herald.domain.phone import InvalidPhone, normalize_e164
from herald.domain.templates import MissingVariable, recipient_variables, render


@dataclass(frozen=True, kw_only=True)
class RecipientRow:
    id: int
    phone: str | None
    email: str | None
    contact_id: str | None
    fields: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class Message:
    channel: Channel
    attempt: int  # the channel's position in the chain, from 1: stable across restarts
    to: str
    sender: str
    body: str


@dataclass(frozen=True, kw_only=True)
class Skip:
    reason: str  # a stable code: invalid_phone, missing_variable, no_channel
    description: str


def first_channel(
    event: CampaignConfirmed, available: Collection[Channel]
) -> tuple[int, Channel] | None:
    """The first channel of the chain herald can send on, with its attempt number."""
    for position, channel in enumerate(event.channels, start=1):
        if channel in available:
            return position, channel
    return None


def compose(
    *,
    event: CampaignConfirmed,
    recipient: RecipientRow,
    available: Collection[Channel],
    default_sms_sender: str,
) -> Message | Skip:
    picked = first_channel(event, available)
    if picked is None:
        chain = ", ".join(c.value for c in event.channels)
        return Skip(reason="no_channel", description=f"no provider configured for {chain}")
    attempt, channel = picked
    if channel is not Channel.SMS or event.content.sms is None:
        return Skip(reason="no_channel", description=f"herald cannot send {channel.value} yet")
    if not recipient.phone:
        return Skip(reason="invalid_phone", description="recipient has no phone number")
    try:
        to = normalize_e164(recipient.phone)
    except InvalidPhone as exc:
        return Skip(reason="invalid_phone", description=str(exc))
    overrides: Mapping[str, str] = {}
    for key in (recipient.contact_id, recipient.phone):
        if key and key in event.recipient_variables:
            overrides = event.recipient_variables[key]
            break
    variables = recipient_variables(
        contact_fields=recipient.fields,
        variable_mappings=event.variable_mappings,
        overrides=overrides,
    )
    try:
        body = render(event.content.sms.body, variables)
    except MissingVariable as exc:
        return Skip(reason="missing_variable", description=f"no value for {{{{{exc.name}}}}}")
    return Message(
        channel=channel,
        attempt=attempt,
        to=to,
        sender=event.content.sms.sender or default_sms_sender,
        body=body,
    )
