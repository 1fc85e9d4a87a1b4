"""The scheduler role: campaign events in, recipients expanded, batches out; due scheduled
campaigns started; the campaigns gauge refreshed."""

from __future__ import annotations

from functools import partial

from herald import constants, metrics
from herald.roles import ConsumerPart, Context, Parts
from herald.scheduler import Scheduler
from herald.store import campaigns, outbox


async def setup(ctx: Context) -> Parts:
    pool = ctx.need_pool()
    scheduler = Scheduler(
        settings=ctx.settings,
        pool=pool,
        producer=ctx.need_producer(),
        dead_letter=ctx.need_dead_letter(),
    )
    return Parts(
        consumers=[
            ConsumerPart(
                topic=constants.TOPIC_CAMPAIGN_EVENTS,
                group=constants.GROUP_SCHEDULER,
                handler=scheduler.handle,
                max_records=100,
            )
        ],
        loops=[
            partial(scheduler.tick_forever, ctx.stop),
            partial(scheduler.reconcile_forever, ctx.stop),
            partial(scheduler.archive_forever, ctx.stop),
            partial(metrics.poll_campaigns, partial(campaigns.count_by_status, pool), ctx.stop),
            # Here, not in the relay: a relay that is down must still show its backlog.
            partial(metrics.poll_outbox, partial(outbox.backlog, pool), ctx.stop),
            partial(metrics.poll_stalls, partial(campaigns.sending_progress, pool), ctx.stop),
        ],
    )
