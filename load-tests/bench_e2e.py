"""End-to-end throughput of herald on one machine, against the raw ceiling of the same simulator.

    python load-tests/bench_e2e.py [--recipients N] [--sending-mode MODE] [--workers K]
    python load-tests/bench_e2e.py --expand-only 1000000
    python load-tests/bench_e2e.py --fold-only --fold-recipients 40000

One run, four phases, on embedded PostgreSQL and broker (a fresh data dir per run):

1. ceiling: the simulator (its own child) takes the campaign's exact request mix from a bare
   aiohttp loop at worker_concurrency in flight; its callbacks go to an ingress child that
   publishes them on a throwaway topic prefix, so the simulator does the same work as later.
2. campaign: herald's roles in children (the split is --split; by default the worker alone in
   one process and status, ingress and scheduler in another) send a campaign of N synthetic
   recipients and fold every callback; timed from publish to `completed`.
3. fold: the status role alone folds M pre-built status events for an expanded campaign.
4. the JSON line (last line of stdout), with herald's CPU per recipient and how busy the
   machine was over the campaign (cputime.py); progress and details go to stderr.

The account's send rate is set far above what one machine sends (--rate-per-s), so the token
bucket is not what is measured here; bench_control.py measures the limiter.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import asyncpg
import ceiling
import cputime
import folding
import harness
import measures
import orjson
import profiling

from herald import embedded
from herald.demo import BAD_PHONE_EVERY, FIRST_PHONE, NAMELESS_EVERY
from herald.domain.channels import SendingMode
from herald.runner import migrate
from herald.settings import Settings
from herald.store import campaigns, db

DEFAULT_SPLIT = "worker/status,ingress,scheduler"
STALL_TIMEOUT_S = 120.0
IDLE_S = 3.0
JSON_KEYS = (
    "recipients",
    "elapsed_s",
    "recipients_per_s",
    "sends_per_s",
    "worst_window_per_s",
    "worst_5s_window_per_s",
    "ceiling_sends_per_s",
    "ratio_to_ceiling",
    "send_latency_p50_ms",
    "send_latency_p99_ms",
    "worker_rss_mb_peak",
    "worker_rss_mb_to_tenth",
    "worker_rss_mb_after_tenth",
    "expand_s",
    "fold_events_per_s",
    "duplicates",
    "lost",
    "herald_cpu_ms_per_recipient",
    "cpu_ms_per_recipient_by_role",
    "cpu_busy_ratio",
    "herald_cpu_busy_ratio",
    "unattributed_cpu_busy_ratio",
    "sends_in_flight_avg",
    "events_per_fold",
)


def _args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument(
        "--sending-mode",
        default="WHATSAPP_RCS_SMS",
        type=str.upper,
        choices=[m.value for m in SendingMode if m is not SendingMode.EMAIL],
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (K)")
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="split the recipients over this many accounts, one campaign each, published at "
        "once (an account's work is one partition's, so this is what lets workers share it)",
    )
    parser.add_argument(
        "--split",
        default=DEFAULT_SPLIT,
        help="role groups, one process each, '/' between processes and ',' between roles; "
        "the group holding 'worker' is started --workers times",
    )
    parser.add_argument("--rate-per-s", type=float, default=1_000_000.0)
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--fold-recipients", type=int, default=None, help="default min(N, 80k)")
    parser.add_argument("--fold-record-events", type=int, default=25)
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--skip-fold", action="store_true")
    parser.add_argument(
        "--fold-only",
        action="store_true",
        help="only the fold phase (status role alone, from a backlog); no simulator, ceiling "
        "or campaign",
    )
    parser.add_argument("--expand-only", type=int, default=None, metavar="N")
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="with --expand-only: publish right after the bulk insert, before PostgreSQL has "
        "statistics for the new contacts",
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR")
    args = parser.parse_args(argv)
    if args.recipients < 1 or args.workers < 1 or args.accounts < 1:
        parser.error("--recipients, --workers and --accounts must be at least 1")
    if args.recipients % args.accounts:
        parser.error("--recipients must be a multiple of --accounts")
    if args.fold_only and (args.skip_fold or args.expand_only is not None):
        parser.error("--fold-only excludes --skip-fold and --expand-only")
    return args


def _groups(split: str, workers: int) -> list[list[str]]:
    groups = [[r.strip() for r in g.split(",") if r.strip()] for g in split.split("/")]
    groups = [g for g in groups if g]
    out: list[list[str]] = []
    for group in groups:
        out.extend([group] * (workers if "worker" in group else 1))
    named = {r for g in out for r in g}
    missing = {"worker", "status", "ingress", "scheduler"} - named
    if missing:
        raise SystemExit(f"--split lacks {', '.join(sorted(missing))}")
    return out


# -- phase 1: the ceiling -------------------------------------------------------------------


async def _ceiling(
    settings: Settings, args: argparse.Namespace, names: dict[int, str]
) -> tuple[float, dict[str, Any]]:
    sends = measures.planned_sends(
        count=args.recipients,
        first_phone=FIRST_PHONE,
        mode=SendingMode(args.sending_mode),
        bad_phone_every=BAD_PHONE_EVERY,
        nameless_every=NAMELESS_EVERY,
    )
    # Its callbacks are real work for the simulator; an ingress on another topic prefix takes
    # them, as the campaign's ingress will, and nobody folds them.
    sink = settings.with_overrides(topic_prefix=f"ceiling-{uuid.uuid4().hex[:8]}.")
    ingress = harness.Child(sink, ["ingress"]).start()
    with harness.children(ingress):
        await anyio.to_thread.run_sync(ingress.wait_ready)
        harness.log(f"ceiling: {len(sends)} requests {measures.mix(sends)}")
        names = {**names, ingress.pid: "ingress"}
        cpu_before = harness.cpu_snapshot()
        roots = harness.cpu_roots(settings, cpu_before, names)
        result = await ceiling.run(
            settings, sends, concurrency=settings.worker_concurrency, run_id=uuid.uuid4().hex[:8]
        )
        cpu = harness.cpu_by_role(cpu_before, harness.cpu_snapshot(), roots)
        harness.log(f"ceiling: {result.per_s:,.0f} requests/s, answers {result.by_status}")
        # Let the ceiling's callbacks finish before the campaign starts.
        await harness.wait_quiet(settings, counters=["callbacks_sent", "callbacks_failed"])
    p50 = measures.percentile(result.latencies_s, 0.50)
    p99 = measures.percentile(result.latencies_s, 0.99)
    details = {
        "ceiling_requests": result.requests,
        "ceiling_elapsed_s": round(result.elapsed_s, 3),
        "ceiling_latency_p50_ms": round(p50 * 1000, 2) if p50 is not None else None,
        "ceiling_latency_p99_ms": round(p99 * 1000, 2) if p99 is not None else None,
        "ceiling_in_flight_mean": round(sum(result.latencies_s) / result.elapsed_s, 1),
        "ceiling_answers": {str(k): v for k, v in result.by_status.items()},
        "ceiling_cpu_s": cpu,
    }
    return result.per_s, details


# -- phase 2: the campaign ------------------------------------------------------------------


async def _wait_expanded(pool: asyncpg.Pool, campaign_id: str, timeout_s: float) -> float:
    """Seconds until the campaign's expansion is committed (visible), polled every 20 ms."""
    began = time.monotonic()
    with anyio.fail_after(timeout_s):
        while True:
            expanded = await pool.fetchval(
                "SELECT expanded_at IS NOT NULL FROM campaigns WHERE id = $1", campaign_id
            )
            if expanded:
                return time.monotonic() - began
            await anyio.sleep(0.02)


