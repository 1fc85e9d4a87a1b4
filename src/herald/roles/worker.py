"""The worker role: batches in, sends through the providers under the accounts' limits; it
also expires the fallback windows of what it sent (revoking RBM messages first)."""

from __future__ import annotations

import logging
from functools import partial

import aiohttp

from herald import constants, metrics, preflight
from herald.providers import registry
from herald.providers.directory import Directory
from herald.roles import ConsumerPart, Context, Parts
from herald.sweeper import Sweeper, every
from herald.worker import Worker

log = logging.getLogger(__name__)


async def setup(ctx: Context) -> Parts:
    settings = ctx.settings
    pool, producer = ctx.need_pool(), ctx.need_producer()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=settings.worker_concurrency)
    )
    ctx.stack.push_async_callback(session.close)
    providers = registry.build(settings, session, preflight.enabled_channels(settings))
    for provider in providers.values():
        ctx.stack.push_async_callback(provider.close)
    metrics.initialise_worker((channel.value, p.name) for channel, p in providers.items())
    directory = Directory(settings=settings, pool=pool, session=session, defaults=providers)
    ctx.stack.push_async_callback(directory.close)
    worker = Worker(
        settings=settings,
        pool=pool,
        producer=producer,
        dead_letter=ctx.need_dead_letter(),
        directory=directory,
        stop=ctx.stop,
    )
    sweeper = Sweeper(
        settings=settings, pool=pool, producer=producer, dead_letter=ctx.need_dead_letter()
    )
    return Parts(
        consumers=[
            ConsumerPart(
                topic=constants.TOPIC_DISPATCH_BATCHES,
                group=constants.GROUP_WORKER,
                handler=worker.handle,
                max_records=1,
            )
        ],
        loops=[
            partial(
                every,
                settings.sweep_interval_s,
                partial(sweeper.expire_windows, directory),
                ctx.stop,
            )
        ],
    )
