"""The campaign lifecycle on the real PostgreSQL: the status column holds only the table's
statuses, a resume keeps the batch pacing, a resume with nothing pending ends the campaign,
a pause before expansion holds it, and the goal estimate counts what expansion creates."""

from __future__ import annotations

import uuid
from datetime import timedelta
from itertools import pairwise
from typing import Any

import asyncpg
import pytest

from herald.demo import campaign_event
from herald.domain.campaign import PIPELINE, CampaignStatus, Command
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.domain.work import BatchRange, batch_ranges
from herald.store import accounts, campaigns, db, drafts


async def _campaign(
    pool: asyncpg.Pool,
    *,
    recipients: int,
    batch_size: int,
    batch_delay_ms: int = 0,
    status: CampaignStatus = CampaignStatus.SCHEDULED,
    expand: bool = True,
    parts: int = 1,
) -> tuple[str, str]:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    campaign_id = str(uuid.uuid4())
    await accounts.ensure(pool, account, "A", None)
    raw: dict[str, Any] = campaign_event(
        campaign_id=campaign_id, account_id=account, mode=SendingMode.SMS, tags=[]
    )
    raw["audience"] = {"destinations": [f"+1415{i:07d}" for i in range(recipients)]}
    raw["batch_size"] = batch_size
    raw["batch_delay_ms"] = batch_delay_ms
    event = parse_campaign_confirmed(raw)
    assert await campaigns.insert(pool, event, raw, status=status)
    if expand:
        async with pool.acquire() as conn, conn.transaction():
            assert await campaigns.expand(conn, event, parts=parts) == recipients
    return account, campaign_id


@pytest.fixture
async def pool(pg_url: str) -> Any:
    created = await db.create_pool(pg_url)
    try:
        yield created
    finally:
        await created.close()


async def test_the_status_column_takes_only_the_lifecycle_statuses(pool: asyncpg.Pool) -> None:
    _, campaign_id = await _campaign(pool, recipients=1, batch_size=1)
    for status in PIPELINE:
        await pool.execute("UPDATE campaigns SET status = $2 WHERE id = $1", campaign_id, status)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE campaigns SET status = 'done' WHERE id = $1", campaign_id)
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE campaigns SET status = 'draft' WHERE id = $1", campaign_id)


async def test_a_resume_keeps_the_pacing_between_every_two_batches(pool: asyncpg.Pool) -> None:
    delay_ms = 2_500
    account, campaign_id = await _campaign(
        pool, recipients=60, batch_size=10, batch_delay_ms=delay_ms
    )
    # Batch 1 done; 2 and 3 came due while the campaign was paused (their not_before passed).
    await pool.execute(
        "UPDATE batches SET not_before = now() - interval '1 hour', "
        "published_at = now() - interval '1 hour' WHERE campaign_id = $1 AND batch_no <= 3",
        campaign_id,
    )
    await pool.execute(
        "UPDATE batches SET done_at = now() WHERE campaign_id = $1 AND batch_no = 1", campaign_id
    )
    assert await drafts.pause(pool, account, campaign_id, "hold")
    assert await drafts.resume(pool, account, campaign_id)
    rows = await pool.fetch(
        "SELECT batch_no, not_before, published_at, now() AS now FROM batches "
        "WHERE campaign_id = $1 AND done_at IS NULL ORDER BY batch_no",
        campaign_id,
    )
    assert [r["batch_no"] for r in rows] == [2, 3, 4, 5, 6]
    assert all(r["published_at"] is None for r in rows)
    assert rows[0]["not_before"] <= rows[0]["now"]  # the first goes at once
    gaps = [b["not_before"] - a["not_before"] for a, b in pairwise(rows)]
    assert all(gap >= timedelta(milliseconds=delay_ms) for gap in gaps), gaps


