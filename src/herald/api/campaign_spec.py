"""What a campaign request may say, and the pure step from a draft to campaign.confirmed v1.

Orbit's shape comes first (`channel`, `body`, `template_id`, `segment_id`, `list_id`,
`scheduled_at`); the other seeds add `sending_mode` fallback chains with per-channel
`content`, audiences by lists, contacts, tags or raw destinations, variable mappings,
per-recipient variables and batch pacing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from herald.api.errors import ApiError, ErrorCode, model_error
from herald.api.fields import STRICT, LongText, Phone, ResourceName, Tag
from herald.api.templates import send_components
from herald.constants import EVENT_CAMPAIGN_CONFIRMED
from herald.domain.channels import Channel, SendingMode, chain
from herald.domain.events import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_FALLBACK_WINDOW_S,
    MAX_BATCH_DELAY_MS,
    MAX_BATCH_SIZE,
    MAX_FALLBACK_WINDOW_S,
    MAX_VARIANTS,
    MIN_VARIANTS,
    SPLIT_TOTAL,
    EventError,
    parse_campaign_confirmed,
)
from herald.domain.fallback import PolicyError, parse_steps, steps_to_wire
from herald.domain.senders import sender_problem
from herald.domain.sms import num_segments, transliterate

MAX_DESTINATIONS = 100_000  # seed 003: one campaign reaches up to 100,000 numbers directly
MAX_AUDIENCE_IDS = 10_000
# Channels that can send to a raw E.164 destination (Viber needs a user id, email an address).
PHONE_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.RCS})
# Each content section's sender field, as the request names it.
SENDER_FIELDS = {
    Channel.SMS: "sender",
    Channel.RCS: "agent_id",
    Channel.VIBER: "sender",
    Channel.EMAIL: "from",
}
Text = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
Short = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Ref = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class SmsIn(BaseModel):
    model_config = STRICT
    sender: Short | None = None
    body: Text | None = None
    template_id: Ref | None = None
    # None, not False, when unset: an A/B variant's content then keeps the campaign's choice.
    transliterate: bool | None = Field(
        None,
        description="Send GSM-7 look-alikes for smart quotes, dashes, accented letters "
        "(fewer segments); default false",
    )


class WhatsAppIn(BaseModel):
    model_config = STRICT
    template_id: Ref | None = Field(None, description="An approved WhatsApp template")
    template_name: Short | None = None
    language: Short | None = None
    components: list[dict[str, Any]] | None = None


class RcsIn(BaseModel):
    model_config = STRICT
    agent_id: Short | None = None
    text: Text | None = None
    template_id: Ref | None = None


class ViberIn(BaseModel):
    model_config = STRICT
    sender: Short | None = None
    text: Text | None = None
    template_id: Ref | None = None


class EmailIn(BaseModel):
    model_config = ConfigDict(**STRICT, populate_by_name=True)
    from_address: Short | None = Field(None, alias="from")
    subject: Short | None = None
    body: Text | None = None
    template_id: Ref | None = None


class ContentIn(BaseModel):
    model_config = STRICT
    sms: SmsIn | None = None
    whatsapp: WhatsAppIn | None = None
    rcs: RcsIn | None = None
    viber: ViberIn | None = None
    email: EmailIn | None = None


class VariantIn(BaseModel):
    """One arm of an A/B test. Its body, template, sender, subject and content replace the
    campaign's for the recipients it gets; what it leaves out comes from the campaign."""

    model_config = STRICT
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    weight: Annotated[int, Field(ge=1, le=SPLIT_TOTAL - 1)] = Field(
        description="Percent of the audience; the variants' weights add up to 100"
    )
    template_id: Ref | None = None
    body: Text | None = None
    sender: Short | None = None
    subject: Short | None = None
    content: ContentIn | None = None


class AbTestIn(BaseModel):
    """Variants with their own content and a split of the audience in percent. Expansion
    assigns each recipient one variant, interleaved, so every 100 recipients split exactly."""

    model_config = STRICT
    variants: Annotated[list[VariantIn], Field(min_length=MIN_VARIANTS, max_length=MAX_VARIANTS)]

    @model_validator(mode="after")
    def _split(self) -> AbTestIn:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ApiError(
                ErrorCode.VALIDATION_FAILED,
                "variant names must differ",
                field="ab_test.variants.name",
            )
        if sum(v.weight for v in self.variants) != SPLIT_TOTAL:
            raise ApiError(
                ErrorCode.VALIDATION_FAILED,
                f"variant weights must add up to {SPLIT_TOTAL}",
                field="ab_test.variants.weight",
            )
        return self


