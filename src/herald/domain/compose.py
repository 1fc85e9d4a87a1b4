"""What to send to one recipient on which channel, or why not: a pure decision per recipient.

The chain is walked from `start_attempt` (a channel's attempt number is its position in the
chain, so it is stable across restarts): channels without a provider, that the contact
opted out of, or that the recipient has no address on (a contact without a Viber user id, a
raw destination on Viber) are passed over; the first channel the recipient can be reached on
wins. A missing template variable stops the walk: content errors never fall back.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from herald.domain.channels import Channel
from herald.domain.events import CampaignConfirmed
from herald.domain.phone import InvalidPhone, normalize_e164
from herald.domain.sms import transliterate
from herald.domain.templates import MissingVariable, recipient_variables, render


@dataclass(frozen=True, kw_only=True)
class RecipientRow:
    id: int
    phone: str | None
    email: str | None
    contact_id: str | None
    fields: Mapping[str, Any]
    opted_out: frozenset[Channel] = frozenset()
    variant: int | None = None  # the A/B test arm, when the campaign has one
    viber_user_id: str | None = None  # the contact's Viber identity (contact_identities)


@dataclass(frozen=True, kw_only=True)
class Message:
    channel: Channel
    attempt: int  # the channel's position in the chain, from 1
    to: str
    sender: str
    body: str
    subject: str | None = None
    template_name: str | None = None
    template_language: str | None = None
    template_components: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Skip:
    reason: str  # a stable code: invalid_phone, no_viber_identity, missing_variable, opted_out, ...
    description: str


def first_channel(
    event: CampaignConfirmed, available: Collection[Channel], start_attempt: int = 1
) -> tuple[int, Channel] | None:
    """The first channel from start_attempt on that herald can send on, with its number."""
    for position, channel in enumerate(event.channels, start=1):
        if position >= start_attempt and channel in available:
            return position, channel
    return None


def compose(
    *,
    event: CampaignConfirmed,
    recipient: RecipientRow,
    available: Collection[Channel],
    default_sms_sender: str,
    start_attempt: int = 1,
) -> Message | Skip:
    passed: list[Skip] = []
    variables: dict[str, object] | None = None
    for attempt, channel in enumerate(event.channels, start=1):
        if attempt < start_attempt:
            continue
        if channel not in available:
            passed.append(
                Skip(reason="no_provider", description=f"no provider for {channel.value}")
            )
            continue
        if channel in recipient.opted_out:
            passed.append(
                Skip(reason="opted_out", description=f"contact opted out of {channel.value}")
            )
            continue
        if variables is None:
            variables = _variables(event, recipient)
        try:
            decision = _for_channel(
                event, recipient, channel, attempt, variables, default_sms_sender
            )
        except MissingVariable as exc:
            return Skip(reason="missing_variable", description=f"no value for {{{{{exc.name}}}}}")
        if isinstance(decision, Message):
            return decision
        passed.append(decision)
    if passed:
        return passed[0]
    return Skip(reason="no_channel_left", description="every channel of the chain was tried")


def _variables(event: CampaignConfirmed, recipient: RecipientRow) -> dict[str, object]:
    overrides: Mapping[str, str] = {}
    for key in (recipient.contact_id, recipient.phone, recipient.email):
        if key and key in event.recipient_variables:
            overrides = event.recipient_variables[key]
            break
    return recipient_variables(
        contact_fields=recipient.fields,
        variable_mappings=event.variable_mappings,
        overrides=overrides,
    )


def _for_channel(
    event: CampaignConfirmed,
    recipient: RecipientRow,
    channel: Channel,
    attempt: int,
    variables: Mapping[str, object],
    default_sms_sender: str,
) -> Message | Skip:
    content = event.content_for(recipient.variant)
    if channel is Channel.EMAIL:
        if content.email is None:
            return Skip(reason="no_content", description="no email content")
        if not recipient.email or "@" not in recipient.email:
            return Skip(reason="invalid_email", description="recipient has no email address")
        return Message(
            channel=channel,
            attempt=attempt,
            to=recipient.email,
            sender=content.email.from_address,
            subject=render(content.email.subject, variables),
            body=render(content.email.body, variables),
        )
    if channel is Channel.VIBER:
        # Viber addresses a bot's users by their Viber user id, never by phone number.
        if content.viber is None:
            return Skip(reason="no_content", description="no viber content")
        if not recipient.viber_user_id:
            return Skip(reason="no_viber_identity", description="recipient has no Viber user id")
        return Message(
            channel=channel,
            attempt=attempt,
            to=recipient.viber_user_id,
            sender=content.viber.sender,
            body=render(content.viber.text, variables),
        )
    if not recipient.phone:
        return Skip(reason="invalid_phone", description="recipient has no phone number")
    try:
        to = normalize_e164(recipient.phone)
    except InvalidPhone as exc:
        return Skip(reason="invalid_phone", description=str(exc))
    if channel is Channel.SMS and content.sms is not None:
        body = render(content.sms.body, variables)
        # After rendering: a contact's own fields (José, O’Brien) are transliterated too.
        return Message(
            channel=channel,
            attempt=attempt,
            to=to,
            sender=content.sms.sender or default_sms_sender,
            body=transliterate(body) if content.sms.transliterate else body,
        )
    if channel is Channel.RCS and content.rcs is not None:
        return Message(
            channel=channel,
            attempt=attempt,
            to=to,
            sender=content.rcs.agent_id,
            body=render(content.rcs.text, variables),
        )
    if channel is Channel.WHATSAPP and content.whatsapp is not None:
        template = content.whatsapp
        return Message(
            channel=channel,
            attempt=attempt,
            to=to,
            sender="",
            body=template.template_name,
            template_name=template.template_name,
            template_language=template.language,
            template_components=tuple(_render_deep(c, variables) for c in template.components),
        )
    return Skip(reason="no_content", description=f"no {channel.value} content")


def _render_deep(value: Any, variables: Mapping[str, object]) -> Any:
    """WhatsApp components with every string's placeholders filled in."""
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, Mapping):
        return {k: _render_deep(v, variables) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render_deep(v, variables) for v in value]
    return value
