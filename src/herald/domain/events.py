"""The campaign.confirmed event, version 1: the contract with upstream APIs (docs/events.md).

`parse_campaign_confirmed` turns a decoded JSON object into a frozen CampaignConfirmed or
raises EventError naming the field; the scheduler dead-letters the event with that reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from herald.constants import CAMPAIGN_CONFIRMED_VERSIONS, EVENT_CAMPAIGN_CONFIRMED
from herald.domain.channels import Channel, SendingMode, chain
from herald.domain.fallback import FallbackStep, PolicyError, parse_steps

DEFAULT_BATCH_SIZE = 100_000
MAX_BATCH_SIZE = 100_000
MAX_BATCH_DELAY_MS = 3_600_000
DEFAULT_FALLBACK_WINDOW_S = 900
MAX_FALLBACK_WINDOW_S = 7 * 24 * 3600
MAX_ID_LENGTH = 128
MIN_VARIANTS = 2
MAX_VARIANTS = 5
SPLIT_TOTAL = 100  # variant weights are percentages of the audience


class EventError(ValueError):
    """Why an event cannot be used; `field` is a dotted path into the event."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, kw_only=True)
class SmsContent:
    sender: str | None
    body: str
    # Send look-alike GSM-7 characters for smart quotes, dashes, accents (domain/sms.py).
    transliterate: bool = False


@dataclass(frozen=True, kw_only=True)
class WhatsAppContent:
    template_name: str
    language: str
    components: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True)
class RcsContent:
    agent_id: str
    text: str


@dataclass(frozen=True, kw_only=True)
class ViberContent:
    sender: str
    text: str


@dataclass(frozen=True, kw_only=True)
class EmailContent:
    from_address: str
    subject: str
    body: str


