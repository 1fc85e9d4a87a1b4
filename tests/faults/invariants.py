"""The invariants every fault scenario ends with, checked against PostgreSQL, Kafka and the
provider simulator once the pipeline has come to rest.

- every recipient ends in exactly one final state and every campaign completes;
- the campaign counters equal a recount from the recipient rows, and the per-channel
  counters a recount from the attempt rows;
- the simulator saw no channel's message twice beyond the ambiguous-send allowance (attempt
  rows whose send was repeated once, `sends > 1`);
- each recipient's path through its chain is the one the simulator's number outcomes imply
  (nothing dropped, fallback only by policy), when the scenario asks for it;
- nothing is left in parked_status_events;
- every dead-lettered record carries its reason, and only the expected records are there;
- every consumer group has committed every partition to its end: none stays blocked.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import anyio
import asyncpg

from herald.domain.channels import SendingMode, chain
from herald.settings import Settings
from herald.simulator.outcomes import expected_path
from herald.store import db
from tests.faults.ledger import Ledger
from tests.faults.offsets import GROUP_TOPICS, Offsets

FINAL_STATES: Final = ("delivered", "read", "failed", "skipped", "cancelled")
# At rest: no recipient or attempt row changed for this long. Once every recipient is final
# only read receipts (20 ms after delivery) can still change a row, unless a scenario says
# otherwise (a timed-out send's callbacks can come 3 s after it for a "slow" number).
QUIET_S: Final = 1.0
# Nothing moved at all for this long: the pipeline is stuck, check what it left.
STALL_S: Final = 12.0

# Invariant names, as the report shows them.
FINAL_ONCE: Final = "every recipient final exactly once"
RECOUNT: Final = "counters == recount from recipients"
CHANNEL_RECOUNT: Final = "channel counters == recount from attempts"
DUPLICATES: Final = "provider duplicates <= ambiguous allowance"
PATHS: Final = "paths match the numbers' outcomes"
PARKED: Final = "no parked callback left"
DLQ_REASON: Final = "every dead letter carries its reason"
DLQ_EXPECTED: Final = "dead letters are exactly the poison"
NOT_BLOCKED: Final = "no partition left blocked"
SURVIVED: Final = "herald roles kept running"


@dataclass(frozen=True, kw_only=True)
class Expect:
    """What a scenario's pipeline must end with."""

    campaign_ids: Sequence[str]
    # Campaign id -> its sending mode, for campaigns whose paths are compared with the
    # simulator's per-number outcomes.
    paths: Mapping[str, SendingMode] = field(default_factory=dict)
    # A retryable provider error may end a path after herald's bounded retries (5xx storm).
    gave_up_allowed: bool = False
    # Dead-letter reason prefix (before the first colon) -> how many records.
    dead_letters: Mapping[str, int] = field(default_factory=dict)
    groups: Sequence[str] = tuple(GROUP_TOPICS)
    simulator_url: str | None = None
    quiet_s: float = QUIET_S


