"""The relay role: outbox rows published to Kafka."""

from __future__ import annotations

from functools import partial

from herald.relay import Relay
from herald.roles import Context, Parts


async def setup(ctx: Context) -> Parts:
    relay = Relay(
        settings=ctx.settings,
        pool=ctx.need_pool(),
        producer=ctx.need_producer(),
        poll_s=ctx.settings.relay_poll_s,
    )
    return Parts(loops=[partial(relay.run, ctx.stop)])
