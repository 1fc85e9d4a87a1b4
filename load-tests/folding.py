"""The status role alone, folding a backlog: the `fold_events_per_s` of bench_e2e.py.

An expanded campaign with attempt rows is made by hand (no scheduler runs, so none of its
batches is published), its status events are published as the worker and the ingress write
them, and only then a status process starts; the rate is timed from the first fold seen to the
last event folded.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import aiohttp
import anyio
import cputime
import harness
import measures
import profiling

from herald.bus import codec
from herald.bus.producer import producer as kafka_producer
from herald.bus.topics import ensure_topics
from herald.constants import TOPIC_STATUS_EVENTS
from herald.demo import FIRST_PHONE
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.domain.status import RecipientStatus, StatusEvent, to_wire
from herald.settings import Settings
from herald.store import attempts, campaigns, db


def _message_id(recipient_id: int) -> str:
    return f"wamid.bench{recipient_id}"


def status_records(campaign_id: str, count: int, per_record: int) -> tuple[list[bytes], int, int]:
    """Status records for `count` recipients, as the worker and ingress write them: each
    recipient's `sent` (worker records of 500), then `delivered`, then `read` for every
    other one (ingress records of per_record). Returns records, events and reads."""
    now_ms = int(time.time() * 1000)

    def event(rid: int, status: RecipientStatus, source: str) -> dict[str, object]:
        return to_wire(
            StatusEvent(
                campaign_id=campaign_id,
                recipient_id=rid,
                attempt=1,
                channel="whatsapp",
                status=status,
                occurred_at_ms=now_ms,
                source=source,
                accepted=True,
                provider_message_id=_message_id(rid),
            )
        )

    def pack(events: list[dict[str, object]], size: int) -> list[bytes]:
        return [
            codec.encode({"v": 1, "events": events[i : i + size]})
            for i in range(0, len(events), size)
        ]

    ids = range(1, count + 1)
    sent = [event(r, RecipientStatus.SENT, "worker") for r in ids]
    delivered = [event(r, RecipientStatus.DELIVERED, "whatsapp") for r in ids]
    read = [event(r, RecipientStatus.READ, "whatsapp") for r in ids if r % 2 == 0]
    records = pack(sent, 500) + pack(delivered, per_record) + pack(read, per_record)
    return records, len(sent) + len(delivered) + len(read), len(read)


async def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    # Topics and consumer group of its own: the new status process joins an empty group at
    # once instead of waiting out the campaign phase's members.
    settings = settings.with_overrides(topic_prefix=f"fold-{uuid.uuid4().hex[:8]}.")
    await ensure_topics(settings)
    count = args.fold_recipients or min(args.recipients, 80_000)
    account_id = f"fold-{uuid.uuid4().hex[:8]}"
    campaign_id = str(uuid.uuid4())
    async with db.pool(settings.database_url, max_size=4) as pool:
        await harness.audience(
            pool,
            account_id=account_id,
            count=count,
            tag="fold",
            first_phone=FIRST_PHONE,
            rate_per_s=None,
        )
        raw = harness.confirmed(
            campaign_id=campaign_id,
            account_id=account_id,
            mode=SendingMode.WHATSAPP,
            tag="fold",
            batch_size=args.batch_size,
        )
        event = parse_campaign_confirmed(raw)
        # Expanded by hand: no scheduler runs, so no batch is ever published for it.
        await campaigns.insert(pool, event, raw)
        async with pool.acquire() as conn, conn.transaction():
            total = await campaigns.expand(conn, event)
        ids = list(range(1, total + 1))
        await attempts.insert_pending(pool, campaign_id, ids, [1] * total, "whatsapp", "whatsapp")
        # Each send's answer as the worker records it before publishing the `sent` event: the
        # provider's message id is on the attempt row before any status event is folded.
        await attempts.record_results(
            pool,
            campaign_id,
            [
                attempts.Result(
                    recipient_id=rid,
                    attempt_no=1,
                    provider="whatsapp",
                    outcome="accepted",
                    provider_message_id=_message_id(rid),
                    error_code=None,
                    error_description=None,
                )
                for rid in ids
            ],
        )
        records, events, reads = status_records(campaign_id, total, args.fold_record_events)
        async with kafka_producer(settings) as producer:
            topic = settings.topic(TOPIC_STATUS_EVENTS)
            for value in records:
                await producer.send(topic, value, key=codec.key(campaign_id))
            await producer.flush()
        harness.log(f"fold: {events} events in {len(records)} records published; folding")
        status = harness.Child(settings, ["status"]).start()
        spied = {"fold-status": status.pid}
        with harness.children(status), profiling.recording(spied, args.py_spy):
            t0 = s0 = None
            cpu_before: dict[int, cputime.ProcCpu] = {}
            roots: dict[int, str] = {}
            with anyio.fail_after(600):
                while True:
                    counters = await campaigns.counters(pool, campaign_id)
                    assert counters is not None
                    now = time.monotonic()
                    if t0 is None and counters.sent > 0:
                        t0, s0 = now, counters.sent
                        cpu_before = harness.cpu_snapshot()
                        roots = harness.cpu_roots(settings, cpu_before, {status.pid: "status"})
                    if counters.read >= reads:
                        t1 = now
                        cpu = harness.cpu_by_role(cpu_before, harness.cpu_snapshot(), roots)
                        break
                    await anyio.sleep(0.02)
            async with aiohttp.ClientSession() as http:
                text = await harness.scrape(http, status.metrics_port)
        # Exact, not only fast: the folded counters against a recount of the recipient rows,
        # and the channel's counters against what the events imply.
        recount = await campaigns.recount(pool, campaign_id)
        by_channel = await campaigns.channel_counters(pool, campaign_id)
    folded = {f: getattr(counters, f) for f in measures.COUNTER_FIELDS}
    expected_channel = {"sent": total, "delivered": total, "failed": 0}
    channel_lost = sum(
        abs(by_channel.get("whatsapp", {}).get(f, 0) - n) for f, n in expected_channel.items()
    )
    lost = measures.lost(expected_total=total, counters=folded, recount=recount) + channel_lost
    assert t0 is not None and s0 is not None
    folds = measures.histogram(text, "herald_fold_duration_seconds")
    # Events folded before the first sighting are the `sent` ones seen then (they come first).
    rate = (events - s0) / (t1 - t0) if t1 > t0 else float("inf")
    return {
        "fold_events": events,
        "fold_records": len(records),
        "fold_events_per_s": rate,
        "fold_transactions": int(folds.count),
        "fold_seconds_in_transactions": round(folds.sum, 3),
        "fold_status": counters.status,
        "fold_cpu_s": {k: v for k, v in cpu.items() if k in ("status", "postgres", "broker")},
        # The events fold_events_per_s and fold_cpu_s cover (from the first fold seen), and
        # the CPU per event of each process group over them.
        "fold_events_timed": events - s0,
        "fold_cpu_us_per_event": {
            k: round(v / max(1, events - s0) * 1e6, 2)
            for k, v in cpu.items()
            if k in ("status", "postgres", "broker")
        },
        "fold_lost": lost,
    }