class FallbackStepIn(BaseModel):
    """One channel's step of the chain: how long it waits, and the status that counts as its
    success, before the next channel is tried."""

    model_config = STRICT
    channel: Channel
    after_s: Annotated[int, Field(ge=1, le=MAX_FALLBACK_WINDOW_S)] | None = Field(
        None, description="Seconds to wait for success; the campaign's fallback_window_s if unset"
    )
    success: str = Field(
        "delivered",
        description="accepted or sent (the provider took it: the chain stops there) or "
        "delivered; read is refused",
    )


class CampaignIn(BaseModel):
    """A campaign draft. Everything but `name` and a channel may come later, by update."""

    model_config = STRICT
    name: ResourceName
    description: LongText = ""
    channel: Channel | None = Field(None, description="Single channel: sms, whatsapp, ...")
    sending_mode: SendingMode | None = Field(
        None, description="A channel or fallback chain, e.g. WHATSAPP_RCS_SMS"
    )
    template_id: Ref | None = Field(None, description="Template for the first channel")
    body: Text | None = Field(None, description="Inline body for the first channel")
    sender: Short | None = Field(None, description="Sender for the first channel")
    subject: Short | None = Field(None, description="Subject, for email")
    template_name: Short | None = Field(
        None, description="Seed 004: the WhatsApp template's name, when no template_id names it"
    )
    template_lang: Short | None = Field(
        None, description="Seed 004: the WhatsApp template's language (e.g. en_US)"
    )
    content: ContentIn | None = Field(None, description="Content per channel of the chain")
    segment_id: Ref | None = None
    list_id: Ref | None = None
    list_ids: Annotated[list[Ref], Field(max_length=MAX_AUDIENCE_IDS)] = Field(default_factory=list)
    contact_ids: Annotated[list[Ref], Field(max_length=MAX_AUDIENCE_IDS)] = Field(
        default_factory=list
    )
    tags: Annotated[list[Tag], Field(max_length=100)] = Field(
        default_factory=list, description="Contacts with any of these tags"
    )
    destinations: Annotated[list[Phone], Field(max_length=MAX_DESTINATIONS)] = Field(
        default_factory=list, description="Raw E.164 numbers"
    )
    failed_of: Ref | None = Field(
        None, description="A sent campaign whose failed recipients are (part of) the audience"
    )
    variable_mappings: dict[str, Short] = Field(
        default_factory=dict, description='Template variable to contact field, e.g. {"1": ...}'
    )
    recipient_variables: dict[str, dict[str, str | int | float]] = Field(
        default_factory=dict, description="Per contact id or phone: variable values"
    )
    scheduled_at: datetime | None = None
    batch_size: Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)] = DEFAULT_BATCH_SIZE
    batch_delay_ms: Annotated[int, Field(ge=0, le=MAX_BATCH_DELAY_MS)] = 0
    fallback_window_s: Annotated[int, Field(ge=1, le=MAX_FALLBACK_WINDOW_S)] = (
        DEFAULT_FALLBACK_WINDOW_S
    )
    fallback: Annotated[list[FallbackStepIn], Field(max_length=len(Channel))] | None = Field(
        None, description="Per channel of the chain: after_s and success (docs/api.md)"
    )
    ready_to_send: bool = False
    ab_test: AbTestIn | None = Field(None, description="A/B test: variants and their split")
    provider_accounts: dict[Channel, Ref] = Field(
        default_factory=dict,
        description="Per channel of the chain: the id of one of the account's provider "
        "accounts to send through (seed 002's whatsappPhoneNumberId, Vobiz's channel_id)",
    )

    @model_validator(mode="after")
    def _provider_channels(self) -> CampaignIn:
        if self.sending_mode is None and self.channel is None:
            return self
        for channel in self.provider_accounts:
            if channel not in chain(self.mode):
                raise ApiError(
                    ErrorCode.VALIDATION_FAILED,
                    f"{channel.value} is not a channel of {self.mode.value}",
                    field=f"provider_accounts.{channel.value}",
                )
        return self

    @field_validator("scheduled_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone offset (e.g. Z)")
        return value

    @model_validator(mode="after")
    def _mode(self) -> CampaignIn:
        if self.sending_mode is None and self.channel is None:
            raise ApiError(
                ErrorCode.VALIDATION_FAILED, "name a channel or sending_mode", field="channel"
            )
        both = self.sending_mode is not None and self.channel is not None
        if both and chain(self.mode)[0] is not self.channel:
            raise ApiError(
                ErrorCode.VALIDATION_FAILED,
                "channel must be the first channel of sending_mode",
                field="channel",
            )
        return self

    @model_validator(mode="after")
    def _whatsapp_names(self) -> CampaignIn:
        """template_name and template_lang are WhatsApp's content: a chain without it is 422."""
        if self.sending_mode is None and self.channel is None:
            return self
        for name in ("template_name", "template_lang"):
            if getattr(self, name) is not None and Channel.WHATSAPP not in chain(self.mode):
                raise ApiError(
                    ErrorCode.VALIDATION_FAILED,
                    f"{name} names a WhatsApp template; {self.mode.value} sends no WhatsApp",
                    field=name,
                )
        return self

    @model_validator(mode="after")
    def _senders(self) -> CampaignIn:
        """Senders given are checked now (1604 sender_invalid); a template's at send."""
        if self.sending_mode is None and self.channel is None:
            return self
        holders: list[tuple[str, VariantIn | CampaignIn]] = [("", self)]
        if self.ab_test is not None:
            holders += [(f"ab_test.variants.{i}.", v) for i, v in enumerate(self.ab_test.variants)]
        for prefix, holder in holders:
            if holder.sender:
                check_sender(chain(self.mode)[0], holder.sender, f"{prefix}sender")
            if holder.content is None:
                continue
            for channel, name in SENDER_FIELDS.items():
                section = getattr(holder.content, channel.value)
                given = None if section is None else section.model_dump(by_alias=True)[name]
                if given:
                    check_sender(channel, given, f"{prefix}content.{channel.value}.{name}")
        return self

    @model_validator(mode="after")
    def _fallback(self) -> CampaignIn:
        try:
            parse_steps(self.fallback_wire(), chain(self.mode), max_after_s=MAX_FALLBACK_WINDOW_S)
        except PolicyError as exc:
            raise ApiError(ErrorCode.VALIDATION_FAILED, exc.message, field=exc.field) from None
        return self

    def fallback_wire(self) -> list[dict[str, Any]] | None:
        """The `fallback` steps as the event carries them (None without any)."""
        if self.fallback is None:
            return None
        return [s.model_dump(exclude_none=True) for s in self.fallback]

    @property
    def mode(self) -> SendingMode:
        if self.sending_mode is not None:
            return self.sending_mode
        assert self.channel is not None
        return SendingMode(self.channel.value.upper())

    def template_ids(self) -> set[str]:
        found: set[str] = set()
        for spec in (self, *self.variant_specs()):
            if spec.template_id:
                found.add(spec.template_id)
            if spec.content is not None:
                for channel in Channel:
                    section = getattr(spec.content, channel.value)
                    if section is not None and section.template_id:
                        found.add(section.template_id)
        return found

    def variant_specs(self) -> list[CampaignIn]:
        """The campaign as each A/B variant sends it (none without a test)."""
        if self.ab_test is None:
            return []
        found = []
        for variant in self.ab_test.variants:
            content: dict[str, Any] = (
                self.content.model_dump(by_alias=True, exclude_none=True) if self.content else {}
            )
            if variant.content is not None:
                own = variant.content.model_dump(by_alias=True, exclude_none=True)
                for channel, section in own.items():
                    content[channel] = {**content.get(channel, {}), **section}
            update: dict[str, Any] = {
                k: getattr(variant, k)
                for k in ("template_id", "body", "sender", "subject")
                if getattr(variant, k) is not None
            }
            update["content"] = ContentIn.model_validate(content) if content else None
            update["ab_test"] = None
            found.append(self.model_copy(update=update))
        return found

    def audience_list_ids(self) -> list[str]:
        return list(dict.fromkeys(([self.list_id] if self.list_id else []) + self.list_ids))


