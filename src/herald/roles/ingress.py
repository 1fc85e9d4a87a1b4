"""The ingress role: provider callbacks verified and published as status events."""

from __future__ import annotations

from aiohttp import web

from herald import metrics, preflight
from herald.ingress import Ingress
from herald.roles import Context, Parts
from herald.settings import Settings


async def setup(ctx: Context) -> Parts:
    settings = ctx.settings
    channels = preflight.enabled_channels(settings)
    ingress = Ingress(
        settings=settings,
        producer=ctx.need_producer(),
        email_public_key=email_public_key(settings),
        channels=channels,
    )
    app = ingress.app()
    metrics.initialise_ingress(app, channels)
    # Callbacks still waiting on Kafka at stop get the flush budget, not aiohttp's 60 s.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_flush_timeout_s)
    await runner.setup()
    await web.TCPSite(runner, settings.bind_host, settings.ingress_port).start()
    ctx.stack.push_async_callback(runner.cleanup)
    return Parts()


def email_public_key(settings: Settings) -> str:
    """The key email event webhooks are checked with. Only development falls back to the
    simulator's key, and only when email goes through the simulator's SMTP server."""
    if settings.email_webhook_public_key or settings.smtp_host or not settings.is_development:
        return settings.email_webhook_public_key
    from herald.simulator import devkeys  # development only: the simulator is an extra

    return devkeys.public_key()
