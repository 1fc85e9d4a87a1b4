"""What a deployment has configured, decided from the settings before anything starts.

Development (`herald demo`, `herald run all`, tests) sends every channel to the simulator with
its development credentials. Production has no defaults to fall back on: a channel none of
whose variables are set is disabled (the chain skips it, its webhook route answers 404, and
the role says so at start); a channel with some of them set is meant to be on, so a role that
needs one still missing refuses to start and names it. A pure function of the settings.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from herald.domain.channels import Channel
from herald.settings import Secret, Settings, env_name


class Use(StrEnum):
    """What a role does with a channel: send through it, or verify its callbacks."""

    SEND = "send"
    VERIFY = "verify"


@dataclass(frozen=True, kw_only=True)
class ChannelVariables:
    # Any of these set means the operator meant the channel to be on.
    credentials: tuple[str, ...]
    send: tuple[str, ...]
    verify: tuple[str, ...]
    # A name counts as set when it or any of its alternatives is (its "any of").
    alternatives: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def is_set(self, settings: Settings, name: str) -> bool:
        return any(_is_set(settings, n) for n in (name, *self.alternatives.get(name, ())))


# Settings field names per channel.
VARIABLES: dict[Channel, ChannelVariables] = {
    Channel.SMS: ChannelVariables(
        credentials=("twilio_account_sid", "twilio_auth_token"),
        # Twilio posts status callbacks to the URL each send names, and signs that URL.
        send=("twilio_base_url", "twilio_account_sid", "twilio_auth_token", "public_ingress_url"),
        verify=("twilio_auth_token", "public_ingress_url"),
    ),
    Channel.WHATSAPP: ChannelVariables(
        credentials=(
            "whatsapp_phone_number_id",
            "whatsapp_access_token",
            "whatsapp_app_secret",
            "whatsapp_verify_token",
        ),
        send=("whatsapp_base_url", "whatsapp_phone_number_id", "whatsapp_access_token"),
        verify=("whatsapp_app_secret", "whatsapp_verify_token"),
    ),
    Channel.RCS: ChannelVariables(
        credentials=("rbm_agent_id", "rbm_token", "rbm_client_token"),
        # Production mints access tokens from the service-account key; a fixed token also works.
        send=("rbm_base_url", "rbm_agent_id", "rbm_token"),
        verify=("rbm_client_token",),
        alternatives={"rbm_token": ("rbm_service_account_json",)},
    ),
    Channel.VIBER: ChannelVariables(
        credentials=("viber_auth_token",),
        send=("viber_base_url", "viber_auth_token"),
        verify=("viber_auth_token",),
    ),
    Channel.EMAIL: ChannelVariables(
        credentials=("smtp_host", "email_webhook_public_key"),
        send=("smtp_host",),
        verify=("email_webhook_public_key",),
        # HERALD_EMAIL_TRANSPORT=sendgrid sends through the v3 API with its key instead.
        alternatives={"smtp_host": ("sendgrid_api_key",)},
    ),
}


@dataclass(frozen=True, kw_only=True)
class Preflight:
    enabled: frozenset[Channel]
    # Channel -> the HERALD_* variables none of which is set.
    disabled: dict[Channel, tuple[str, ...]]
    # HERALD_* variables the roles need and do not have; non-empty means do not start.
    missing: tuple[str, ...]

    def warnings(self) -> list[str]:
        return [
            f"{channel.value} is disabled: none of {', '.join(names)} is set"
            for channel, names in sorted(self.disabled.items())
        ]


def check(
    settings: Settings,
    *,
    uses: Collection[Use] = (),
    database: bool = False,
    kafka: bool = False,
) -> Preflight:
    """What these settings enable, and what roles with these needs lack to start."""
    if settings.is_development:
        return Preflight(enabled=frozenset(Channel), disabled={}, missing=())
    missing: list[str] = []
    if database and not settings.database_url:
        missing.append(env_name("database_url"))
    if kafka and not settings.kafka_bootstrap:
        missing.append(env_name("kafka_bootstrap"))
    enabled: set[Channel] = set()
    disabled: dict[Channel, tuple[str, ...]] = {}
    for channel, names in VARIABLES.items():
        if not any(names.is_set(settings, name) for name in names.credentials):
            disabled[channel] = tuple(env_name(n) for n in names.credentials)
            continue
        enabled.add(channel)
        needed = (names.send if Use.SEND in uses else ()) + (
            names.verify if Use.VERIFY in uses else ()
        )
        for name in needed:
            variable = env_name(name)
            if not names.is_set(settings, name) and variable not in missing:
                missing.append(variable)
    return Preflight(enabled=frozenset(enabled), disabled=disabled, missing=tuple(missing))


def enabled_channels(settings: Settings) -> frozenset[Channel]:
    return check(settings).enabled


def _is_set(settings: Settings, name: str) -> bool:
    value = getattr(settings, name)
    if isinstance(value, Secret):
        return bool(value.value.strip())
    return bool(str(value).strip())