def parse_spec(raw: Mapping[str, Any]) -> CampaignIn:
    """A stored or merged draft as a CampaignIn; ApiError names the first bad field."""
    try:
        return CampaignIn.model_validate(raw)
    except ValidationError as exc:
        code, message, field = model_error(list(exc.errors()))
        raise ApiError(code, message, field=field) from None


def check_sender(channel: Channel, sender: str, field: str) -> str:
    problem = sender_problem(channel, sender)
    if problem is not None:
        raise ApiError(ErrorCode.SENDER_INVALID, problem, field=field)
    return sender


def check_schedule(spec: CampaignIn, now: datetime) -> None:
    if spec.scheduled_at is not None and spec.scheduled_at <= now:
        raise ApiError(ErrorCode.SCHEDULE_IN_PAST, field="scheduled_at")


def _need(value: str | None, code: ErrorCode, field: str, what: str) -> str:
    if not value:
        raise ApiError(code, f"{what} is required for this sending mode", field=field)
    return value


def _template(
    spec: CampaignIn,
    channel: Channel,
    template_id: str | None,
    templates: Mapping[str, Mapping[str, Any]],
    field: str,
) -> Mapping[str, Any]:
    if template_id is None:
        return {}
    found = templates.get(template_id)
    if found is None:
        raise ApiError(ErrorCode.TEMPLATE_INVALID, "no such template", field=field)
    if found["channel"] != channel.value:
        raise ApiError(ErrorCode.TEMPLATE_CHANNEL_MISMATCH, field=field)
    if channel is Channel.WHATSAPP and found["approval_status"] != "approved":
        raise ApiError(ErrorCode.TEMPLATE_NOT_APPROVED, field=field)
    return found


