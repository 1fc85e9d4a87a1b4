"""Reads at scale: campaign stats, the A/B report and recipients pages of one big campaign.

    python load-tests/bench_reads.py [--recipients N] [--requests R] [--data-dir DIR]

One campaign of N recipients (default 10,000,000) is written straight into embedded
PostgreSQL, set-based (generate_series): three A/B variants as expansion assigns them, a
spread of statuses (read, delivered, failed after three channels, sent, skipped, cancelled,
queued) with their attempt rows, and the exact counters the status fold would have kept.
Then each read goes R times through the real API app (in process, over httpx's ASGI
transport, so auth, routing and serialisation are in the figure): `stats`
(GET /v1/campaigns/{id}/stats), `ab_test` (GET .../ab-test), `recipients` (GET .../recipients
at a random position) and `recipients_failed` (the same with ?status=failed, which adds the
bounded filtered count). The last stdout line is JSON with p50 and p99 per read in ms; exit
status 1 when a p99 is 100 ms or more, or a kept counter differs from a recount.

With --data-dir, the database stays there and a later run with the same directory reuses
the campaign (new migrations are applied to it first): generating ten million recipients
takes minutes and several GB.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import harness
import httpx
import orjson

from herald import embedded
from herald.api import pagination
from herald.api.app import create_app
from herald.api.config import ApiConfig
from herald.api.keys import create_account_key
from herald.demo import FIRST_PHONE, campaign_event
from herald.domain.campaign import CampaignStatus
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed, variant_starts
from herald.runner import migrate
from herald.store import campaigns, db, drafts

P99_LIMIT_MS = 100.0
ACCOUNT_ID = "bench-reads"
TAG = "bench-reads"
# Recipients point at this many contacts, round robin: the page's contact join is real, and
# the audience stays small next to the recipient rows.
MAX_CONTACTS = 100_000
WARMUP_REQUESTS = 5
READS = ("stats", "ab_test", "recipients", "recipients_failed")

# Each recipient's outcome from a hash of its id, in percent: (status, accepted, attempts,
# channel of its last attempt). Attempts follow WHATSAPP_RCS_SMS: 1 whatsapp, 2 rcs, 3 sms.
GENERATE_RECIPIENTS = """
INSERT INTO recipients (campaign_id, id, contact_id, phone, email, status, accepted, channel,
                        error_code, error_description, variant, delivered_at, read_at,
                        created_at, updated_at)
SELECT $1, n, k.id, k.phone, k.email, o.status, o.accepted, o.channel,
       CASE WHEN o.status IN ('failed', 'skipped', 'cancelled') THEN o.status || '_code' END,
       CASE WHEN o.status IN ('failed', 'skipped', 'cancelled') THEN 'bench outcome' END,
       width_bucket(n * 37 % 100, $4::int[]) - 1,
       CASE WHEN o.status IN ('delivered', 'read') THEN now() END,
       CASE WHEN o.status = 'read' THEN now() END,
       now(), now()
FROM generate_series(1, $2) AS n
CROSS JOIN LATERAL (SELECT abs(hashint4(n)) % 100 AS h) AS hashed
CROSS JOIN LATERAL (
    SELECT CASE WHEN h < 35 THEN 'read' WHEN h < 60 THEN 'delivered' WHEN h < 70 THEN 'failed'
                WHEN h < 80 THEN 'sent' WHEN h < 85 THEN 'skipped'
                WHEN h < 90 THEN 'cancelled' ELSE 'queued' END AS status,
           h < 60 OR (h >= 70 AND h < 80) AS accepted,
           CASE WHEN h < 55 OR (h >= 70 AND h < 80) THEN 'whatsapp' WHEN h < 60 THEN 'rcs'
                WHEN h < 70 THEN 'sms' END AS channel
) AS o
LEFT JOIN (SELECT id, phone, email, row_number() OVER (ORDER BY id) AS rn
           FROM contacts WHERE account_id = $3) AS k
  ON k.rn = (n - 1) % $5 + 1;
"""

GENERATE_ATTEMPTS = """
INSERT INTO attempts (campaign_id, recipient_id, attempt_no, channel, provider, outcome,
                      status, accepted, provider_message_id, error_code, created_at, updated_at,
                      window_open)
SELECT r.campaign_id, r.id, a, (ARRAY['whatsapp', 'rcs', 'sms'])[a],
       (ARRAY['meta', 'google', 'twilio'])[a],
       CASE WHEN a < last THEN 'accepted' WHEN r.status = 'failed' THEN 'rejected'
            ELSE 'accepted' END,
       CASE WHEN a < last THEN 'failed' ELSE r.status END,
       a = last AND r.accepted,
       'pm-' || r.id || '-' || a,
       CASE WHEN a < last OR r.status = 'failed' THEN 'provider_failed' END,
       now(), now(),
       -- Waiting for a fallback window only while sent, as the fold leaves it (0022).
       a = last AND r.status IN ('queued', 'sent')
