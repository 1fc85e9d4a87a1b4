"""Plumbing the benchmarks and the Locust file share: settings for a throwaway run, herald roles
in child processes with their own /metrics port, readiness, RSS sampling, simulator counters,
audiences and campaign events.

Children are `python -m herald run <roles>`, like herald.process.ChildRole, but each gets a
metrics port so the benchmark can read its histograms and its /readyz.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import asyncpg
import cputime
import measures

from herald.bus import codec
from herald.bus.producer import producer as kafka_producer
from herald.constants import TOPIC_CAMPAIGN_EVENTS
from herald.demo import campaign_event
from herald.domain.channels import SendingMode
from herald.embedded import free_port
from herald.settings import DEVELOPMENT_PROFILE, Settings
from herald.simulator.app import PATH_ARRIVALS, PATH_STATS
from herald.store import accounts, contacts

_PR_SET_PDEATHSIG = 1
READY_TIMEOUT_S = 120.0


def run_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for one benchmark run: its own data dir, ports and topic prefix.

    HERALD_* variables in the environment still apply (e.g. HERALD_WORKER_CONCURRENCY);
    explicit overrides win over them."""
    base = Settings.from_env(profile=DEVELOPMENT_PROFILE)
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "topic_prefix": f"bench-{uuid.uuid4().hex[:8]}.",
        "api_port": free_port(),
        "ingress_port": free_port(),
        "simulator_port": free_port(),
        "simulator_smtp_port": free_port(),
        "metrics_port": 0,
        "log_level": os.environ.get("HERALD_LOG_LEVEL", "WARNING"),
    }
    values.update(overrides)
    return base.with_overrides(**values)


def _die_with_parent() -> None:
    # A benchmark killed mid-run must not leave roles behind.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One `herald run <roles>` process with /metrics and /readyz on `metrics_port`."""

    settings: Settings
    roles: Sequence[str]
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return "+".join(self.roles)

    @property
    def pid(self) -> int:
        assert self.process is not None, "child not started"
        return self.process.pid

    def start(self) -> Child:
        env = {
            **os.environ,
            **self.settings.to_env(),
            "HERALD_METRICS_PORT": str(self.metrics_port),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "herald", "run", *self.roles],
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if os.name == "posix" else None,
        )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Blocks until /readyz answers 200 (the roles run and consumers joined)."""
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = self.process.poll() if self.process else None
                raise RuntimeError(f"{self.name} exited with {code}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=1.0) as answer,
            ):
                if answer.status == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready within {timeout_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL, as a node failure would."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        return process.returncode


@contextlib.contextmanager
def children(*started: Child) -> Iterator[tuple[Child, ...]]:
    """Stops every child on the way out, in reverse order, whatever happened."""
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()


def rss_bytes(pid: int) -> int:
    """Resident set size of a process from /proc (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0
    return 0


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, kw_only=True)
class CpuReading:
    """Every process's CPU counters and the machine's, at one moment (Linux /proc)."""

    procs: dict[int, cputime.ProcCpu]
    machine: cputime.MachineCpu
    at_s: float  # time.monotonic()


def cpu_snapshot() -> dict[int, cputime.ProcCpu]:
    """{pid: its /proc/<pid>/stat} for every process now (those gone while reading skipped)."""
    found: dict[int, cputime.ProcCpu] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                found[int(entry)] = cputime.parse_proc_stat(stat.read(), _CLOCK_TICKS)
        except (OSError, ValueError, IndexError):
            continue
    return found


def cpu_reading() -> CpuReading:
    with open("/proc/stat", encoding="ascii") as stat:
        machine = cputime.parse_machine_stat(stat.read(), _CLOCK_TICKS)
    return CpuReading(procs=cpu_snapshot(), machine=machine, at_s=time.monotonic())