async def _follow(
    pool: asyncpg.Pool, campaign_id: str, expected: int, progress: list[tuple[float, int]]
) -> campaigns.Counters:
    """The campaign's counters once it completed (or stalled); `progress` gets (monotonic
    time, final recipients) whenever that count moved."""
    last_final, last_change, last_log = -1, time.monotonic(), 0.0
    while True:
        counters = await campaigns.counters(pool, campaign_id)
        now = time.monotonic()
        if counters is not None:
            if counters.final != last_final:
                last_final, last_change = counters.final, now
                progress.append((now, counters.final))
            if counters.status == "completed":
                return counters
            if now - last_log > 10:
                last_log = now
                harness.log(
                    f"campaign: final {counters.final}/{expected} sent {counters.sent} "
                    f"delivered {counters.delivered} failed {counters.failed}"
                )
        if now - last_change > STALL_TIMEOUT_S:
            harness.log("campaign: no progress for 120 s, giving up")
            assert counters is not None
            return counters
        await anyio.sleep(0.05)


def _rss_split(
    series: Sequence[tuple[float, int]],
    progress: dict[str, list[tuple[float, int]]],
    tenth: int,
) -> dict[str, float | None]:
    """Worker RSS peaks before and after a tenth of all recipients were final."""
    finals: dict[str, int] = {}
    at: float | None = None
    for when, campaign_id, final in sorted(
        (when, c, final) for c, points in progress.items() for when, final in points
    ):
        finals[campaign_id] = final
        if sum(finals.values()) >= tenth:
            at = when
            break
    if at is None:
        return {"worker_rss_mb_to_tenth": None, "worker_rss_mb_after_tenth": None}
    before = [rss for when, rss in series if when <= at]
    after = [rss for when, rss in series if when > at]
    return {
        "worker_rss_mb_to_tenth": round(max(before) / 2**20, 1) if before else None,
        "worker_rss_mb_after_tenth": round(max(after) / 2**20, 1) if after else None,
    }


