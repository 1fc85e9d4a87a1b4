"""A local HTTP server that stands where a vendor's API would, for the contract tests that
record what herald's adapter sends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@asynccontextmanager
async def serving(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """Every request to the yielded base URL goes to `handle`."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@dataclass(kw_only=True)
class Recorder:
    """Records each request and answers with `status`, `body` (bytes as they are, anything
    else as JSON) and `headers`; a test changes them to stage the vendor's answer."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[web.Request, bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request, await request.read()))
        if isinstance(self.body, bytes):
            return web.Response(status=self.status, body=self.body, headers=self.headers)
        return web.json_response(self.body, status=self.status, headers=self.headers)
