"""The providers a worker sends through, one per channel, from the deployment's settings.

An empty base URL (or SMTP host) means the local provider simulator, which speaks the same
wire formats; that is how `run all`, the demo and the tests run without real accounts.
"""

from __future__ import annotations

import aiohttp

from herald.domain.channels import Channel
from herald.providers.base import Provider
from herald.providers.email import SmtpEmailProvider
from herald.providers.rbm import RbmProvider
from herald.providers.twilio import TwilioProvider
from herald.providers.viber import ViberProvider
from herald.providers.whatsapp import WhatsAppProvider
from herald.settings import Settings


def build(settings: Settings, session: aiohttp.ClientSession) -> dict[Channel, Provider]:
    timeout_s = settings.send_timeout_s
    simulator = settings.simulator_url
    return {
        Channel.SMS: TwilioProvider(
            session=session,
            base_url=settings.twilio_url,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            timeout_s=timeout_s,
        ),
        Channel.WHATSAPP: WhatsAppProvider(
            session=session,
            base_url=settings.whatsapp_base_url or simulator,
            phone_number_id=settings.whatsapp_phone_number_id,
            access_token=settings.whatsapp_access_token,
            timeout_s=timeout_s,
        ),
        Channel.RCS: RbmProvider(
            session=session,
            base_url=settings.rbm_base_url or simulator,
            agent_id=settings.rbm_agent_id,
            token=settings.rbm_token,
            timeout_s=timeout_s,
        ),
        Channel.VIBER: ViberProvider(
            session=session,
            base_url=settings.viber_base_url or simulator,
            auth_token=settings.viber_auth_token,
            sender_name=settings.viber_sender_name,
            timeout_s=timeout_s,
        ),
        Channel.EMAIL: SmtpEmailProvider(
            host=settings.smtp_host or "127.0.0.1",
            port=settings.smtp_port if settings.smtp_host else settings.simulator_smtp_port,
            username=settings.smtp_username or None,
            password=settings.smtp_password if settings.smtp_username else None,
            use_tls=settings.smtp_tls,
            timeout_s=timeout_s,
        ),
    }
