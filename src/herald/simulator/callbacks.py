"""Posting the simulator's status callbacks: in order per message, retried, optionally batched.

Each accepted message gets a Chain of Steps. A step becomes due after its delay (counted from
the previous step), is encoded into one HTTP request (several chains' steps share one request
when batched, like WhatsApp webhooks), and a bounded worker pool posts it. A failed post is
retried with backoff; a callback dropped after the last attempt does not hold back the later
ones, as with the real providers. A revocation cancels whatever a chain has left.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import aiohttp
from yarl import URL

from herald.simulator.stats import SimulatorStats

log = logging.getLogger(__name__)

_BACKOFF_START_MS: Final = 100
_BACKOFF_CAP_MS: Final = 5000


@dataclass(frozen=True, kw_only=True)
class Step:
    label: str  # the status word, for logs
    payload: Mapping[str, Any]  # what the channel's encoder turns into a request
    delay_s: float  # wait before this step is due, counted from the previous one
    settles: bool = False  # once due, the message can no longer be revoked


@dataclass(kw_only=True)
class Track:
    """Mutable state shared by the steps of one message."""

    cancelled: bool = False
    settled: bool = False


# (url, group, steps due together) -> (body, headers)
Encoder = Callable[[str, str, Sequence[Step]], tuple[bytes, Mapping[str, str]]]


@dataclass(frozen=True, kw_only=True)
class Chain:
    channel: str
    url: str
    steps: tuple[Step, ...]
    encode: Encoder
    track: Track
    group: str = ""  # batched chains share a request only within one group
    batched: bool = False
    index: int = 0

    @property
    def step(self) -> Step:
        return self.steps[self.index]


@dataclass(frozen=True, kw_only=True)
class Post:
    """One callback request; retried with the same body, as providers redeliver."""

    url: str
    body: bytes
    headers: Mapping[str, str]
    chains: tuple[Chain, ...]
    attempt: int = 1


def backoff_ms(attempt: int) -> int:
    """Wait before retry number `attempt` (1-based) of a callback: 100 ms doubling, 5 s cap."""
    doublings = min(max(0, attempt - 1), 16)  # bounded shift; the cap applies long before
    return min(_BACKOFF_CAP_MS, _BACKOFF_START_MS << doublings)


class Dispatcher:
    def __init__(
        self,
        *,
        stats: SimulatorStats,
        concurrency: int,
        max_attempts: int,
        batch_max: int = 1,
        batch_window_s: float = 0.01,
    ) -> None:
        if concurrency < 1 or max_attempts < 1 or batch_max < 1:
            raise ValueError("concurrency, max_attempts and batch_max must be >= 1")
        self._stats = stats
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._batch_max = batch_max
        self._batch_window_s = batch_window_s
        self._session: aiohttp.ClientSession | None = None
        self._queue: asyncio.Queue[Post] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._pending: dict[tuple[str, str], list[Chain]] = collections.defaultdict(list)
        self._flush_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._open_chains = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def open_chains(self) -> int:
        return self._open_chains

    def start(self, timeout_s: float) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._concurrency),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )
        self._workers = [
            asyncio.create_task(self._worker(), name=f"sim-callback-{i}")
            for i in range(self._concurrency)
        ]

    async def close(self) -> None:
        for timer in [*self._timers, *self._flush_timers.values()]:
            timer.cancel()
        self._timers.clear()
        self._flush_timers.clear()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once every chain was posted, dropped or cancelled; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def submit(self, chain: Chain) -> None:
        if not chain.steps:
            return
        self._open_chains += 1
        self._idle.clear()
        self._later(chain.step.delay_s, lambda: self._due(chain))

    # -- scheduling ----------------------------------------------------------------------

    def _later(self, delay_s: float, action: Callable[[], None]) -> None:
        # A timer rather than a sleeping worker: waits cost no pool slot.
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            action()

        handle = loop.call_later(delay_s, fire)
        self._timers.add(handle)

    def _due(self, chain: Chain) -> None:
        if chain.track.cancelled:
            self._finish()
            return
        if chain.step.settles:
            chain.track.settled = True
        if not chain.batched or self._batch_max == 1:
            self._enqueue(chain.url, chain.group, (chain,))
            return
        key = (chain.url, chain.group)
        pending = self._pending[key]
        pending.append(chain)
        if len(pending) >= self._batch_max:
            self._flush(key)
        elif key not in self._flush_timers:
            loop = asyncio.get_running_loop()
            self._flush_timers[key] = loop.call_later(self._batch_window_s, self._flush, key)

    def _flush(self, key: tuple[str, str]) -> None:
        timer = self._flush_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        pending = self._pending.pop(key, [])
        for start in range(0, len(pending), self._batch_max):
            self._enqueue(key[0], key[1], tuple(pending[start : start + self._batch_max]))

    def _enqueue(self, url: str, group: str, chains: tuple[Chain, ...]) -> None:
        body, headers = chains[0].encode(url, group, [c.step for c in chains])
        self._queue.put_nowait(Post(url=url, body=body, headers=headers, chains=chains))

    def _finish(self) -> None:
        self._open_chains -= 1
        if self._open_chains == 0:
            self._idle.set()

    def _advance(self, chain: Chain) -> None:
        if chain.index + 1 < len(chain.steps):
            following = replace(chain, index=chain.index + 1)
            self._later(following.step.delay_s, lambda: self._due(following))
        else:
            self._finish()

    # -- posting -------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            post = await self._queue.get()
            try:
                await self._deliver(post)
            except Exception:
                # A bug must not silently shrink the pool; count the callbacks as lost.
                log.exception("simulator callback worker error")
                for chain in post.chains:
                    self._stats.channel(chain.channel).callbacks_failed += 1
                    self._finish()
            finally:
                self._queue.task_done()

    async def _deliver(self, post: Post) -> None:
        if await self._post(post):
            for chain in post.chains:
                self._stats.channel(chain.channel).callbacks_sent += 1
        elif post.attempt < self._max_attempts:
            retry = replace(post, attempt=post.attempt + 1)
            self._later(backoff_ms(post.attempt) / 1000, lambda: self._queue.put_nowait(retry))
            return
        else:
            for chain in post.chains:
                self._stats.channel(chain.channel).callbacks_failed += 1
            log.warning(
                "dropping %s callback after %d attempts", post.chains[0].step.label, post.attempt
            )
        for chain in post.chains:
            self._advance(chain)

    async def _post(self, post: Post) -> bool:
        assert self._session is not None
        try:
            # encoded=True: post to exactly the URL that was signed, without requoting.
            async with self._session.post(
                URL(post.url, encoded=True), data=post.body, headers=dict(post.headers)
            ) as response:
                await response.read()
                return 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False
