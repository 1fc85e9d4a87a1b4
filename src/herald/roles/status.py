"""The status role: status events folded into recipient states and counters; fallback work
published as the fold decides it; parked callbacks retried."""

from __future__ import annotations

from functools import partial

import anyio

from herald import constants, metrics
from herald.roles import ConsumerPart, Context, Parts
from herald.status import StatusFolder
from herald.sweeper import Sweeper, every


async def setup(ctx: Context) -> Parts:
    settings = ctx.settings
    metrics.initialise_status()
    dead_letter = ctx.need_dead_letter()
    folder = StatusFolder(pool=ctx.need_pool(), dead_letter=dead_letter)
    sweeper = Sweeper(
        settings=settings,
        pool=ctx.need_pool(),
        producer=ctx.need_producer(),
        dead_letter=dead_letter,
    )

    async def publish_fallbacks() -> int:
        # A fresh wake event first, so a fold that lands meanwhile wakes the next round.
        folder.fallback_wake = anyio.Event()
        return await sweeper.publish_fallbacks()

    return Parts(
        consumers=[
            ConsumerPart(
                topic=constants.TOPIC_STATUS_EVENTS,
                group=constants.GROUP_STATUS,
                handler=folder.handle,
                max_records=settings.status_batch_max,
                # A fold is one transaction of about a dozen statements whatever its size:
                # fuller folds cost PostgreSQL, the broker and this role less per event.
                min_records=settings.status_batch_max // 4,
                linger_s=settings.status_linger_ms / 1000,
            )
        ],
        loops=[
            partial(
                every,
                settings.sweep_interval_s,
                publish_fallbacks,
                ctx.stop,
                lambda: folder.fallback_wake,
            ),
            partial(
                every,
                settings.sweep_interval_s * 2,
                partial(sweeper.retry_parked, folder),
                ctx.stop,
            ),
        ],
    )
