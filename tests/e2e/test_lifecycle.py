"""Every campaign ends, through the whole pipeline: one whose sends are all refused ends
`failed` (not paused by its error budget forever), and a cancel marks the unsent recipients
cancelled at once whatever the batch pacing, with completed_at set."""

from __future__ import annotations

import uuid

import anyio
import asyncpg

from herald.demo import FIRST_PHONE, campaign_event
from herald.domain.channels import SendingMode
from herald.settings import Settings
from herald.store import accounts, campaigns, contacts, db, drafts
from tests.pipeline import publish_event, running, wait_completed

REFUSED = 150


def _refused_numbers(n: int) -> list[str]:
    # The simulator refuses numbers ending 95-97 with Twilio's 21211 (invalid To).
    return [f"+1415{i:05d}{95 + i % 3}" for i in range(n)]


async def test_a_campaign_whose_sends_all_fail_ends_failed(settings: Settings) -> None:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    campaign_id = str(uuid.uuid4())
    async with db.pool(settings.database_url) as pool, running(settings):
        await accounts.ensure(pool, account_id, "failing", 500.0)
        event = campaign_event(
            campaign_id=campaign_id, account_id=account_id, mode=SendingMode.SMS, tags=[]
        )
        event["audience"] = {"destinations": _refused_numbers(REFUSED)}
        event["content"]["sms"]["body"] = "20% off today."  # raw numbers have no first name
        await publish_event(settings, event)
        # The error budget may pause it (more than half of 100 sends failed) with sends
        # still to go, or only once they have all gone out: then nothing is left and it ends
        # at once. Held with sends to go, it is the operator's to resume, and it ends then.
        with anyio.fail_after(90):
            while (row := await campaigns.get(pool, campaign_id)) is None or (
                row["status"] not in ("failed", "paused")
            ):
                await anyio.sleep(0.2)
        if row["status"] == "paused":
            assert row["pause_reason"].startswith("error_budget")
            # (Or the fold ended it meanwhile: its last sends' answers were still coming in.)
            resumed = await campaigns.resume(pool, account_id, campaign_id)
            assert resumed or await campaigns.status_of(pool, campaign_id) == "failed"
        counters = await wait_completed(pool, campaign_id, timeout_s=90, status="failed")
        assert counters.total == counters.final == counters.failed == REFUSED
        assert counters.sent == 0
        row = await campaigns.get(pool, campaign_id)
        assert row is not None and row["completed_at"] is not None
        # Ended: nothing can move it any more.
        assert not await campaigns.resume(pool, account_id, campaign_id)


async def test_cancel_marks_every_unsent_recipient_at_once_whatever_the_pacing(
    settings: Settings,
) -> None:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    campaign_id = str(uuid.uuid4())
    total = 600
    async with db.pool(settings.database_url) as pool, running(settings):
        await accounts.ensure(pool, account_id, "paced", 200.0)
        await contacts.insert_synthetic(
            pool, account_id=account_id, count=total, first_phone=FIRST_PHONE + 1, tag="paced"
        )
        event = campaign_event(
            campaign_id=campaign_id, account_id=account_id, mode=SendingMode.SMS, tags=["paced"]
        )
        # One batch now, the next in an hour: without a cancel that marks them, the last
        # 400 recipients would stay queued for hours.
        event["batch_size"] = 200
        event["batch_delay_ms"] = 3_600_000
        await publish_event(settings, event)
        with anyio.fail_after(60):
            while not await pool.fetchval(
                "SELECT count(*) FROM attempts WHERE campaign_id = $1", campaign_id
            ):
                await anyio.sleep(0.05)
        assert await drafts.cancel(pool, account_id, campaign_id)
        row = await campaigns.get(pool, campaign_id)
        assert row is not None and row["status"] == "cancelled"
        assert row["completed_at"] is not None
        # The later batches' recipients are cancelled by the cancel itself.
        assert row["cancelled"] >= total - 200
        with anyio.fail_after(30):
            while (counters := await campaigns.counters(pool, campaign_id)) is None or (
                counters.final < total
            ):
                await anyio.sleep(0.2)
        recount = await campaigns.recount(pool, campaign_id)
        assert recount["final"] == counters.final == total
        assert recount["cancelled"] == counters.cancelled
        assert recount["sent"] == counters.sent
        assert await _attempts(pool, campaign_id) <= 200


async def _attempts(pool: asyncpg.Pool, campaign_id: str) -> int:
    n: int = await pool.fetchval(
        "SELECT count(*) FROM attempts WHERE campaign_id = $1", campaign_id
    )
    return n