@dataclass(frozen=True, kw_only=True)
class Content:
    sms: SmsContent | None = None
    whatsapp: WhatsAppContent | None = None
    rcs: RcsContent | None = None
    viber: ViberContent | None = None
    email: EmailContent | None = None

    def for_channel(self, channel: Channel) -> object | None:
        value: object | None = getattr(self, channel.value)
        return value


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One arm of an A/B test: its share of the audience in percent, and its own content."""

    name: str
    weight: int
    content: Content


@dataclass(frozen=True, kw_only=True)
class Audience:
    contact_ids: tuple[str, ...] = ()
    list_ids: tuple[str, ...] = ()
    segment_id: str | None = None
    tags: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    # Another campaign of the same account: its recipients that ended failed (retry-failed).
    failed_of: str | None = None

    @property
    def is_empty(self) -> bool:
        return not (
            self.contact_ids
            or self.list_ids
            or self.segment_id
            or self.tags
            or self.destinations
            or self.failed_of
        )


@dataclass(frozen=True, kw_only=True)
class CampaignConfirmed:
    event_id: str
    campaign_id: str
    account_id: str
    name: str
    sending_mode: SendingMode
    content: Content
    audience: Audience
    variable_mappings: Mapping[str, str] = field(default_factory=dict)
    recipient_variables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    scheduled_at: datetime | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_delay_ms: int = 0
    fallback_window_s: int = DEFAULT_FALLBACK_WINDOW_S
    # Per channel of the chain: its own window and success status (domain/fallback.py).
    fallback: tuple[FallbackStep, ...] = ()
    variants: tuple[Variant, ...] = ()
    # Per channel: the provider account (provider_accounts.id) the campaign chose to send by.
    provider_accounts: Mapping[Channel, str] = field(default_factory=dict)

    @property
    def channels(self) -> tuple[Channel, ...]:
        return chain(self.sending_mode)

    def content_for(self, variant: int | None) -> Content:
        """The content a recipient of this variant gets (the campaign's without a test)."""
        if variant is None or not 0 <= variant < len(self.variants):
            return self.content
        return self.variants[variant].content


def variant_starts(variants: Sequence[Variant]) -> list[int] | None:
    """Where each variant's share of 0..99 begins: the thresholds expansion assigns by
    (PostgreSQL's width_bucket over a recipient's slot). None without a test."""
    if not variants:
        return None
    starts, total = [], 0
    for variant in variants:
        starts.append(total)
        total += variant.weight
    return starts


def variant_slot(recipient_id: int) -> int:
    """A recipient's place in 0..99. 37 is coprime to 100, so every run of 100 consecutive
    ids fills every slot once and each variant gets its share exactly, interleaved."""
    return recipient_id * 37 % SPLIT_TOTAL


def variant_of(recipient_id: int, starts: Sequence[int]) -> int:
    """The variant expansion gives a recipient (expand_recipients does this in SQL)."""
    slot = variant_slot(recipient_id)
    return max(i for i, start in enumerate(starts) if start <= slot)


def variant_sizes(total: int, starts: Sequence[int]) -> list[int]:
    """How many of the recipient ids 1..total expansion gives each variant: every full run of
    100 ids gives each its weight, and the rest are counted one by one (at most 99)."""
    sizes = [0] * len(starts)
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else SPLIT_TOTAL
        sizes[i] = total // SPLIT_TOTAL * (end - start)
    for recipient_id in range(total - total % SPLIT_TOTAL + 1, total + 1):
        sizes[variant_of(recipient_id, starts)] += 1
    return sizes


def parse_campaign_confirmed(raw: object) -> CampaignConfirmed:
    if not isinstance(raw, Mapping):
        raise EventError("$", "event must be a JSON object")
    if raw.get("type") != EVENT_CAMPAIGN_CONFIRMED:
        raise EventError("type", f"must be {EVENT_CAMPAIGN_CONFIRMED!r}")
    version = raw.get("version")
    if type(version) is not int or version not in CAMPAIGN_CONFIRMED_VERSIONS:
        raise EventError("version", f"unknown version {version!r}; this herald reads 1")

    mode_raw = _str(raw, "sending_mode")
    try:
        mode = SendingMode(mode_raw)
    except ValueError:
        allowed = ", ".join(m.value for m in SendingMode)
        raise EventError("sending_mode", f"unknown mode {mode_raw!r}; one of {allowed}") from None

    content = _content(_obj(raw, "content"), chain(mode))
    audience = _audience(_obj(raw, "audience"))
    event = CampaignConfirmed(
        event_id=_id(raw, "event_id"),
        campaign_id=_id(raw, "campaign_id"),
        account_id=_id(raw, "account_id"),
        name=_str(raw, "name", required=False) or "",
        sending_mode=mode,
        content=content,
        audience=audience,
        variable_mappings=_str_map(raw, "variable_mappings"),
        recipient_variables=_nested_str_map(raw, "recipient_variables"),
        scheduled_at=_datetime(raw, "scheduled_at"),
        batch_size=_int(raw, "batch_size", DEFAULT_BATCH_SIZE, 1, MAX_BATCH_SIZE),
        batch_delay_ms=_int(raw, "batch_delay_ms", 0, 0, MAX_BATCH_DELAY_MS),
        fallback_window_s=_int(
            raw, "fallback_window_s", DEFAULT_FALLBACK_WINDOW_S, 1, MAX_FALLBACK_WINDOW_S
        ),
        fallback=_fallback(raw.get("fallback"), chain(mode)),
        variants=_variants(raw.get("variants"), chain(mode)),
        provider_accounts=_provider_accounts(raw, chain(mode)),
    )
    return event


def _provider_accounts(raw: Mapping[str, Any], channels: tuple[Channel, ...]) -> dict[Channel, str]:
    chosen = _str_map(raw, "provider_accounts")
    found: dict[Channel, str] = {}
    for name, ident in chosen.items():
        if name not in {c.value for c in channels}:
            raise EventError(f"provider_accounts.{name}", "must be a channel of the chain")
        if not ident or len(ident) > MAX_ID_LENGTH:
            raise EventError(f"provider_accounts.{name}", "must be a provider account id")
        found[Channel(name)] = ident
    return found


def _fallback(raw: object, channels: tuple[Channel, ...]) -> tuple[FallbackStep, ...]:
    try:
        return parse_steps(raw, channels, max_after_s=MAX_FALLBACK_WINDOW_S)
    except PolicyError as exc:
        raise EventError(exc.field, exc.message) from None


def _variants(raw: object, channels: tuple[Channel, ...]) -> tuple[Variant, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not MIN_VARIANTS <= len(raw) <= MAX_VARIANTS:
        raise EventError("variants", f"must be a list of {MIN_VARIANTS} to {MAX_VARIANTS} objects")
    found: list[Variant] = []
    for i, item in enumerate(raw):
        path = f"variants.{i}"
        if not isinstance(item, Mapping):
            raise EventError(path, "must be an object")
        name = _str(item, "name", path)
        if len(name) > MAX_ID_LENGTH:
            raise EventError(f"{path}.name", f"must be at most {MAX_ID_LENGTH} characters")
        if any(v.name == name for v in found):
            raise EventError(f"{path}.name", f"{name!r} is used by another variant")
        weight = item.get("weight")
        if type(weight) is not int or not 1 <= weight < SPLIT_TOTAL:
            raise EventError(f"{path}.weight", f"must be an integer from 1 to {SPLIT_TOTAL - 1}")
        section = item.get("content")
        if not isinstance(section, Mapping):
            raise EventError(f"{path}.content", "must be an object")
        found.append(
            Variant(name=name, weight=weight, content=_content(section, channels, f"{path}."))
        )
    if sum(v.weight for v in found) != SPLIT_TOTAL:
        raise EventError("variants", f"weights must add up to {SPLIT_TOTAL}")
    return tuple(found)


def _content(raw: Mapping[str, Any], channels: tuple[Channel, ...], prefix: str = "") -> Content:
    parts: dict[str, object] = {}
    for channel in channels:
        path = f"{prefix}content.{channel.value}"
        section = raw.get(channel.value)
        if not isinstance(section, Mapping):
            raise EventError(path, f"required for sending mode with {channel.value}")
        if channel is Channel.SMS:
            transliterate = section.get("transliterate", False)
            if type(transliterate) is not bool:
                raise EventError(f"{path}.transliterate", "must be true or false")
            parts["sms"] = SmsContent(
                sender=_str(section, "sender", path, required=False),
                body=_str(section, "body", path),
                transliterate=transliterate,
            )
        elif channel is Channel.WHATSAPP:
            components = section.get("components", [])
            if not isinstance(components, list) or not all(
                isinstance(c, Mapping) for c in components
            ):
                raise EventError(f"{path}.components", "must be a list of objects")
            parts["whatsapp"] = WhatsAppContent(
                template_name=_str(section, "template_name", path),
                language=_str(section, "language", path),
                components=tuple(components),
            )
        elif channel is Channel.RCS:
            parts["rcs"] = RcsContent(
                agent_id=_str(section, "agent_id", path), text=_str(section, "text", path)
            )
        elif channel is Channel.VIBER:
            parts["viber"] = ViberContent(
                sender=_str(section, "sender", path), text=_str(section, "text", path)
            )
        else:
            parts["email"] = EmailContent(
                from_address=_str(section, "from", path),
                subject=_str(section, "subject", path),
                body=_str(section, "body", path),
            )
    return Content(**parts)  # type: ignore[arg-type]


def _audience(raw: Mapping[str, Any]) -> Audience:
    audience = Audience(
        contact_ids=_str_list(raw, "contact_ids"),
        list_ids=_str_list(raw, "list_ids"),
        segment_id=_str(raw, "segment_id", "audience", required=False),
        tags=_str_list(raw, "tags"),
        destinations=_str_list(raw, "destinations"),
        failed_of=_str(raw, "failed_of", "audience", required=False),
    )
    if audience.is_empty:
        raise EventError(
            "audience", "name contact_ids, list_ids, segment_id, tags, destinations or failed_of"
        )
    return audience


def _path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _str(raw: Mapping[str, Any], key: str, parent: str = "", *, required: bool = True) -> Any:
    value = raw.get(key)
    if value is None:
        if required:
            raise EventError(_path(parent, key), "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise EventError(_path(parent, key), "must be a non-empty string")
    return value


def _id(raw: Mapping[str, Any], key: str) -> str:
    value: str = _str(raw, key)
    if len(value) > MAX_ID_LENGTH or any(ch.isspace() for ch in value):
        raise EventError(key, f"must be at most {MAX_ID_LENGTH} characters without spaces")
    return value


def _obj(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if not isinstance(value, Mapping):
        raise EventError(key, "must be an object")
    return value


def _str_list(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EventError(f"audience.{key}", "must be a list of strings")
    return tuple(value)


def _str_map(raw: Mapping[str, Any], key: str) -> dict[str, str]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise EventError(key, "must map strings to strings")
    return dict(value)


def _nested_str_map(raw: Mapping[str, Any], key: str) -> dict[str, dict[str, str]]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EventError(key, "must be an object of objects")
    result: dict[str, dict[str, str]] = {}
    for recipient, variables in value.items():
        if not isinstance(variables, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) for k, v in variables.items()
        ):
            raise EventError(f"{key}.{recipient}", "must map variable names to values")
        result[str(recipient)] = {k: str(v) for k, v in variables.items()}
    return result


def _int(raw: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key)
    if value is None:
        return default
    if type(value) is not int or not low <= value <= high:
        raise EventError(key, f"must be an integer from {low} to {high}")
    return value


def _datetime(raw: Mapping[str, Any], key: str) -> datetime | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(key, "must be an RFC 3339 date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise EventError(key, "must be an RFC 3339 date-time string") from None
    if parsed.tzinfo is None:
        raise EventError(key, "must carry a time zone offset")
    return parsed