FROM recipients r
CROSS JOIN LATERAL (SELECT CASE r.channel WHEN 'whatsapp' THEN 1 WHEN 'rcs' THEN 2
                                           ELSE 3 END AS last) AS l
CROSS JOIN LATERAL generate_series(1, l.last) AS a
WHERE r.campaign_id = $1 AND r.channel IS NOT NULL;
"""

KEEP_COUNTERS = """
WITH c AS (
    SELECT count(*) FILTER (WHERE accepted) AS sent,
           count(*) FILTER (WHERE status IN ('delivered', 'read')) AS delivered,
           count(*) FILTER (WHERE status = 'read') AS read,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'skipped') AS skipped,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE status IN ('delivered', 'read', 'failed', 'skipped',
                                             'cancelled')) AS final,
           count(*) AS total
    FROM recipients WHERE campaign_id = $1
)
UPDATE campaigns SET sent = c.sent, delivered = c.delivered, read = c.read,
                     failed = c.failed, skipped = c.skipped, cancelled = c.cancelled,
                     final = c.final, total_recipients = c.total,
                     expanded_at = now(), started_at = now()
FROM c WHERE id = $1;
"""

KEEP_CHANNEL_COUNTERS = """
INSERT INTO campaign_channel_counters (campaign_id, channel, sent, delivered, read, failed)
SELECT campaign_id, channel, count(*) FILTER (WHERE accepted),
       count(*) FILTER (WHERE status IN ('delivered', 'read')),
       count(*) FILTER (WHERE status = 'read'), count(*) FILTER (WHERE status = 'failed')
FROM attempts WHERE campaign_id = $1
GROUP BY campaign_id, channel;
"""

KEEP_VARIANT_COUNTERS = """
INSERT INTO campaign_variant_counters (campaign_id, variant, recipients, sent, delivered, read,
                                       failed, skipped, cancelled, final)
SELECT $1, variant, count(*), count(*) FILTER (WHERE accepted),
       count(*) FILTER (WHERE status IN ('delivered', 'read')),
       count(*) FILTER (WHERE status = 'read'), count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'skipped'), count(*) FILTER (WHERE status = 'cancelled'),
       count(*) FILTER (WHERE status IN ('delivered', 'read', 'failed', 'skipped', 'cancelled'))
