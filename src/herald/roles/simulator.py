"""The provider simulator role (development and staging; needs the simulator extra)."""

from __future__ import annotations

from herald import constants
from herald.roles import Context, Parts
from herald.simulator import devkeys
from herald.simulator.app import Simulator
from herald.simulator.behaviour import Behaviour
from herald.simulator.smtp import SmtpSimulator


async def setup(ctx: Context) -> Parts:
    settings = ctx.settings
    behaviour = Behaviour(
        latency_ms=settings.simulator_latency_ms,
        error_5xx_ratio=settings.simulator_error_5xx_ratio,
        rate_429_ratio=settings.simulator_rate_429_ratio,
        timeout_ratio=settings.simulator_timeout_ratio,
        duplicate_callback_ratio=settings.simulator_duplicate_callback_ratio,
        out_of_order_ratio=settings.simulator_out_of_order_ratio,
    )
    simulator = Simulator(
        host=settings.bind_host,
        port=settings.simulator_port,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        whatsapp_token=settings.whatsapp_access_token,
        whatsapp_app_secret=settings.whatsapp_app_secret,
        rbm_token=settings.rbm_token,
        rbm_client_token=settings.rbm_client_token,
        viber_token=settings.viber_auth_token,
        sendgrid_api_key=settings.sendgrid_api_key,
        callback_base_url=settings.ingress_url,
        behaviour=behaviour,
        # Meta batches statuses into one webhook under load; so does the stand-in.
        whatsapp_batch_max=100,
        whatsapp_batch_window_ms=20,
    )
    await simulator.start()
    ctx.stack.push_async_callback(simulator.stop)
    smtp = SmtpSimulator(
        host=settings.bind_host,
        port=settings.simulator_smtp_port,
        events_url=f"{settings.ingress_url}{constants.PATH_CALLBACK_EMAIL}",
        private_key_pem=devkeys.private_key_pem(),
        # Keep each signed batch well inside the ingress's body limit.
        max_events_per_post=500,
    )
    await smtp.start()
    ctx.stack.push_async_callback(smtp.stop)
    return Parts()