def postmaster_pid(settings: Settings) -> int | None:
    """The embedded PostgreSQL's postmaster (first line of its postmaster.pid); None when the
    database is not the embedded one."""
    try:
        text = (settings.data_dir / "postgres" / "postmaster.pid").read_text(encoding="ascii")
        return int(text.split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def cpu_roots(
    settings: Settings, procs: Mapping[int, cputime.ProcCpu], names: Mapping[int, str]
) -> dict[int, str]:
    """The processes whose subtrees are measured: ours by name, plus the embedded
    PostgreSQL's postmaster ("postgres", every backend under it) and the embedded broker
    ("broker": a child of this process running the Tansu binary)."""
    roots = dict(names)
    postmaster = postmaster_pid(settings)
    if postmaster is not None:
        roots[postmaster] = "postgres"
    for pid in cputime.children_of(procs.values(), os.getpid(), "tansu"):
        roots[pid] = "broker"
    return roots


def cpu_by_role(
    before: Mapping[int, cputime.ProcCpu],
    after: Mapping[int, cputime.ProcCpu],
    roots: Mapping[int, str],
) -> dict[str, float]:
    """CPU seconds each root's subtree spent between two snapshots, rounded, most first.
    Processes under no root (other jobs on the machine) are not counted."""
    return {k: round(v, 2) for k, v in cputime.spent_between(before, after, roots).items()}


class RssSampler:
    """Peak RSS of some processes, sampled every interval_s until stopped."""

    def __init__(self, pids: Sequence[int], interval_s: float = 0.1) -> None:
        self.pids = list(pids)
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.samples = 0
        # (monotonic time, largest RSS of the processes) per sample: whether memory stays flat.
        self.series: list[tuple[float, int]] = []
        self._stop = anyio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            largest = max((rss_bytes(pid) for pid in self.pids), default=0)
            self.peak_bytes = max(self.peak_bytes, largest)
            self.series.append((time.monotonic(), largest))
            self.samples += 1
            with anyio.move_on_after(self.interval_s):
                await self._stop.wait()

    def stop(self) -> None:
        self._stop.set()


class GaugeSampler:
    """The sum of one gauge over some processes' /metrics, sampled every interval_s until
    stopped; `mean` over the samples. A scrape that fails is skipped."""

    def __init__(self, ports: Sequence[int], name: str, interval_s: float = 2.0) -> None:
        self.ports = list(ports)
        self.name = name
        self.interval_s = interval_s
        self.values: list[float] = []
        self._stop = anyio.Event()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
                    texts = [await scrape(session, port) for port in self.ports]
                    self.values.append(sum(measures.gauge(t, self.name) for t in texts))
                with anyio.move_on_after(self.interval_s):
                    await self._stop.wait()

    def stop(self) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None


async def simulator_stats(session: aiohttp.ClientSession, settings: Settings) -> dict[str, Any]:
    async with session.get(f"{settings.simulator_url}{PATH_STATS}") as answer:
        answer.raise_for_status()
        body: dict[str, Any] = await answer.json()
        return body


async def arrival_times(session: aiohttp.ClientSession, settings: Settings) -> list[float]:
    """Wall-clock times of the send requests the simulator kept (its last 200,000)."""
    async with session.get(f"{settings.simulator_url}{PATH_ARRIVALS}") as answer:
        answer.raise_for_status()
        body: dict[str, Any] = await answer.json()
        return [float(t) for t, _to in body["arrivals"]]


def total(stats: Mapping[str, Any], counter: str, channels: Sequence[str] | None = None) -> int:
    """One per-channel counter of /_simulator/stats, summed over channels (all by default)."""
    per_channel: Mapping[str, int] = stats.get(counter, {})
    return sum(n for ch, n in per_channel.items() if channels is None or ch in channels)


def delta(after: Mapping[str, Any], before: Mapping[str, Any], counter: str) -> dict[str, int]:
    """Per-channel change of one counter between two stats snapshots."""
    now: Mapping[str, int] = after.get(counter, {})
    then: Mapping[str, int] = before.get(counter, {})
    return {ch: n - then.get(ch, 0) for ch, n in now.items()}


class StatsSampler:
    """Samples /_simulator/stats every interval_s: (wall time, per-channel requests).

    A sample is stamped at the middle of its round trip, and kept only when the round trip
    took at most max_rtt_s: on a busy machine a slow answer says little about when the
    simulator read its counters, and a 1 s window is only as exact as its two stamps."""

    def __init__(
        self, settings: Settings, interval_s: float = 0.05, max_rtt_s: float = 0.01
    ) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.max_rtt_s = max_rtt_s
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.discarded = 0
        self._stop = anyio.Event()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    sent = time.time()
                    stats = await simulator_stats(session, self.settings)
                    answered = time.time()
                    if answered - sent <= self.max_rtt_s:
                        counts = dict(stats.get("requests", {}))
                        self.samples.append(((sent + answered) / 2, counts))
                    else:
                        self.discarded += 1
                with anyio.move_on_after(self.interval_s):
                    await self._stop.wait()

    def stop(self) -> None:
        self._stop.set()

    def series(self, channels: Sequence[str] | None = None) -> list[tuple[float, float]]:
        return [
            (t, float(sum(n for ch, n in counts.items() if channels is None or ch in channels)))
            for t, counts in self.samples
        ]


async def scrape(session: aiohttp.ClientSession, port: int) -> str:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
        answer.raise_for_status()
        return await answer.text()


async def wait_quiet(
    settings: Settings, *, counters: Sequence[str], quiet_s: float = 1.0, timeout_s: float = 60.0
) -> dict[str, Any]:
    """Waits until the named simulator counters stop moving for quiet_s; the last snapshot."""
    async with aiohttp.ClientSession() as session:
        last = await simulator_stats(session, settings)
        still_since = time.monotonic()
        with anyio.move_on_after(timeout_s):
            while time.monotonic() - still_since < quiet_s:
                await anyio.sleep(0.2)
                now = await simulator_stats(session, settings)
                if any(now.get(c) != last.get(c) for c in counters):
                    still_since = time.monotonic()
                last = now
        return last


async def audience(
    pool: asyncpg.Pool,
    *,
    account_id: str,
    count: int,
    tag: str,
    first_phone: int,
    rate_per_s: float | None,
    nameless_every: int = 0,
    bad_phone_every: int = 0,
    analyze: bool = True,
) -> None:
    """An account with its send rate and `count` synthetic contacts tagged `tag`.

    With `analyze`, the planner learns about the new contacts at once, as autovacuum would
    have by the time a real campaign is sent to them; without it, a campaign published right
    after a bulk insert may be expanded with a plan made for an empty account."""
    await accounts.ensure(pool, account_id, f"bench {account_id}", rate_per_s)
    await contacts.insert_synthetic(
        pool,
        account_id=account_id,
        count=count,
        first_phone=first_phone,
        tag=tag,
        nameless_every=nameless_every,
        bad_phone_every=bad_phone_every,
    )
    if analyze:
        await pool.execute("ANALYZE contacts")


def confirmed(
    *, campaign_id: str, account_id: str, mode: SendingMode, tag: str, batch_size: int
) -> dict[str, Any]:
    event = campaign_event(campaign_id=campaign_id, account_id=account_id, mode=mode, tags=[tag])
    event["batch_size"] = batch_size
    event["name"] = f"bench {campaign_id[:8]}"
    return event


async def publish(settings: Settings, events: Sequence[Mapping[str, Any]]) -> None:
    async with kafka_producer(settings) as producer:
        for event in events:
            await producer.send_and_wait(
                settings.topic(TOPIC_CAMPAIGN_EVENTS),
                codec.encode(dict(event)),
                key=codec.key(str(event["account_id"])),
            )


def log(message: str) -> None:
    """Progress goes to stderr; stdout ends with the one JSON line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