async def simulator_stats(url: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/_simulator/stats", timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        resp.raise_for_status()
        body: dict[str, Any] = await resp.json()
        return body


async def _fetch(pool: asyncpg.Pool, query: str, *args: object) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(query, *args)
    return rows


async def _progress(pool: asyncpg.Pool, campaign_ids: Sequence[str]) -> asyncpg.Record:
    rows = await _fetch(
        pool,
        """
        SELECT
          (SELECT count(*) FROM campaigns WHERE id = ANY ($1::text[]) AND status <> 'completed')
            AS open_campaigns,
          (SELECT count(*) FROM campaigns WHERE id = ANY ($1::text[])) AS campaigns,
          (SELECT count(*) FROM parked_status_events) AS parked,
          (SELECT coalesce(sum(final), 0) FROM campaigns WHERE id = ANY ($1::text[])) AS final,
          (SELECT count(*) FROM attempts WHERE campaign_id = ANY ($1::text[])) AS attempts,
          extract(epoch FROM now() - greatest(
            (SELECT max(updated_at) FROM attempts WHERE campaign_id = ANY ($1::text[])),
            (SELECT max(updated_at) FROM recipients WHERE campaign_id = ANY ($1::text[])),
            (SELECT max(parked_at) FROM parked_status_events)))::float8 AS idle_s,
          (SELECT max(updated_at) FROM attempts WHERE campaign_id = ANY ($1::text[])) AS touched
        """,
        list(campaign_ids),
    )
    return rows[0]


async def settle(
    settings: Settings, pool: asyncpg.Pool, expect: Expect, timeout_s: float
) -> list[str]:
    """Wait until the pipeline is at rest; what still moves or waits when it gives up."""
    deadline = time.monotonic() + timeout_s
    last_move = time.monotonic()
    last_seen: tuple[object, ...] | None = None
    pending: list[str] = ["not checked yet"]
    async with Offsets(settings) as offsets:
        while time.monotonic() < deadline and time.monotonic() - last_move < STALL_S:
            try:
                row = await _progress(pool, expect.campaign_ids)
                lagging = await offsets.lagging(expect.groups)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                pending = [f"cannot look: {exc}"]
                await anyio.sleep(0.5)
                continue
            pending = []
            if row["campaigns"] < len(expect.campaign_ids):
                pending.append(f"{len(expect.campaign_ids) - row['campaigns']} campaigns unknown")
            if row["open_campaigns"]:
                pending.append(f"{row['open_campaigns']} campaigns not completed")
            if row["parked"]:
                pending.append(f"{row['parked']} parked callbacks")
            pending += lagging
            idle_s = row["idle_s"] if row["idle_s"] is not None else expect.quiet_s
            if not pending and idle_s >= expect.quiet_s:
                return []
            seen = (row["final"], row["attempts"], row["parked"], row["touched"], *lagging)
            if seen != last_seen:
                last_seen, last_move = seen, time.monotonic()
            await anyio.sleep(0.25)
    return pending


async def check(
    ledger: Ledger,
    settings: Settings,
    expect: Expect,
    timeout_s: float,
    crashes: Callable[[], Sequence[str]] | None = None,
) -> None:
    """Wait for rest, then record every invariant in the ledger (verify() fails the test).
    `crashes` tells, at the end, how the scenario's roles died if they ever did."""
    async with db.pool(settings.database_url, max_size=2) as pool:
        pending = await settle(settings, pool, expect, timeout_s)
        ids = list(expect.campaign_ids)
        await _final_once(ledger, pool, ids, pending)
        await _recount(ledger, pool, ids)
        await _channel_recount(ledger, pool, ids)
        if expect.simulator_url is not None:
            await _duplicates(ledger, pool, ids, expect.simulator_url)
        if expect.paths:
            await _paths(ledger, pool, expect)
        await _parked(ledger, pool)
    async with Offsets(settings) as offsets:
        await _dead_letters(ledger, offsets, expect)
        behind = await offsets.lagging(expect.groups)
        ledger.record(NOT_BLOCKED, not behind, "; ".join(behind[:6]))
    if crashes is not None:
        died = crashes()
        ledger.record(SURVIVED, not died, f"{len(died)} crashes: " + "; ".join(died[:3]))


async def _final_once(
    ledger: Ledger, pool: asyncpg.Pool, ids: list[str], pending: list[str]
) -> None:
    rows = await _fetch(
        pool,
        """
        SELECT c.id, c.status, c.total_recipients, c.final,
               c.delivered + c.failed + c.skipped + c.cancelled AS buckets,
               (SELECT count(*) FROM recipients r WHERE r.campaign_id = c.id) AS rows,
               (SELECT count(*) FROM recipients r WHERE r.campaign_id = c.id
                  AND r.status <> ALL ($2::text[])) AS open
        FROM campaigns c WHERE c.id = ANY ($1::text[])
        """,
        ids,
        list(FINAL_STATES),
    )
    problems = [f"campaign {i} never arrived" for i in set(ids) - {r["id"] for r in rows}]
    for r in rows:
        if r["status"] != "completed":
            problems.append(f"{r['id'][:12]} is {r['status']}")
        if r["open"]:
            problems.append(f"{r['id'][:12]}: {r['open']} recipients not final")
        if not r["rows"] == r["total_recipients"] == r["final"] == r["buckets"]:
            problems.append(
                f"{r['id'][:12]}: rows {r['rows']}, total {r['total_recipients']}, "
                f"final {r['final']}, delivered+failed+skipped+cancelled {r['buckets']}"
            )
    if problems and pending:
        problems.append("still waiting on: " + "; ".join(pending[:4]))
    ledger.record(FINAL_ONCE, not problems, "; ".join(problems[:6]))


_COUNTERS: Final = ("sent", "delivered", "read", "failed", "skipped", "cancelled", "final")


async def _recount(ledger: Ledger, pool: asyncpg.Pool, ids: list[str]) -> None:
    rows = await _fetch(
        pool,
        """
        SELECT c.id, c.sent, c.delivered, c.read, c.failed, c.skipped, c.cancelled, c.final,
               count(r.id) FILTER (WHERE r.accepted) AS r_sent,
               count(r.id) FILTER (WHERE r.status IN ('delivered', 'read')) AS r_delivered,
               count(r.id) FILTER (WHERE r.status = 'read') AS r_read,
               count(r.id) FILTER (WHERE r.status = 'failed') AS r_failed,
               count(r.id) FILTER (WHERE r.status = 'skipped') AS r_skipped,
               count(r.id) FILTER (WHERE r.status = 'cancelled') AS r_cancelled,
               count(r.id) FILTER (WHERE r.status = ANY ($2::text[])) AS r_final
        FROM campaigns c LEFT JOIN recipients r ON r.campaign_id = c.id
        WHERE c.id = ANY ($1::text[])
        GROUP BY c.id
        """,
        ids,
        list(FINAL_STATES),
    )
    problems = [
        f"{r['id'][:12]} {name}: counter {r[name]}, recount {r['r_' + name]}"
        for r in rows
        for name in _COUNTERS
        if r[name] != r["r_" + name]
    ]
    if not rows:
        problems.append("no campaign rows")
    ledger.record(RECOUNT, not problems, "; ".join(problems[:6]))


async def _channel_recount(ledger: Ledger, pool: asyncpg.Pool, ids: list[str]) -> None:
    counted = await _fetch(
        pool,
        """
        SELECT campaign_id, channel,
               count(*) FILTER (WHERE accepted) AS sent,
               count(*) FILTER (WHERE status IN ('delivered', 'read')) AS delivered,
               count(*) FILTER (WHERE status = 'read') AS read,
               count(*) FILTER (WHERE status = 'failed') AS failed
        FROM attempts WHERE campaign_id = ANY ($1::text[])
        GROUP BY campaign_id, channel
        """,
        ids,
    )
    folded = await _fetch(
        pool,
        """
        SELECT campaign_id, channel, sent, delivered, read, failed
        FROM campaign_channel_counters WHERE campaign_id = ANY ($1::text[])
        """,
        ids,
    )
    fields = ("sent", "delivered", "read", "failed")

    def table(rows: list[asyncpg.Record]) -> dict[tuple[str, str], tuple[int, ...]]:
        return {
            (r["campaign_id"], r["channel"]): tuple(r[f] for f in fields)
            for r in rows
            if any(r[f] for f in fields)
        }

    want, got = table(counted), table(folded)
    problems = [
        f"{key[0][:12]} {key[1]}: counters {got.get(key)}, recount {want.get(key)}"
        for key in sorted(set(want) | set(got))
        if want.get(key) != got.get(key)
    ]
    ledger.record(CHANNEL_RECOUNT, not problems, "; ".join(problems[:6]))


async def _duplicates(ledger: Ledger, pool: asyncpg.Pool, ids: list[str], url: str) -> None:
    try:
        stats = await simulator_stats(url)
    except (aiohttp.ClientError, TimeoutError) as exc:
        ledger.record(DUPLICATES, False, f"simulator stats unreadable: {exc}")
        return
    rows = await _fetch(
        pool,
        """
        SELECT channel, count(*) FILTER (WHERE sends > 1) AS repeated,
               count(*) FILTER (WHERE sends > 2) AS over
        FROM attempts WHERE campaign_id = ANY ($1::text[]) GROUP BY channel
        """,
        ids,
    )
    allowance = {r["channel"]: r["repeated"] for r in rows}
    problems = [f"{r['channel']}: {r['over']} attempts sent 3+ times" for r in rows if r["over"]]
    duplicates: dict[str, int] = stats.get("duplicates", {})
    for channel, seen in sorted(duplicates.items()):
        if seen > allowance.get(channel, 0):
            problems.append(
                f"{channel}: {seen} duplicate sends, allowance {allowance.get(channel, 0)}"
            )
    allowed = sum(allowance.values())
    detail = "; ".join(problems) or f"{sum(duplicates.values())} duplicates, allowance {allowed}"
    ledger.record(DUPLICATES, not problems, detail)


def _attempt_status(outcome: str, status: str) -> str:
    """An attempt row as expected_path names it: a synchronous refusal by its outcome, the
    rest by the state its callbacks folded to."""
    if outcome in ("rejected", "unreachable") and status not in ("delivered", "read"):
        return outcome
    return status


def _valid_phone(phone: str | None) -> bool:
    return bool(phone) and phone is not None and phone.startswith("+") and phone[1:].isdigit()


async def _paths(ledger: Ledger, pool: asyncpg.Pool, expect: Expect) -> None:
    problems: list[str] = []
    gave_up = 0
    for campaign_id, mode in expect.paths.items():
        recipients = await _fetch(
            pool,
            """
            SELECT r.id, r.phone, r.status, ct.first_name
            FROM recipients r LEFT JOIN contacts ct ON ct.id = r.contact_id
            WHERE r.campaign_id = $1 ORDER BY r.id
            """,
            campaign_id,
        )
        attempts: dict[int, list[asyncpg.Record]] = {}
        for a in await _fetch(
            pool,
            """
            SELECT recipient_id, attempt_no, channel, outcome, status, error_code
            FROM attempts WHERE campaign_id = $1 ORDER BY recipient_id, attempt_no
            """,
            campaign_id,
        ):
            attempts.setdefault(a["recipient_id"], []).append(a)
        for r in recipients:
            got = [
                (a["channel"], _attempt_status(a["outcome"], a["status"]))
                for a in attempts.get(r["id"], [])
            ]
            if not _valid_phone(r["phone"]) or r["first_name"] is None:
                if got or r["status"] != "skipped":
                    problems.append(f"#{r['id']} should be skipped: {r['status']} {got}")
                continue
            want = [(c.value, s) for c, s in expected_path(r["phone"], chain(mode))]
            final = want[-1][1] if want[-1][1] in ("delivered", "read") else "failed"
            if got == want and r["status"] == final:
                continue
            last = len(got) - 1
            if (
                expect.gave_up_allowed
                and got
                and got[:last] == want[:last]
                and got[last] == (want[last][0], "rejected")
                and r["status"] == "failed"
            ):
                gave_up += 1
                continue
            problems.append(f"#{r['id']} {r['phone']}: {r['status']} {got}, expected {want}")
    detail = f"{len(problems)} wrong: " + "; ".join(problems[:4]) if problems else ""
    if gave_up:
        detail = (detail + "; " if detail else "") + f"{gave_up} gave up after bounded retries"
    ledger.record(PATHS, not problems, detail)


async def _parked(ledger: Ledger, pool: asyncpg.Pool) -> None:
    rows = await _fetch(
        pool,
        """
        SELECT provider_message_id, extract(epoch FROM now() - parked_at)::int AS age_s
        FROM parked_status_events ORDER BY id LIMIT 5
        """,
    )
    detail = ", ".join(f"{r['provider_message_id']} ({r['age_s']} s)" for r in rows)
    ledger.record(PARKED, not rows, detail)


def reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


async def _dead_letters(ledger: Ledger, offsets: Offsets, expect: Expect) -> None:
    try:
        records = await offsets.dead_letters()
    except TimeoutError:
        ledger.record(DLQ_REASON, False, "the dead-letter topic could not be read to its end")
        return
    unreasoned = [r for r in records if not r.reason]
    unsourced = [r for r in records if r.source_topic and not r.has_source_position]
    ledger.record(
        DLQ_REASON,
        not unreasoned and not unsourced,
        f"{len(unreasoned)} without a reason, {len(unsourced)} without a source position"
        if unreasoned or unsourced
        else f"{len(records)} records",
    )
    kinds = Counter(reason_kind(r.reason or "") for r in records)
    want = Counter({k: v for k, v in expect.dead_letters.items() if v})
    extra = [f"{r.reason} (from {r.source_topic or 'parked'})" for r in records]
    detail = (
        ""
        if kinds == want
        else f"got {dict(kinds)}, want {dict(want)}: " + "; ".join(sorted(set(extra))[:4])
    )
    ledger.record(DLQ_EXPECTED, kinds == want, detail)