FROM recipients WHERE campaign_id = $1
GROUP BY variant;
"""


def _args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per read")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the database here and reuse its campaign next time (default: a temporary "
        "dir, removed after)",
    )
    args = parser.parse_args(argv)
    if args.recipients < 100 or args.requests < 1:
        parser.error("--recipients must be at least 100 and --requests at least 1")
    return args


def _event(campaign_id: str) -> dict[str, Any]:
    event = campaign_event(
        campaign_id=campaign_id,
        account_id=ACCOUNT_ID,
        mode=SendingMode.WHATSAPP_RCS_SMS,
        tags=[TAG],
    )
    event["name"] = "bench reads"
    event["variants"] = [
        {"name": name, "weight": weight, "content": event["content"]}
        for name, weight in (("A", 50), ("B", 30), ("C", 20))
    ]
    return event


async def _existing(pool: asyncpg.Pool, count: int) -> str | None:
    found: str | None = await pool.fetchval(
        "SELECT id FROM campaigns WHERE account_id = $1 AND total_recipients = $2 "
        "ORDER BY created_at DESC LIMIT 1",
        ACCOUNT_ID,
        count,
    )
    return found


async def _generate(pool: asyncpg.Pool, count: int) -> str:
    """The campaign, its recipients and attempts, and counters equal to a recount."""
    campaign_id = str(uuid.uuid4())
    raw = _event(campaign_id)
    event = parse_campaign_confirmed(raw)
    contacts = min(count, MAX_CONTACTS)
    await harness.audience(
        pool,
        account_id=ACCOUNT_ID,
        count=contacts,
        tag=TAG,
        first_phone=FIRST_PHONE,
        rate_per_s=None,
    )
    await campaigns.insert(pool, event, raw, status=CampaignStatus.SENDING)
    async with pool.acquire() as conn:
        await conn.execute("SET work_mem = '256MB'")
        started = time.monotonic()
        await conn.execute(
            GENERATE_RECIPIENTS,
            campaign_id,
            count,
            ACCOUNT_ID,
            variant_starts(event.variants),
            contacts,
        )
        harness.log(f"recipients: {count:,} in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        async with conn.transaction():
            # Benchmark data only: the foreign key to recipients holds by construction, and
            # a check per row would double the time this takes.
            await conn.execute("SET LOCAL session_replication_role = replica")
            status = await conn.execute(GENERATE_ATTEMPTS, campaign_id)
        attempts = int(status.split()[-1])
        harness.log(f"attempts: {attempts:,} in {time.monotonic() - started:.1f} s")
        await conn.execute(
            "INSERT INTO batches (campaign_id, batch_no, first_id, last_id, not_before, "
            "published_at, done_at) "
            "SELECT $1, g, (g - 1) * 100000 + 1, least(g * 100000, $2), now(), now(), now() "
            "FROM generate_series(1, ceil($2::numeric / 100000)::integer) AS g",
            campaign_id,
            count,
        )
        await conn.execute(KEEP_COUNTERS, campaign_id)
        await conn.execute(KEEP_CHANNEL_COUNTERS, campaign_id)
        await conn.execute(KEEP_VARIANT_COUNTERS, campaign_id)
        started = time.monotonic()
        # As autovacuum would have by the time anyone reads the campaign: statistics for the
        # planner and a visibility map.
        await conn.execute("VACUUM (ANALYZE) recipients, attempts, contacts, campaigns")
        harness.log(f"vacuum analyze in {time.monotonic() - started:.1f} s")
    return campaign_id


async def _counters_lost(pool: asyncpg.Pool, campaign_id: str) -> int:
    """Every unit by which a kept counter (campaign, per variant) differs from a recount."""
    kept = await campaigns.counters(pool, campaign_id)
    assert kept is not None
    recounted = await campaigns.recount(pool, campaign_id)
    lost: int = sum(abs(getattr(kept, k) - v) for k, v in recounted.items())
    by_variant = await drafts.variant_counters(pool, campaign_id)
    for variant, row in (await drafts.variant_recount(pool, campaign_id)).items():
        kept_row = by_variant.get(variant, {})
        lost += sum(abs(int(kept_row.get(k, 0)) - int(v)) for k, v in row.items())
    return lost


def _ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


async def _time_reads(
    client: httpx.AsyncClient, campaign_id: str, count: int, requests: int
) -> dict[str, list[float]]:
    base = f"/v1/campaigns/{campaign_id}"
    # New positions each run: pages an earlier run read are not in the cache for this one.
    rng = random.Random()

    def request(read: str) -> tuple[str, dict[str, str]]:
        if read == "stats":
            return f"{base}/stats", {}
        if read == "ab_test":
            return f"{base}/ab-test", {}
        cursor = pagination.encode("recipients", [rng.randint(0, count - 1)])
        params = {"cursor": cursor, "limit": "50"}
        if read == "recipients_failed":
            params["status"] = "failed"
        return f"{base}/recipients", params

    samples: dict[str, list[float]] = {read: [] for read in READS}
    for i in range(WARMUP_REQUESTS + requests):
        for read in READS:
            path, params = request(read)
            started = time.perf_counter()
            response = await client.get(path, params=params)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"{read}: {response.status_code} {response.text[:300]}")
            if i >= WARMUP_REQUESTS:
                samples[read].append(elapsed)
    return samples


async def _run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    settings = harness.run_settings(data_dir)
    async with embedded.running(settings, broker=False) as settings:
        await migrate(settings)
        async with db.pool(settings.database_url, max_size=4) as pool:
            campaign_id = await _existing(pool, args.recipients)
            if campaign_id is None:
                campaign_id = await _generate(pool, args.recipients)
            else:
                harness.log(f"reusing campaign {campaign_id}")
            size = await pool.fetchval(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            )
            key = await create_account_key(pool, ACCOUNT_ID, "bench")
            app = create_app(pool=pool, config=ApiConfig(rate_limit_per_s=0))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://herald.bench", headers={"X-API-Key": key}
            ) as client:
                samples = await _time_reads(client, campaign_id, args.recipients, args.requests)
            lost = await _counters_lost(pool, campaign_id)
    result: dict[str, Any] = {"recipients": args.recipients, "requests": args.requests}
    for read in READS:
        result[f"{read}_p50_ms"] = _ms(samples[read], 0.50)
        result[f"{read}_p99_ms"] = _ms(samples[read], 0.99)
    harness.log(
        "details "
        + orjson.dumps(
            {
                "database_size": size,
                # The machine is shared: what else ran beside the timed requests.
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "mean_ms": {r: round(statistics.fmean(s) * 1000, 2) for r, s in samples.items()},
                "max_ms": {r: round(max(s) * 1000, 2) for r, s in samples.items()},
            }
        ).decode()
    )
    result["counters_lost"] = lost
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    with contextlib.ExitStack() as stack:
        if args.data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="herald-bench-reads-"))
            stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        else:
            data_dir = args.data_dir
        result = anyio.run(_run, args, data_dir)
    print(orjson.dumps(result).decode(), flush=True)
    slow = [r for r in READS if result[f"{r}_p99_ms"] >= P99_LIMIT_MS]
    if slow:
        print(f"p99 of {', '.join(slow)} at or above {P99_LIMIT_MS:.0f} ms", file=sys.stderr)
    return 1 if slow or result["counters_lost"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