def channel_content(
    spec: CampaignIn, channel: Channel, templates: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The event's content section for one channel of the chain."""
    primary = chain(spec.mode)[0] is channel
    section = getattr(spec.content, channel.value) if spec.content else None
    given: dict[str, Any] = section.model_dump(by_alias=True) if section is not None else {}
    path = f"content.{channel.value}"
    template_field = f"{path}.template_id" if given.get("template_id") else "template_id"
    template_id = given.get("template_id") or (spec.template_id if primary else None)
    t = _template(spec, channel, template_id, templates, template_field)
    body = spec.body if primary else None
    sender = spec.sender if primary else None
    name = SENDER_FIELDS.get(channel)
    if name is not None:
        chosen = given.get(name) or sender or t.get("sender")
        if chosen:
            where = f"{path}.{name}" if given.get(name) else "sender" if sender else template_field
            check_sender(channel, chosen, where)
    if channel is Channel.SMS:
        sms: dict[str, Any] = {
            "body": _need(
                given.get("body") or body or t.get("body"),
                ErrorCode.CONTENT_REQUIRED,
                f"{path}.body",
                "an SMS body",
            )
        }
        sms_sender = given.get("sender") or sender or t.get("sender")
        if sms_sender:
            sms["sender"] = sms_sender
        if given.get("transliterate"):
            sms["transliterate"] = True
        return sms
    if channel is Channel.WHATSAPP:
        where = f"{path}.template_id"
        components = given.get("components")
        if components is None:
            components = send_components(t["components"]) if t.get("components") else []
        return {
            "template_name": _need(
                given.get("template_name") or t.get("name") or spec.template_name,
                ErrorCode.CONTENT_REQUIRED,
                where,
                "a WhatsApp template",
            ),
            "language": _need(
                given.get("language") or t.get("language") or spec.template_lang,
                ErrorCode.CONTENT_REQUIRED,
                f"{path}.language",
                "a language",
            ),
            "components": components,
        }
    if channel is Channel.RCS:
        return {
            "agent_id": _need(
                given.get("agent_id") or sender or t.get("sender"),
                ErrorCode.SENDER_REQUIRED,
                f"{path}.agent_id",
                "an RCS agent",
            ),
            "text": _need(
                given.get("text") or body or t.get("body"),
                ErrorCode.CONTENT_REQUIRED,
                f"{path}.text",
                "RCS text",
            ),
        }
    if channel is Channel.VIBER:
        return {
            "sender": _need(
                given.get("sender") or sender or t.get("sender"),
                ErrorCode.SENDER_REQUIRED,
                f"{path}.sender",
                "a Viber sender",
            ),
            "text": _need(
                given.get("text") or body or t.get("body"),
                ErrorCode.CONTENT_REQUIRED,
                f"{path}.text",
                "Viber text",
            ),
        }
    subject = spec.subject if primary else None
    return {
        "from": _need(
            given.get("from") or sender or t.get("sender"),
            ErrorCode.SENDER_REQUIRED,
            f"{path}.from",
            "a from address",
        ),
        "subject": _need(
            given.get("subject") or subject or t.get("subject"),
            ErrorCode.CONTENT_REQUIRED,
            f"{path}.subject",
            "a subject",
        ),
        "body": _need(
            given.get("body") or body or t.get("body"),
            ErrorCode.CONTENT_REQUIRED,
            f"{path}.body",
            "an email body",
        ),
    }


def audience(spec: CampaignIn) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if spec.contact_ids:
        found["contact_ids"] = list(dict.fromkeys(spec.contact_ids))
    if spec.audience_list_ids():
        found["list_ids"] = spec.audience_list_ids()
    if spec.segment_id:
        found["segment_id"] = spec.segment_id
    if spec.tags:
        found["tags"] = list(dict.fromkeys(spec.tags))
    if spec.destinations:
        found["destinations"] = list(dict.fromkeys(spec.destinations))
    if spec.failed_of:
        found["failed_of"] = spec.failed_of
    if not found:
        raise ApiError(ErrorCode.AUDIENCE_REQUIRED, field="segment_id")
    channels = chain(spec.mode)
    if spec.destinations and not PHONE_CHANNELS.intersection(channels):
        raise ApiError(
            ErrorCode.AUDIENCE_CHANNEL_MISMATCH,
            f"raw destinations are phone numbers: {', '.join(c.value for c in channels)} "
            "cannot reach them (SMS, WhatsApp and RCS can)",
            field="destinations",
        )
    return found


def build_event(
    *,
    spec: CampaignIn,
    campaign_id: str,
    account_id: str,
    templates: Mapping[str, Mapping[str, Any]],
    now: datetime,
    event_id: str | None = None,
) -> dict[str, Any]:
    """campaign.confirmed v1 for a draft, checked by the same parser the scheduler uses."""
    check_schedule(spec, now)
    mode = spec.mode
    variants = []
    for i, (variant, variant_spec) in enumerate(
        zip(spec.ab_test.variants if spec.ab_test else [], spec.variant_specs(), strict=True)
    ):
        try:
            own = {c.value: channel_content(variant_spec, c, templates) for c in chain(mode)}
        except ApiError as exc:
            where = f"ab_test.variants.{i}.{exc.field}"
            raise ApiError(exc.code, exc.message, field=where) from None
        variants.append({"name": variant.name, "weight": variant.weight, "content": own})
    # With a test every recipient gets a variant's content; the campaign's is the first's.
    content = (
        variants[0]["content"]
        if variants
        else {c.value: channel_content(spec, c, templates) for c in chain(mode)}
    )
    event: dict[str, Any] = {
        "type": EVENT_CAMPAIGN_CONFIRMED,
        "version": 1,
        "event_id": event_id or str(uuid.uuid4()),
        "occurred_at": now.astimezone(UTC).isoformat(),
        "campaign_id": campaign_id,
        "account_id": account_id,
        "name": spec.name,
        "sending_mode": mode.value,
        "content": content,
        "audience": audience(spec),
        "variable_mappings": dict(spec.variable_mappings),
        "recipient_variables": {
            k: {n: str(v) for n, v in vs.items()} for k, vs in spec.recipient_variables.items()
        },
        "batch_size": spec.batch_size,
        "batch_delay_ms": spec.batch_delay_ms,
        "fallback_window_s": spec.fallback_window_s,
    }
    if spec.provider_accounts:
        event["provider_accounts"] = {c.value: i for c, i in spec.provider_accounts.items()}
    if spec.fallback:
        event["fallback"] = steps_to_wire(
            parse_steps(spec.fallback_wire(), chain(mode), max_after_s=MAX_FALLBACK_WINDOW_S)
        )
    if variants:
        event["variants"] = variants
    if spec.scheduled_at is not None:
        event["scheduled_at"] = spec.scheduled_at.astimezone(UTC).isoformat()
    try:
        parse_campaign_confirmed(event)
    except EventError as exc:
        raise ApiError(ErrorCode.VALIDATION_FAILED, exc.message, field=exc.field) from None
    return event


def message_units(
    spec: CampaignIn, templates: Mapping[str, Mapping[str, Any]], channel: Channel | None = None
) -> int:
    """Billable units of one message on `channel` (default: the first of the chain): SMS
    segments (of the body as it is sent, transliterated when asked), otherwise 1. With an A/B
    test, the largest variant's: the estimate is an upper bound."""
    first = channel or chain(spec.mode)[0]
    if first is not Channel.SMS:
        return 1
    if spec.ab_test is not None:
        return max(message_units(v, templates, first) for v in spec.variant_specs())
    try:
        sms = channel_content(spec, first, templates)
    except ApiError:
        return 1
    body = transliterate(sms["body"]) if sms.get("transliterate") else sms["body"]
    return num_segments(body)


def estimate_cost(recipients: int, units: int, unit_price: Decimal) -> Decimal:
    return (Decimal(recipients) * units * unit_price).quantize(
        Decimal("0.000001"), rounding=ROUND_HALF_UP
    )
