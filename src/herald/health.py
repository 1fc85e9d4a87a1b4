"""Liveness, readiness and startup of a herald process, served beside /metrics.

- Liveness follows the event loop, not its dependencies: the loop runs a heartbeat every
  second, and the process counts as dead once the last beat is older than `stale_after_s`.
  Kafka or PostgreSQL being unreachable never fails it, so an outage does not become a
  restart storm on top.
- Readiness: the roles have started (listeners bound, consumers joined their groups) and the
  process is not draining. It takes the ingress and API out of their Services on SIGTERM and
  paces rolling updates of every role.
- Startup: Kubernetes' startupProbe reads /readyz with a long allowance, so a slow consumer
  group join is not taken for a dead process; liveness applies only after that.

The probes are answered from the metrics server's thread, so a wedged loop gets a 503 with
the heartbeat's age rather than a timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import anyio
import orjson

from herald import metrics
from herald.settings import Settings

PATH_LIVE: Final = "/livez"
PATH_HEALTH: Final = "/healthz"  # the same answer as /livez, under the name most tools expect
PATH_READY: Final = "/readyz"


@dataclass(frozen=True, kw_only=True)
class HealthConfig:
    heartbeat_interval_s: float = 1.0
    # Ten missed beats: a blocking call or a hot loop, not a garbage collection pause.
    stale_after_s: float = 10.0


@dataclass(frozen=True, kw_only=True)
class Verdict:
    ok: bool
    reason: str
    heartbeat_age_s: float


def liveness(*, heartbeat_age_s: float, stale_after_s: float) -> Verdict:
    ok = heartbeat_age_s <= stale_after_s
    return Verdict(
        ok=ok, reason="ok" if ok else "event_loop_stalled", heartbeat_age_s=heartbeat_age_s
    )


def readiness(*, live: Verdict, started: bool, draining: bool) -> Verdict:
    if not live.ok:
        return live
    if draining:
        return Verdict(ok=False, reason="draining", heartbeat_age_s=live.heartbeat_age_s)
    if not started:
        return Verdict(ok=False, reason="starting", heartbeat_age_s=live.heartbeat_age_s)
    return live


class Heartbeat:
    """A callback the event loop runs every interval; records when it last ran and how late.

    A loop callback rather than a task: nothing to cancel across task groups, and it runs
    exactly when the loop is free to run anything.
    """

    def __init__(
        self, *, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self.last_beat_s = clock()
        self._due_s = self.last_beat_s
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.beat()

    def beat(self) -> None:
        now = self._clock()
        metrics.EVENT_LOOP_LAG.observe(max(0.0, now - self._due_s))
        self.last_beat_s = now
        self._due_s = now + self.interval_s
        if self._loop is not None:
            self._handle = self._loop.call_later(self.interval_s, self.beat)

    def stop(self) -> None:
        self._loop = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def age_s(self) -> float:
        return max(0.0, self._clock() - self.last_beat_s)


class Health:
    """What the probes report; read from the metrics thread, written by the loop."""

    def __init__(
        self,
        *,
        heartbeat: Heartbeat,
        started: anyio.Event,
        stop: anyio.Event | None = None,
        config: HealthConfig = HealthConfig(),
    ) -> None:
        self.heartbeat = heartbeat
        self.started = started
        self.stop = stop
        self.config = config

    def live(self) -> Verdict:
        return liveness(
            heartbeat_age_s=self.heartbeat.age_s(), stale_after_s=self.config.stale_after_s
        )

    def ready(self) -> Verdict:
        # Event.is_set() only reads a flag, which is safe from the metrics thread.
        return readiness(
            live=self.live(),
            started=self.started.is_set(),
            draining=self.stop is not None and self.stop.is_set(),
        )

    def probes(self) -> dict[str, metrics.Probe]:
        return {
            PATH_LIVE: lambda: _answer(self.live()),
            PATH_HEALTH: lambda: _answer(self.live()),
            PATH_READY: lambda: _answer(self.ready()),
        }


def _answer(verdict: Verdict) -> tuple[int, bytes]:
    body = {
        "status": "ok" if verdict.ok else "fail",
        "reason": verdict.reason,
        "heartbeat_age_s": round(verdict.heartbeat_age_s, 3),
    }
    return (200 if verdict.ok else 503), orjson.dumps(body)


@asynccontextmanager
async def serving(
    settings: Settings,
    *,
    ready: anyio.Event,
    stop: anyio.Event | None = None,
    config: HealthConfig = HealthConfig(),
) -> AsyncIterator[Health]:
    """/metrics, /livez, /healthz and /readyz on HERALD_METRICS_PORT while the block runs.

    `ready` is set once the roles run (run_roles sets it); `stop` set means draining. With
    HERALD_METRICS_PORT=0 nothing listens, but the heartbeat still feeds the lag histogram.
    """
    heartbeat = Heartbeat(interval_s=config.heartbeat_interval_s)
    heartbeat.start()
    health = Health(heartbeat=heartbeat, started=ready, stop=stop, config=config)
    server = None
    try:
        server = metrics.serve(settings.metrics_port, settings.bind_host, probes=health.probes())
        yield health
    finally:
        heartbeat.stop()
        if server is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(server.close)