@pytest.mark.parametrize(
    ("recipients", "batch_size", "parts"), [(60, 10, 4), (250, 100, 4), (7, 4, 2), (2, 100, 4)]
)
async def test_expansion_cuts_each_range_over_the_sub_keys(
    pool: asyncpg.Pool, recipients: int, batch_size: int, parts: int
) -> None:
    _, campaign_id = await _campaign(
        pool, recipients=recipients, batch_size=batch_size, batch_delay_ms=1_000, parts=parts
    )
    rows = await pool.fetch(
        "SELECT batch_no, first_id, last_id, not_before FROM batches WHERE campaign_id = $1 "
        "ORDER BY batch_no",
        campaign_id,
    )
    # The SQL and the pure description (which the scheduler's metrics use) agree.
    assert [
        BatchRange(batch_no=r["batch_no"], first_id=r["first_id"], last_id=r["last_id"])
        for r in rows
    ] == batch_ranges(recipients, batch_size, parts)
    # The batches of one range are due together, each next range batch_delay_ms later.
    due = {(r["first_id"] - 1) // batch_size: r["not_before"] for r in rows}
    for r in rows:
        assert r["not_before"] == due[(r["first_id"] - 1) // batch_size]
    assert all(b - a == timedelta(seconds=1) for a, b in pairwise(due.values()))


async def test_a_resume_keeps_the_batches_of_a_range_together(pool: asyncpg.Pool) -> None:
    delay_ms = 2_500
    account, campaign_id = await _campaign(
        pool, recipients=40, batch_size=10, batch_delay_ms=delay_ms, parts=2
    )
    # Range 1 (batches 1, 2) done; range 2 came due while paused.
    await pool.execute(
        "UPDATE batches SET not_before = now() - interval '1 hour', "
        "published_at = now() - interval '1 hour' WHERE campaign_id = $1 AND batch_no <= 4",
        campaign_id,
    )
    await pool.execute(
        "UPDATE batches SET done_at = now() WHERE campaign_id = $1 AND batch_no <= 2", campaign_id
    )
    assert await drafts.pause(pool, account, campaign_id, "hold")
    assert await drafts.resume(pool, account, campaign_id)
    rows = await pool.fetch(
        "SELECT batch_no, not_before, now() AS now FROM batches "
        "WHERE campaign_id = $1 AND done_at IS NULL ORDER BY batch_no",
        campaign_id,
    )
    assert [r["batch_no"] for r in rows] == [3, 4, 5, 6, 7, 8]
    due = [r["not_before"] for r in rows]
    assert due[0] <= rows[0]["now"] and due[0] == due[1]  # range 2 goes at once, whole
    assert due[2] == due[3] and due[4] == due[5]
    assert due[2] - due[0] >= timedelta(milliseconds=delay_ms)
    assert due[4] - due[2] >= timedelta(milliseconds=delay_ms)


async def test_a_resume_with_nothing_pending_ends_the_campaign(pool: asyncpg.Pool) -> None:
    account, campaign_id = await _campaign(pool, recipients=3, batch_size=10)
    assert await drafts.pause(pool, account, campaign_id, None)
    # Every recipient ended while paused (callbacks of sends already out), all refused.
    await pool.execute(
        "UPDATE recipients SET status = 'failed' WHERE campaign_id = $1", campaign_id
    )
    await pool.execute("UPDATE campaigns SET failed = 3, final = 3 WHERE id = $1", campaign_id)
    assert await drafts.resume(pool, account, campaign_id)
    row = await campaigns.get(pool, campaign_id)
    assert row is not None
    assert row["status"] == "failed" and row["completed_at"] is not None


async def test_the_fold_ends_a_paused_campaign_whose_recipients_are_all_final(
    pool: asyncpg.Pool,
) -> None:
    account, campaign_id = await _campaign(pool, recipients=2, batch_size=10)
    assert await campaigns.transition(
        pool, Command.PAUSE_FOR_BUDGET, [campaign_id], account_id=account, pause_reason="budget"
    )
    await pool.execute(
        "UPDATE campaigns SET sent = 1, delivered = 1, failed = 1, final = 2 WHERE id = $1",
        campaign_id,
    )
    async with pool.acquire() as conn, conn.transaction():
        assert await campaigns.finish(conn, [campaign_id]) == {campaign_id: "completed"}
    assert await campaigns.status_of(pool, campaign_id) == "completed"


async def test_a_campaign_paused_before_expansion_waits_for_its_resume(pool: asyncpg.Pool) -> None:
    account, campaign_id = await _campaign(
        pool, recipients=2, batch_size=10, status=CampaignStatus.SENDING, expand=False
    )

    async def claimable() -> bool:
        async with pool.acquire() as conn, conn.transaction():
            claimed = []
            while (row := await campaigns.claim_due(conn)) is not None:
                claimed.append(row["id"])
                if row["id"] == campaign_id:
                    break
                # Lock it and look further: FOR UPDATE SKIP LOCKED in a fresh transaction
                # would see it again, so exclude what this one already holds.
                await conn.execute(
                    "UPDATE campaigns SET expanded_at = expanded_at WHERE id = $1", row["id"]
                )
                if len(claimed) > 50:
                    break
            return campaign_id in claimed

    assert await drafts.pause(pool, account, campaign_id, "hold")
    assert await campaigns.status_of(pool, campaign_id) == "paused"
    assert not await claimable()
    assert await drafts.resume(pool, account, campaign_id)
    assert await campaigns.status_of(pool, campaign_id) == "sending"
    assert await claimable()


async def test_send_now_starts_a_scheduled_campaign(pool: asyncpg.Pool) -> None:
    account, campaign_id = await _campaign(pool, recipients=2, batch_size=10, expand=False)
    await pool.execute(
        "UPDATE campaigns SET scheduled_at = now() + interval '1 day' WHERE id = $1", campaign_id
    )
    assert await drafts.start_now(pool, account, campaign_id)
    row = await campaigns.get(pool, campaign_id)
    assert row is not None and row["status"] == "sending" and row["started_at"] is not None
    # Only a scheduled campaign can be sent now, and only by its own account.
    assert not await drafts.start_now(pool, account, campaign_id)
    other, scheduled = await _campaign(pool, recipients=1, batch_size=1, expand=False)
    assert not await drafts.start_now(pool, account, scheduled)
    assert await campaigns.status_of(pool, scheduled) == "scheduled"
    assert other != account
