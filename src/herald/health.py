"""Liveness, readiness and startup of a herald process, served beside /metrics.

- Liveness follows the event loop, not its dependencies: the loop runs a heartbeat every
  second, and the process counts as dead once the last beat is older than `stale_after_s`.
  Kafka or PostgreSQL being unreachable never fails it, so an outage does not become a
  restart storm on top.
- Readiness: the roles have started (listeners bound, consumers joined their groups), the
  process is not draining, and it reaches what its roles need (Kafka for the consumers and
  the ingress, PostgreSQL for the API and the folding roles). It takes the ingress and API out
  of their Services on SIGTERM or while they could only fail, and paces rolling updates of
  every role. The dependencies are checked by a background task every few seconds, each
  check bounded; the probe reads the last verdict and never waits on a dependency itself.
- Startup: Kubernetes' startupProbe reads /readyz with a long allowance, so a slow consumer
  group join is not taken for a dead process; liveness applies only after that.

The probes are answered from the metrics server's thread, so a wedged loop gets a 503 with
the heartbeat's age rather than a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import anyio
import orjson

from herald import metrics
from herald.retry import one_line
from herald.settings import Settings

log = logging.getLogger(__name__)

PATH_LIVE: Final = "/livez"
PATH_HEALTH: Final = "/healthz"  # the same answer as /livez, under the name most tools expect
PATH_READY: Final = "/readyz"

# Dependency names: a failing one makes the readiness reason "<name>_unreachable".
KAFKA: Final = "kafka"
POSTGRES: Final = "postgres"

# A check: returns when the dependency answered, raises (anything) when it did not.
Check = Callable[[], Awaitable[None]]


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


def readiness(
    *, live: Verdict, started: bool, draining: bool, unreachable: Sequence[str] = ()
) -> Verdict:
    """`unreachable`: the dependencies whose last check failed, in the order they are watched."""
    if not live.ok:
        return live
    if draining:
        return Verdict(ok=False, reason="draining", heartbeat_age_s=live.heartbeat_age_s)
    if not started:
        return Verdict(ok=False, reason="starting", heartbeat_age_s=live.heartbeat_age_s)
    if unreachable:
        return Verdict(
            ok=False, reason=f"{unreachable[0]}_unreachable", heartbeat_age_s=live.heartbeat_age_s
        )
    return live


class Dependencies:
    """Named checks of what the roles need, run by a background task; the names whose last
    check failed are read by the probe thread.

    Roles register their checks once their clients exist (`watch`); until a check has run
    its dependency counts as reachable, since the roles only start once they connected. One
    failed check marks its dependency at once: Kubernetes' failureThreshold decides how many
    failed probes take the pod out, so one slow answer does not flap it.
    """

    def __init__(self, *, interval_s: float = 5.0, timeout_s: float = 2.0) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._checks: dict[str, Check] = {}
        # Replaced whole, never mutated: the probe thread reads it without a lock.
        self._unreachable: tuple[str, ...] = ()

    def watch(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def unreachable(self) -> tuple[str, ...]:
        return self._unreachable

    async def run(self) -> None:
        """Check every interval until cancelled."""
        while True:
            await self.check_once()
            await anyio.sleep(self.interval_s)

    async def check_once(self) -> tuple[str, ...]:
        """Run every check at once, each within timeout_s; the names that failed."""
        checks = list(self._checks.items())
        failed: dict[str, BaseException] = {}

        async def one(name: str, check: Check) -> None:
            try:
                with anyio.fail_after(self.timeout_s):
                    await check()
            except Exception as exc:
                failed[name] = exc

        async with anyio.create_task_group() as tg:
            for name, check in checks:
                tg.start_soon(one, name, check)
        now = tuple(name for name, _ in checks if name in failed)
        for name in (n for n in now if n not in self._unreachable):
            log.warning(
                "%s unreachable: %s",
                name,
                one_line(failed[name]),
                extra={
                    "event": "dependency_unreachable",
                    "dependency": name,
                    "error": type(failed[name]).__name__,
                },
            )
        for name in (n for n in self._unreachable if n not in now):
            log.info(
                "%s reachable again",
                name,
                extra={"event": "dependency_reachable", "dependency": name},
            )
        self._unreachable = now
        return now


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
        dependencies: Dependencies | None = None,
    ) -> None:
        self.heartbeat = heartbeat
        self.started = started
        self.stop = stop
        self.config = config
        self.dependencies = dependencies

    def watch(self, name: str, check: Check) -> None:
        """Readiness follows `name` from now on (see Dependencies)."""
        if self.dependencies is None:
            self.dependencies = Dependencies()
        self.dependencies.watch(name, check)

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
            unreachable=self.dependencies.unreachable() if self.dependencies else (),
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
    dependencies: Dependencies | None = None,
) -> AsyncIterator[Health]:
    """/metrics, /livez, /healthz and /readyz on HERALD_METRICS_PORT while the block runs.

    `ready` is set once the roles run (run_roles sets it); `stop` set means draining. The
    dependencies the roles watch (Health.watch, or `dependencies` given) are checked in the
    background while the block runs. With HERALD_METRICS_PORT=0 nothing listens, but the
    heartbeat still feeds the lag histogram.
    """
    heartbeat = Heartbeat(interval_s=config.heartbeat_interval_s)
    heartbeat.start()
    dependencies = dependencies or Dependencies()
    health = Health(
        heartbeat=heartbeat, started=ready, stop=stop, config=config, dependencies=dependencies
    )
    server = None
    # A task of its own rather than a task group around the yield: the block's errors reach
    # the caller as they are, not wrapped in an exception group.
    checking = asyncio.create_task(dependencies.run())
    try:
        server = metrics.serve(settings.metrics_port, settings.bind_host, probes=health.probes())
        yield health
    finally:
        heartbeat.stop()
        with anyio.CancelScope(shield=True):
            checking.cancel()
            await asyncio.wait([checking])
            if server is not None:
                await anyio.to_thread.run_sync(server.close)
