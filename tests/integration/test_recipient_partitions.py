"""Recipients partitioned by campaign (0021) on the real PostgreSQL: a big campaign's rows in
their own partition, small ones in the DEFAULT partition, the pipeline's queries over both,
and an ended campaign's rows archived once its retention has passed (never a live one's)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import asyncpg

from herald.demo import campaign_event
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.scheduler import Scheduler
from herald.settings import Settings
from herald.store import attempts, campaigns, db, recipient_tables, recipients
from tests.integration.api_support import Caller, data, error


def _event(campaign_id: str, account: str, phones: int) -> dict[str, Any]:
    raw = campaign_event(campaign_id=campaign_id, account_id=account, mode=SendingMode.SMS, tags=[])
    raw["audience"] = (
        {"destinations": [f"+1415666{i:04d}" for i in range(phones)]}
        if phones
        else {"tags": ["nobody-has-this-tag"]}
    )
    return raw


async def _expand(pool: asyncpg.Pool, raw: dict[str, Any], *, partition_from: int) -> int:
    event = parse_campaign_confirmed(raw)
    assert await campaigns.insert(pool, event, raw)
    async with pool.acquire() as conn, conn.transaction():
        return await campaigns.expand(conn, event, partition_from=partition_from)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


async def _tables(pool: asyncpg.Pool, campaign_id: str) -> set[str]:
    rows = await pool.fetch(
        "SELECT DISTINCT tableoid::regclass::text AS t FROM recipients WHERE campaign_id = $1",
        campaign_id,
    )
    return {r["t"] for r in rows}


async def _end(pool: asyncpg.Pool, campaign_id: str, status: str, days_ago: float) -> None:
    await pool.execute(
        "UPDATE campaigns SET status = $2, completed_at = now() - $3 * interval '1 day' "
        "WHERE id = $1",
        campaign_id,
        status,
        days_ago,
    )


async def test_big_campaign_gets_its_own_partition_small_ones_share_the_default(
    pg_url: str,
) -> None:
    pool = await db.create_pool(pg_url)
    try:
        assert await _expand(pool, _event("big-1", "pa", 5), partition_from=5) == 5
        assert await _expand(pool, _event("small-1", "pa", 4), partition_from=5) == 4
        own = await pool.fetchval("SELECT herald_recipients_table('big-1')")
        assert await _tables(pool, "big-1") == {own}
        assert await recipient_tables.own_partition(pool, "big-1")
        assert await _tables(pool, "small-1") == {"recipients_default"}
        assert not await recipient_tables.own_partition(pool, "small-1")
        # The small campaign's load table went away with its rows moved.
        small_table = await pool.fetchval("SELECT herald_recipients_table('small-1')")
        assert await pool.fetchval("SELECT to_regclass($1)", small_table) is None
        # The partition is attached with the parent's indexes (no index of its own missing).
        indexes = await pool.fetchval(
            "SELECT count(*) FROM pg_index WHERE indrelid = $1::regclass", own
        )
        assert indexes == 4
        # The pipeline reads and writes both through the parent.
        chunk = await recipients.queued_chunk(pool, "big-1", 0, 5, 10)
        assert [r.id for r in chunk] == [1, 2, 3, 4, 5]
        page = await recipients.page(pool, "small-1", status=None, after_id=0, limit=10)
        assert [r["id"] for r in page] == [1, 2, 3, 4]
        await pool.execute(
            "UPDATE recipients SET status = 'failed' WHERE campaign_id = ANY ($1) AND id = 1",
            ["big-1", "small-1"],
        )
        failed = await pool.fetch(
            "SELECT campaign_id FROM recipients WHERE status = 'failed' "
            "AND campaign_id = ANY ($1) ORDER BY 1",
            ["big-1", "small-1"],
        )
        assert [r["campaign_id"] for r in failed] == ["big-1", "small-1"]
        # A second big campaign gets a partition of its own too, beside the first.
        assert await _expand(pool, _event("big-2", "pa", 6), partition_from=5) == 6
        partitions = await pool.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'recipients'::regclass"
        )
        assert partitions >= 3  # the DEFAULT one and one per big campaign
        assert await recipients.count(pool, "big-2", status="queued", up_to=100) == 6
    finally:
        await pool.close()


async def test_an_empty_audience_leaves_no_table_behind(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        assert await _expand(pool, _event("empty-1", "pe", 0), partition_from=1) == 0
        table = await pool.fetchval("SELECT herald_recipients_table('empty-1')")
        assert await pool.fetchval("SELECT to_regclass($1)", table) is None
        assert await campaigns.status_of(pool, "empty-1") == "completed"
    finally:
        await pool.close()


async def test_only_ended_campaigns_past_retention_are_archived(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        for cid, n in (("old-big", 5), ("old-small", 3), ("live-big", 5), ("recent", 3)):
            await _expand(pool, _event(cid, "pr", n), partition_from=5)
            ids = list(range(1, n + 1))
            await attempts.insert_pending(pool, cid, ids, [1] * n, "sms", "twilio")
        await _end(pool, "old-big", "completed", 40)
        await _end(pool, "old-small", "cancelled", 31)
        await _end(pool, "recent", "failed", 1)
        # A live campaign with an old completed_at (as an operator could leave it) is never
        # archived: only the ended statuses are.
        await pool.execute(
            "UPDATE campaigns SET completed_at = now() - interval '90 days' WHERE id = 'live-big'"
        )
        before = await campaigns.counters(pool, "old-big")
        cutoff = datetime.now(UTC) - timedelta(days=30)

        done = []
        while (one := await campaigns.archive_recipients(pool, cutoff)) is not None:
            done.append(one)
        big_table = await pool.fetchval("SELECT herald_recipients_table('old-big')")
        small_table = await pool.fetchval("SELECT herald_recipients_table('old-small')")
        # The oldest first.
        assert done == [
            ("old-big", f"archive.{big_table}"),
            ("old-small", f"archive.{small_table}"),
        ]

        for cid, table, n in (("old-big", big_table, 5), ("old-small", small_table, 3)):
            assert (
                await pool.fetchval("SELECT count(*) FROM recipients WHERE campaign_id = $1", cid)
                == 0
            )
            archived = await pool.fetch(f"SELECT campaign_id, id FROM archive.{table} ORDER BY id")
            assert [(r["campaign_id"], r["id"]) for r in archived] == [
                (cid, i) for i in range(1, n + 1)
            ]
            assert await recipient_tables.archived_at(pool, cid) is not None
            # Its attempt rows went with them.
            assert (
                await pool.fetchval("SELECT count(*) FROM attempts WHERE campaign_id = $1", cid)
                == 0
            )
            moved = await pool.fetch(
                f"SELECT campaign_id, recipient_id FROM archive.attempts_{_md5(cid)} "
                "ORDER BY recipient_id"
            )
            assert [(r["campaign_id"], r["recipient_id"]) for r in moved] == [
                (cid, i) for i in range(1, n + 1)
            ]
        # The big one's partition was detached, not copied: gone from the parent.
        assert not await recipient_tables.own_partition(pool, "old-big")
        assert await pool.fetchval("SELECT to_regclass($1)", f"public.{big_table}") is None
        # Counters stay.
        assert await campaigns.counters(pool, "old-big") == before

        for cid, n in (("live-big", 5), ("recent", 3)):
            assert (
                await pool.fetchval("SELECT count(*) FROM recipients WHERE campaign_id = $1", cid)
                == n
            )
            assert await recipient_tables.archived_at(pool, cid) is None
            assert (
                await pool.fetchval("SELECT count(*) FROM attempts WHERE campaign_id = $1", cid)
                == n
            )
        assert await recipient_tables.own_partition(pool, "live-big")
        # Nothing is archived twice.
        assert await campaigns.archive_recipients(pool, cutoff) is None
    finally:
        await pool.close()


async def test_the_api_answers_for_an_archived_campaign(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    raw = _event("arch-api", alice.account_id, 3)
    await _expand(api_pool, raw, partition_from=2)
    await api_pool.execute(
        "UPDATE campaigns SET status = 'completed', failed = 3, final = 3, "
        "completed_at = now() - interval '10 days' WHERE id = 'arch-api'"
    )
    listed = await alice.get("/v1/campaigns/arch-api/recipients")
    assert listed.status_code == 200 and len(data(listed)) == 3

    cutoff = datetime.now(UTC) - timedelta(days=7)
    assert await campaigns.archive_recipients(api_pool, cutoff) is not None

    detail = error(await alice.get("/v1/campaigns/arch-api/recipients"), 410, "recipients_archived")
    assert detail["field"] == "campaign_id" and "archived" in detail["message"]
    error(
        await alice.get("/v1/campaigns/arch-api/recipients", status="failed"),
        410,
        "recipients_archived",
    )
    got = data(await alice.get("/v1/campaigns/arch-api"))
    assert got["stats"]["total_recipients"] == 3 and got["stats"]["failed"] == 3
    error(await alice.post("/v1/campaigns/arch-api/retry-failed"), 410, "recipients_archived")


async def test_the_scheduler_archives_what_its_retention_says(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        await _expand(pool, _event("sched-old", "ps", 3), partition_from=3)
        await _expand(pool, _event("sched-new", "ps", 3), partition_from=3)
        await _end(pool, "sched-old", "completed", 3)
        await _end(pool, "sched-new", "completed", 1)
        # The archiver needs neither Kafka producer nor dead-letter topic.
        off = Scheduler(
            settings=Settings.development(database_url=pg_url),
            pool=pool,
            producer=None,  # type: ignore[arg-type]
            dead_letter=None,  # type: ignore[arg-type]
        )
        # Retention 0 (the default): the loop is not run at all, nothing is archived.
        with anyio.fail_after(5):
            await off.archive_forever(anyio.Event())
        assert await recipient_tables.archived_at(pool, "sched-old") is None

        on = Scheduler(
            settings=Settings.development(database_url=pg_url, recipients_retention_days=2),
            pool=pool,
            producer=None,  # type: ignore[arg-type]
            dead_letter=None,  # type: ignore[arg-type]
        )
        assert await on.archive() is True
        assert await on.archive() is False
        assert await recipient_tables.archived_at(pool, "sched-old") is not None
        assert await recipient_tables.archived_at(pool, "sched-new") is None
        assert (
            await pool.fetchval("SELECT count(*) FROM recipients WHERE campaign_id = 'sched-new'")
            == 3
        )
    finally:
        await pool.close()


async def test_the_phone_key_without_a_regex_matches_the_e164_pattern(pg_url: str) -> None:
    values = [
        "+1234567",
        "+123456",
        "+123456789012345",
        "+1234567890123456",
        "+12a4567",
        "12345678",
        "++1234567",
        "+1234567\n",
        " +1234567",
        "+١٢٣٤٥٦٧٨",
        "+",
        "",
        None,
    ]
    expression = campaigns.address_key(["sms"])
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            f"SELECT c.phone, {expression} AS key, "
            "CASE WHEN c.phone ~ '^\\+[0-9]{7,15}$' THEN c.phone END AS by_regex "
            "FROM unnest($1::text[]) AS c (phone)",
            values,
        )
    finally:
        await conn.close()
    assert [(r["phone"], r["key"]) for r in rows] == [(r["phone"], r["by_regex"]) for r in rows]
    assert [r["key"] for r in rows][:3] == ["+1234567", None, "+123456789012345"]
