"""Pause stops new sends within a second and resume finishes exactly; cancel stops for good
and marks the unsent recipients cancelled. Counters stay exact throughout."""

from __future__ import annotations

import uuid

import anyio
import asyncpg

from herald.demo import FIRST_PHONE, campaign_event
from herald.domain.campaign import Command
from herald.domain.channels import SendingMode
from herald.settings import Settings
from herald.store import accounts, campaigns, contacts, db, drafts
from tests.pipeline import publish_event, running, wait_completed

RECIPIENTS = 1_500
RATE_PER_S = 300.0


async def _owner(pool: asyncpg.Pool, campaign_id: str) -> str:
    account: str = await pool.fetchval(
        "SELECT account_id FROM campaigns WHERE id = $1", campaign_id
    )
    return account


async def _start(settings: Settings, pool: asyncpg.Pool, tag: str) -> str:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    campaign_id = str(uuid.uuid4())
    await accounts.ensure(pool, account_id, "control", RATE_PER_S)
    await contacts.insert_synthetic(
        pool, account_id=account_id, count=RECIPIENTS, first_phone=FIRST_PHONE + 1, tag=tag
    )
    event = campaign_event(
        campaign_id=campaign_id, account_id=account_id, mode=SendingMode.SMS, tags=[tag]
    )
    event["batch_size"] = 500
    await publish_event(settings, event)
    return campaign_id


async def _sent(pool: asyncpg.Pool, campaign_id: str) -> int:
    n: int = await pool.fetchval(
        "SELECT count(*) FROM attempts WHERE campaign_id = $1", campaign_id
    )
    return n


async def _wait_sent(pool: asyncpg.Pool, campaign_id: str, at_least: int) -> None:
    with anyio.fail_after(60):
        while await _sent(pool, campaign_id) < at_least:
            await anyio.sleep(0.05)


async def _sends_after_pause(pool: asyncpg.Pool, campaign_id: str) -> float:
    late = await pool.fetchval(
        "SELECT coalesce(max(extract(epoch FROM a.created_at - c.paused_at)), 0) "
        "FROM attempts a JOIN campaigns c ON c.id = a.campaign_id "
        "WHERE a.campaign_id = $1 AND a.created_at > c.paused_at",
        campaign_id,
    )
    return float(late)


async def test_pause_then_resume_finishes_exactly(settings: Settings) -> None:
    async with db.pool(settings.database_url) as pool, running(settings):
        campaign_id = await _start(settings, pool, "pause")
        await _wait_sent(pool, campaign_id, 200)
        assert await campaigns.transition(
            pool,
            Command.PAUSE,
            [campaign_id],
            account_id=await _owner(pool, campaign_id),
            pause_reason="operator",
        )
        await anyio.sleep(1.5)
        assert await _sends_after_pause(pool, campaign_id) <= 1.0
        frozen = await _sent(pool, campaign_id)
        await anyio.sleep(1.0)
        assert await _sent(pool, campaign_id) == frozen  # nothing moves while paused
        assert frozen < RECIPIENTS
        assert await campaigns.resume(pool, await _owner(pool, campaign_id), campaign_id)
        counters = await wait_completed(pool, campaign_id, timeout_s=120)
        recount = await campaigns.recount(pool, campaign_id)
        assert counters.final == counters.total == RECIPIENTS
        assert recount["final"] == RECIPIENTS
        assert recount["sent"] == counters.sent
        # Every sendable recipient was sent once: no attempt lost or repeated by the pause.
        repeats = await pool.fetchval(
            "SELECT count(*) FROM attempts WHERE campaign_id = $1 AND sends > 1", campaign_id
        )
        assert repeats == 0
        assert await _sent(pool, campaign_id) == RECIPIENTS - counters.skipped


async def test_cancel_marks_the_rest_cancelled(settings: Settings) -> None:
    async with db.pool(settings.database_url) as pool, running(settings):
        campaign_id = await _start(settings, pool, "cancel")
        await _wait_sent(pool, campaign_id, 200)
        assert await drafts.cancel(pool, await _owner(pool, campaign_id), campaign_id)
        cancelled_at = await pool.fetchval("SELECT now()")
        with anyio.fail_after(60):
            while True:
                counters = await campaigns.counters(pool, campaign_id)
                assert counters is not None
                if counters.final == RECIPIENTS:
                    break
                await anyio.sleep(0.2)
        assert counters.status == "cancelled"
        assert counters.cancelled > 0
        assert counters.delivered + counters.failed + counters.skipped + counters.cancelled == (
            RECIPIENTS
        )
        recount = await campaigns.recount(pool, campaign_id)
        assert recount["cancelled"] == counters.cancelled
        assert recount["delivered"] == counters.delivered
        late = await pool.fetchval(
            "SELECT count(*) FROM attempts "
            "WHERE campaign_id = $1 AND created_at > $2::timestamptz + interval '1 second'",
            campaign_id,
            cancelled_at,
        )
        assert late == 0
        # A cancelled campaign cannot be resumed.
        assert not await campaigns.resume(pool, await _owner(pool, campaign_id), campaign_id)