async def _idle_cpu(roots: dict[int, str]) -> dict[str, float]:
    """CPU seconds per second each measured process spends with nothing to send, over
    IDLE_S before the campaign: the part of a campaign's CPU that grows with its wall time
    (polling loops, consumers' fetches, PostgreSQL's background work), not its recipients."""
    before = harness.cpu_reading()
    await anyio.sleep(IDLE_S)
    after = harness.cpu_reading()
    wall_s = after.at_s - before.at_s
    spent = cputime.spent_between(before.procs, after.procs, roots)
    return {label: round(seconds / wall_s, 4) for label, seconds in spent.items()}


async def _campaign(
    settings: Settings, args: argparse.Namespace, names: dict[int, str]
) -> dict[str, Any]:
    groups = _groups(args.split, args.workers)
    kids = [harness.Child(settings, g) for g in groups]
    with harness.children(*kids):
        for kid in kids:
            kid.start()
        for kid in kids:
            await anyio.to_thread.run_sync(kid.wait_ready)
        harness.log("campaign: roles ready: " + " | ".join(k.name for k in kids))
        names = {**names, **{k.pid: f"{k.name}#{i}" for i, k in enumerate(kids)}}
        workers = [k for k in kids if "worker" in k.roles]
        scheduler = next(k for k in kids if "scheduler" in k.roles)
        folder = next(k for k in kids if "status" in k.roles)
        account_ids = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(args.accounts)]
        campaign_ids = [str(uuid.uuid4()) for _ in account_ids]
        each = args.recipients // args.accounts
        async with db.pool(settings.database_url, max_size=4) as pool:
            began = time.monotonic()
            for account_id in account_ids:
                # The same numbers in every account: the simulator answers each the same way.
                await harness.audience(
                    pool,
                    account_id=account_id,
                    count=each,
                    tag="bench",
                    first_phone=FIRST_PHONE,
                    rate_per_s=args.rate_per_s,
                    nameless_every=NAMELESS_EVERY,
                    bad_phone_every=BAD_PHONE_EVERY,
                )
            contacts_s = time.monotonic() - began
            roots = harness.cpu_roots(settings, harness.cpu_snapshot(), names)
            idle = await _idle_cpu(roots)
            events = [
                harness.confirmed(
                    campaign_id=campaign_id,
                    account_id=account_id,
                    mode=SendingMode(args.sending_mode),
                    tag="bench",
                    batch_size=args.batch_size,
                )
                for account_id, campaign_id in zip(account_ids, campaign_ids, strict=True)
            ]
            async with aiohttp.ClientSession() as http:
                before = await harness.simulator_stats(http, settings)
                rss = harness.RssSampler([w.pid for w in workers])
                in_flight = harness.GaugeSampler(
                    [w.metrics_port for w in workers], "herald_sends_in_flight"
                )
                spied = {
                    f"campaign-{i}-{k.name}": k.pid
                    for i, k in enumerate(kids)
                    if set(k.roles) & {"worker", "status", "ingress"}
                }
                finals: dict[str, campaigns.Counters] = {}
                progress: dict[str, list[tuple[float, int]]] = {c: [] for c in campaign_ids}

                async def follow(campaign_id: str) -> None:
                    finals[campaign_id] = await _follow(
                        pool, campaign_id, each, progress[campaign_id]
                    )

                async with anyio.create_task_group() as tg:
                    tg.start_soon(rss.run)
                    with profiling.recording(spied, args.py_spy):
                        cpu_before = harness.cpu_reading()
                        tg.start_soon(in_flight.run)
                        await harness.publish(settings, events)
                        published = time.monotonic()
                        published_wall_s = time.time()
                        expand_s = 0.0
                        for campaign_id in campaign_ids:
                            expand_s = max(
                                expand_s, await _wait_expanded(pool, campaign_id, STALL_TIMEOUT_S)
                            )
                        harness.log(f"campaign: expanded in {expand_s:.2f} s after publish")
                        async with anyio.create_task_group() as following:
                            for campaign_id in campaign_ids:
                                following.start_soon(follow, campaign_id)
                        elapsed = time.monotonic() - published
                        completed_wall_s = time.time()
                        cpu_after = harness.cpu_reading()
                    rss.stop()
                    in_flight.stop()
                after = await harness.simulator_stats(http, settings)
                # The most send requests any one second of the campaign held, as the provider
                # saw them arrive: with one account and one channel, against --rate-per-s.
                arrivals = await harness.arrival_times(http, settings)
                worst_window_per_s = measures.max_window_rate(
                    arrivals, start_s=published_wall_s, end_s=completed_wall_s
                )
                # The same over five seconds: a stall of the simulator's process (it shares
                # the cores) bunches arrivals into one second, not into five.
                worst_5s_window_per_s = measures.max_window_rate(
                    arrivals, window_s=5.0, start_s=published_wall_s, end_s=completed_wall_s
                )
                worker_metrics = [await harness.scrape(http, w.metrics_port) for w in workers]
                scheduler_metrics = await harness.scrape(http, scheduler.metrics_port)
                status_metrics = await harness.scrape(http, folder.metrics_port)
            lost = 0
            folded = dict.fromkeys(measures.COUNTER_FIELDS, 0)
            by_channel: dict[str, dict[str, int]] = {}
            for campaign_id in campaign_ids:
                counters = finals[campaign_id]
                mine = {f: getattr(counters, f) for f in measures.COUNTER_FIELDS}
                recount = await campaigns.recount(pool, campaign_id)
                lost += measures.lost(expected_total=each, counters=mine, recount=recount)
                folded = {f: folded[f] + mine[f] for f in folded}
                for channel, counts in (
                    await campaigns.channel_counters(pool, campaign_id)
                ).items():
                    into = by_channel.setdefault(channel, {})
                    for name, n in counts.items():
                        into[name] = into.get(name, 0) + n
            status = (
                "completed"
                if all(c.status == "completed" for c in finals.values())
                else ",".join(sorted({c.status for c in finals.values()}))
            )
    requests = sum(harness.delta(after, before, "requests").values())
    buckets: dict[float, float] = {}
    latency_sum_s = latency_count = 0.0
    for text in worker_metrics:
        sends = measures.histogram(text, "herald_send_duration_seconds")
        latency_sum_s, latency_count = latency_sum_s + sends.sum, latency_count + sends.count
        for bound, count in sends.buckets:
            buckets[bound] = buckets.get(bound, 0.0) + count
    ordered = sorted(buckets.items())
    mean_s = latency_sum_s / latency_count if latency_count else 0.0
    p50 = measures.histogram_quantile(0.50, ordered)
    p99 = measures.histogram_quantile(0.99, ordered)
    expansion = measures.histogram(scheduler_metrics, "herald_expansion_duration_seconds")
    cpu = cputime.spent_between(cpu_before.procs, cpu_after.procs, roots)
    folds = measures.histogram(status_metrics, "herald_fold_duration_seconds")
    fold_events = measures.counter(status_metrics, "herald_status_events_folded")
    return {
        "status": status,
        "accounts": args.accounts,
        "recipients": sum(c.total for c in finals.values()),
        "elapsed_s": elapsed,
        "sends": requests,
        "worst_window_per_s": worst_window_per_s,
        "worst_5s_window_per_s": worst_5s_window_per_s,
        "send_latency_p50_ms": p50 * 1000 if p50 is not None else None,
        "send_latency_p99_ms": p99 * 1000 if p99 is not None else None,
        "send_latency_mean_ms": round(mean_s * 1000, 2),
        # Little's law: requests the worker kept in flight on average (of worker_concurrency).
        "sends_in_flight_mean": round(requests / elapsed * mean_s, 1),
        "worker_rss_mb_peak": rss.peak_bytes / 2**20,
        # Flat memory: the peak up to a tenth of the recipients final, and after it.
        **_rss_split(rss.series, progress, args.recipients // 10),
        "rss_samples": rss.samples,
        "expand_s": expand_s,
        "expansion_sql_s": expansion.sum if expansion.count else None,
        "contacts_insert_s": round(contacts_s, 3),
        "duplicates": sum(harness.delta(after, before, "duplicates").values()),
        "timeouts": sum(harness.delta(after, before, "timeouts").values()),
        "requests_by_channel": harness.delta(after, before, "requests"),
        # Callbacks the simulator gave up on after its last retry (the ingress kept failing
        # them): a recipient `lost` beyond these lost its status after the ingress took it.
        "callbacks_dropped": after.get("callbacks", {}).get("failed", 0)
        - before.get("callbacks", {}).get("failed", 0),
        "lost": lost,
        "counters": folded,
        "by_channel": by_channel,
        "split": " | ".join(k.name for k in kids),
        "cpu_s": {label: round(seconds, 2) for label, seconds in cpu.items()},
        "cpu_wall_s": round(cpu_after.at_s - cpu_before.at_s, 3),
        "cpu_cores": cpu_after.machine.cores,
        "machine_busy_s": round(cputime.machine_busy_s(cpu_before.machine, cpu_after.machine), 2),
        "sends_in_flight_samples": len(in_flight.values),
        "cpu": cputime.summary(
            cpu,
            recipients=sum(c.total for c in finals.values()),
            machine_busy_s=cputime.machine_busy_s(cpu_before.machine, cpu_after.machine),
            wall_s=cpu_after.at_s - cpu_before.at_s,
            cores=cpu_after.machine.cores,
        ),
        "sends_in_flight_avg": in_flight.mean,
        "idle_cpu_s_per_s": idle,
        # How the fold's work was cut: fewer, larger transactions cost less per event.
        "fold_transactions": folds.count,
        "fold_events": fold_events,
        "events_per_fold": round(fold_events / folds.count, 1) if folds.count else None,
    }


# -- expand only ------------------------------------------------------------------------------


async def _expand_only(settings: Settings, count: int, analyze: bool) -> dict[str, Any]:
    scheduler = harness.Child(settings, ["scheduler"]).start()
    with harness.children(scheduler):
        await anyio.to_thread.run_sync(scheduler.wait_ready)
        account_id = f"expand-{uuid.uuid4().hex[:8]}"
        campaign_id = str(uuid.uuid4())
        async with db.pool(settings.database_url, max_size=2) as pool:
            began = time.monotonic()
            await harness.audience(
                pool,
                account_id=account_id,
                count=count,
                tag="expand",
                first_phone=FIRST_PHONE,
                rate_per_s=None,
                analyze=analyze,
            )
            contacts_s = time.monotonic() - began
            harness.log(f"expand: {count} contacts inserted in {contacts_s:.1f} s")
            event = harness.confirmed(
                campaign_id=campaign_id,
                account_id=account_id,
                mode=SendingMode.SMS,
                tag="expand",
                batch_size=100_000,
            )
            await harness.publish(settings, [event])
            expand_s = await _wait_expanded(pool, campaign_id, 600)
            total = await pool.fetchval(
                "SELECT total_recipients FROM campaigns WHERE id = $1", campaign_id
            )
        async with aiohttp.ClientSession() as http:
            text = await harness.scrape(http, scheduler.metrics_port)
    expansion = measures.histogram(text, "herald_expansion_duration_seconds")
    return {
        "recipients": int(total),
        "expand_s": round(expand_s, 3),
        "expansion_sql_s": round(expansion.sum, 3) if expansion.count else None,
        "contacts_insert_s": round(contacts_s, 3),
        "analyzed_before": analyze,
    }


# -- main -------------------------------------------------------------------------------------


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


async def _run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    async with embedded.running(harness.run_settings(data_dir)) as settings:
        if args.expand_only is not None:
            return await _expand_only(settings, args.expand_only, not args.no_analyze)
        if args.fold_only:
            # No role has started yet to apply the migrations.
            await migrate(settings)
            fold = await folding.run(settings, args)
            harness.log("details " + orjson.dumps(fold).decode())
            return {
                "fold_events": fold["fold_events"],
                "fold_events_per_s": _round(fold["fold_events_per_s"]),
                "fold_transactions": fold["fold_transactions"],
                "lost": fold["fold_lost"],
            }
        simulator = harness.Child(settings, ["simulator"]).start()
        with harness.children(simulator):
            await anyio.to_thread.run_sync(simulator.wait_ready)
            names = {simulator.pid: "simulator", os.getpid(): "bench"}
            ceiling_per_s: float | None = None
            ceiling_details: dict[str, Any] = {}
            if not args.skip_ceiling:
                ceiling_per_s, ceiling_details = await _ceiling(settings, args, names)
            run = await _campaign(settings, args, names)
            # Logged now: the fold phase may still fail, and these took longest to get.
            harness.log("campaign details " + orjson.dumps({**ceiling_details, **run}).decode())
        fold = {} if args.skip_fold else await folding.run(settings, args)
    sends_per_s = run["sends"] / run["elapsed_s"]
    details = {**ceiling_details, **run, **fold}
    details.pop("fold_events_per_s", None)
    harness.log("details " + orjson.dumps(details).decode())
    result = {
        "recipients": run["recipients"],
        "elapsed_s": round(run["elapsed_s"], 3),
        "recipients_per_s": round(run["recipients"] / run["elapsed_s"], 1),
        "sends_per_s": round(sends_per_s, 1),
        "worst_window_per_s": run["worst_window_per_s"],
        "worst_5s_window_per_s": run["worst_5s_window_per_s"],
        "ceiling_sends_per_s": _round(ceiling_per_s),
        "ratio_to_ceiling": round(sends_per_s / ceiling_per_s, 3) if ceiling_per_s else None,
        "send_latency_p50_ms": _round(run["send_latency_p50_ms"], 2),
        "send_latency_p99_ms": _round(run["send_latency_p99_ms"], 2),
        "worker_rss_mb_peak": round(run["worker_rss_mb_peak"], 1),
        "worker_rss_mb_to_tenth": run["worker_rss_mb_to_tenth"],
        "worker_rss_mb_after_tenth": run["worker_rss_mb_after_tenth"],
        "expand_s": round(run["expand_s"], 3),
        "fold_events_per_s": _round(fold.get("fold_events_per_s")),
        "duplicates": run["duplicates"],
        "lost": run["lost"],
        **run["cpu"],
        "sends_in_flight_avg": _round(run["sends_in_flight_avg"]),
        "events_per_fold": run["events_per_fold"],
    }
    assert tuple(result) == JSON_KEYS
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    owned = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="herald-bench-")) if owned else args.data_dir
    try:
        result = anyio.run(_run, args, data_dir, backend_options={"use_uvloop": True})
    finally:
        if owned:
            with contextlib.suppress(OSError):
                shutil.rmtree(data_dir)
    print(orjson.dumps(result).decode(), flush=True)
    return 0 if not result.get("lost") else 1


if __name__ == "__main__":
    sys.exit(main())
