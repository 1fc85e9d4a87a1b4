"""The providers a worker sends through.

Defaults come from the deployment's settings, one per channel, for the channels the
deployment has enabled (see preflight). In development an empty base URL (or SMTP host) means
the local provider simulator, which speaks the same wire formats; in production it never
does. Rows of provider_accounts add an account's own provider accounts, several per channel
in priority order, each built by `build_one` with its credential taken from
HERALD_SECRET_<secret_ref>.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import aiohttp

from herald.domain.channels import Channel
from herald.errors import HeraldError
from herald.providers.base import Provider
from herald.providers.email import SmtpEmailProvider
from herald.providers.rbm import RbmProvider
from herald.providers.sendgrid import SendGridProvider
from herald.providers.tokens import token_source
from herald.providers.twilio import TwilioProvider
from herald.providers.viber import ViberProvider
from herald.providers.whatsapp import WhatsAppProvider
from herald.settings import Secret, Settings

KINDS: dict[str, Channel] = {
    "twilio": Channel.SMS,
    "whatsapp": Channel.WHATSAPP,
    "rbm": Channel.RCS,
    "viber": Channel.VIBER,
    "smtp": Channel.EMAIL,
    # SendGrid's v3 Mail Send API: a second email transport (HERALD_EMAIL_TRANSPORT=sendgrid,
    # or a provider account row of this kind with its API key as the secret).
    "sendgrid": Channel.EMAIL,
}
EMAIL_TRANSPORTS = ("smtp", "sendgrid")


class ProviderConfigError(HeraldError, ValueError):
    """A provider that cannot be built (unknown kind, missing secret or address): one line at
    start for the deployment's own providers, a logged unusable row for an account's."""


def build(
    settings: Settings,
    session: aiohttp.ClientSession,
    channels: Collection[Channel] = frozenset(Channel),
) -> dict[Channel, Provider]:
    """The deployment's default provider for every enabled channel."""
    return {
        channel: build_one(
            kind, settings=settings, session=session, base_url="", options={}, secret=None
        )
        for channel, kind in default_kinds(settings).items()
        if channel in channels
    }


def default_kinds(settings: Settings) -> dict[Channel, str]:
    """The deployment's provider kind per channel; email's is HERALD_EMAIL_TRANSPORT."""
    transport = settings.email_transport.strip().lower()
    if transport not in EMAIL_TRANSPORTS:
        raise ProviderConfigError(
            f"email_transport: one of {', '.join(EMAIL_TRANSPORTS)}, not {transport!r}"
        )
    kinds: dict[Channel, str] = {
        channel: kind for kind, channel in KINDS.items() if channel is not Channel.EMAIL
    }
    kinds[Channel.EMAIL] = transport
    return kinds


def _url(settings: Settings, *candidates: str) -> str:
    for url in candidates:
        if url:
            return url
    if settings.is_development:
        return settings.simulator_url
    raise ProviderConfigError("no base URL (production never sends to the simulator)")


def build_one(
    kind: str,
    *,
    settings: Settings,
    session: aiohttp.ClientSession,
    base_url: str,
    options: Mapping[str, Any],
    secret: Secret | None,
) -> Provider:
    """One provider of `kind`; options and secret override the deployment's settings."""
    timeout_s = settings.send_timeout_s
    url = base_url or ""

    def opt(name: str, default: str) -> str:
        value = options.get(name)
        return str(value) if value not in (None, "") else default

    if kind == "twilio":
        return TwilioProvider(
            session=session,
            base_url=_url(settings, url, settings.twilio_base_url),
            account_sid=opt("account_sid", settings.twilio_account_sid),
            auth_token=secret or settings.twilio_auth_token,
            timeout_s=timeout_s,
        )
    if kind == "whatsapp":
        return WhatsAppProvider(
            session=session,
            base_url=_url(settings, url, settings.whatsapp_base_url),
            phone_number_id=opt("phone_number_id", settings.whatsapp_phone_number_id),
            access_token=secret or settings.whatsapp_access_token,
            api_version=opt("graph_version", settings.whatsapp_graph_version),
            timeout_s=timeout_s,
        )
    if kind == "rbm":
        # An account's secret is either a service-account key (JSON) or a fixed token.
        key = settings.rbm_service_account_json
        token = settings.rbm_token
        if secret is not None:
            is_key = secret.value.lstrip().startswith("{")
            key, token = (secret, Secret("")) if is_key else (Secret(""), secret)
        try:
            auth = token_source(
                token=token,
                service_account_json=key,
                token_uri=opt("token_uri", settings.rbm_token_uri),
                timeout_s=timeout_s,
            )
        except ValueError as exc:
            raise ProviderConfigError(f"rbm: {exc}") from None
        return RbmProvider(
            session=session,
            base_url=_url(settings, url, settings.rbm_base_url),
            agent_id=opt("agent_id", settings.rbm_agent_id),
            auth=auth,
            timeout_s=timeout_s,
        )
    if kind == "viber":
        return ViberProvider(
            session=session,
            base_url=_url(settings, url, settings.viber_base_url),
            auth_token=secret or settings.viber_auth_token,
            sender_name=opt("sender_name", settings.viber_sender_name),
            timeout_s=timeout_s,
        )
    if kind == "sendgrid":
        api_key = secret or settings.sendgrid_api_key
        if not api_key.value.strip() and not settings.is_development:
            raise ProviderConfigError("sendgrid: no API key (HERALD_SENDGRID_API_KEY)")
        return SendGridProvider(
            session=session,
            base_url=_url(settings, url, settings.sendgrid_base_url),
            api_key=api_key,
            timeout_s=timeout_s,
        )
    if kind == "smtp":
        host = opt("host", settings.smtp_host)
        username = opt("username", settings.smtp_username)
        if not host and not settings.is_development:
            raise ProviderConfigError("no SMTP host (production never sends to the simulator)")
        return SmtpEmailProvider(
            host=host or "127.0.0.1",
            port=int(
                opt("port", str(settings.smtp_port if host else settings.simulator_smtp_port))
            ),
            username=username or None,
            password=(secret or settings.smtp_password) if username else None,
            use_tls=settings.smtp_tls,
            timeout_s=timeout_s,
        )
    raise ProviderConfigError(f"unknown provider kind {kind!r}")
