"""A hung dependency: a TcpProxy that can freeze (connections stay open, nothing moves), the
way a broker or database that stops answering looks to a client, which then waits on its
own timeouts instead of seeing a refused or reset connection.

- FreezableProxy: freeze() holds every byte in both directions, on open connections and on
  the ones accepted meanwhile; thaw() delivers them and carries on. Its target may be a
  Unix socket (the embedded PostgreSQL listens on one).
- HungBroker: a ProxiedBroker whose proxy is a FreezableProxy.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import anyio

from tests.faults.proxy import _CHUNK, ProxiedBroker, TcpProxy


class FreezableProxy(TcpProxy):
    def __init__(
        self, target_host: str, target_port: int = 0, *, unix_path: str = "", port: int = 0
    ) -> None:
        super().__init__(target_host, target_port, port=port)
        self.unix_path = unix_path
        self._thawed = anyio.Event()
        self._thawed.set()

    @property
    def frozen(self) -> bool:
        return not self._thawed.is_set()

    def freeze(self) -> None:
        if not self.frozen:
            self._thawed = anyio.Event()

    def thaw(self) -> None:
        self._thawed.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self._transports.add(writer.transport)
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                if self.unix_path:
                    up_reader, upstream = await asyncio.open_unix_connection(self.unix_path)
                else:
                    up_reader, upstream = await asyncio.open_connection(*self.target)
            except OSError:
                return
            self._transports.add(upstream.transport)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._hold, reader, upstream)
                tg.start_soon(self._hold, up_reader, writer)
        finally:
            for side in (writer, upstream):
                if side is not None:
                    self._transports.discard(side.transport)
                    side.transport.abort()
            self._links.discard(task)

    async def _hold(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        # One direction; bytes read while frozen wait for the thaw. Either side ending ends
        # the whole link.
        try:
            while data := await source.read(_CHUNK):
                await self._thawed.wait()
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()


class HungBroker(ProxiedBroker):
    """An embedded broker behind a FreezableProxy: freeze() hangs it, thaw() lets it answer."""

    def __init__(self) -> None:
        super().__init__()
        self.freezable = FreezableProxy("127.0.0.1", self.broker_port)
        self.proxy = self.freezable

    async def __aenter__(self) -> HungBroker:
        await super().__aenter__()
        return self

    def freeze(self) -> None:
        self.freezable.freeze()

    def thaw(self) -> None:
        self.freezable.thaw()


def unix_socket(url: str) -> str:
    """The socket file of a PostgreSQL URL that names a socket directory (?host=/dir)."""
    parts = urlsplit(url)
    directory = parse_qs(parts.query)["host"][0]
    return f"{directory}/.s.PGSQL.{parts.port or 5432}"


def through(url: str, proxy: TcpProxy) -> str:
    """The PostgreSQL URL with the proxy's TCP address instead of the server's socket."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    return f"postgresql://{user}@{proxy.address}{parts.path}"
