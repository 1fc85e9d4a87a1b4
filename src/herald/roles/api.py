"""The control-plane API role."""

from __future__ import annotations

from functools import partial

import anyio

from herald.api.app import serve
from herald.roles import Context, Parts


async def setup(ctx: Context) -> Parts:
    settings = ctx.settings

    async def service(ready: anyio.Event) -> None:
        await serve(
            settings=settings,
            pool=ctx.need_pool(),
            stop=ctx.stop,
            host=settings.bind_host,
            port=settings.api_port,
            ready=ready,
        )

    return Parts(services=[partial(service)])
