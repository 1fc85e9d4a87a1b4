"""PostgreSQL is the truth, Kafka the transport: work that Kafka lost is put back.

A campaign is expanded and its batches published while no worker runs; then every role
starts against a broker that has none of it (new topics and consumer groups: what a broker
that came back empty, a recreated topic or an offset reset looks like to herald). The
reconciler finds the batches published and never done, publishes them again, and the
campaign completes with exact counters. The store-level rules are checked one by one too.
"""

from __future__ import annotations

import uuid

import anyio

from herald.demo import campaign_event
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.settings import Settings
from herald.store import accounts, campaigns, db, reconcile
from tests.pipeline import publish_event, running, wait_completed

RECIPIENTS = 60


def _event(campaign_id: str, account_id: str) -> dict[str, object]:
    raw = campaign_event(
        campaign_id=campaign_id, account_id=account_id, mode=SendingMode.SMS, tags=[]
    )
    raw["audience"] = {"destinations": [f"+1415555{i:04d}" for i in range(RECIPIENTS)]}
    raw["batch_size"] = 25
    return raw


async def test_batches_kafka_lost_are_published_again(settings: Settings) -> None:
    account, cid = f"acct-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    async with db.pool(settings.database_url) as pool:
        await accounts.ensure(pool, account, "reconcile", None)
        async with running(settings, frozenset({"scheduler"})):
            await publish_event(settings, _event(cid, account))
            with anyio.fail_after(30):
                while (
                    await pool.fetchval(
                        "SELECT count(*) FROM batches WHERE campaign_id = $1"
                        " AND published_at IS NOT NULL",
                        cid,
                    )
                    < 3
                ):
                    await anyio.sleep(0.1)
        # The broker comes back empty: new topics, new groups, none of the batches.
        fresh = settings.with_overrides(
            topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
            reconcile_interval_s=0.5,
            reconcile_after_s=1.0,
        )
        async with running(fresh):
            counters = await wait_completed(pool, cid, timeout_s=90)
        assert counters.total == counters.final == RECIPIENTS
        recount = await campaigns.recount(pool, cid)
        for name, value in recount.items():
            assert getattr(counters, name, value) == value, name
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM batches WHERE campaign_id = $1 AND done_at IS NULL", cid
            )
            == 0
        )


async def test_each_rule_puts_back_only_what_is_owed(pg_url: str) -> None:
    async with db.pool(pg_url) as pool:
        await accounts.ensure(pool, "acme", "Acme", None)
        for cid, status in (("live", "sending"), ("held", "paused")):
            raw = _event(cid, "acme")
            event = parse_campaign_confirmed(raw)
            assert await campaigns.insert(pool, event, raw)
            async with pool.acquire() as conn, conn.transaction():
                await campaigns.expand(conn, event)
            await pool.execute("UPDATE campaigns SET status = $2 WHERE id = $1", cid, status)
        old = "now() - interval '10 minutes'"
        await pool.execute(f"UPDATE batches SET published_at = {old}")
        # live: batch 1 done, batch 2 still moving, batch 3 lost; held: paused, left alone.
        await pool.execute("UPDATE batches SET done_at = now() WHERE batch_no = 1")
        await reconcile.touch_batch(pool, "live", 2)
        await pool.execute(
            f"UPDATE recipients SET next_attempt = 2, fallback_published_at = {old}"
            " WHERE campaign_id = 'live' AND id <= 4"
        )
        await pool.execute(
            "UPDATE recipients SET next_attempt = 2, fallback_published_at = now()"
            " WHERE campaign_id = 'live' AND id = 5"
        )
        # Fallback work that was taken (its attempt 2 exists) or whose recipient ended is not
        # owed: putting it back would flood a slow worker with copies of its own backlog.
        await pool.execute(
            f"UPDATE recipients SET next_attempt = 2, fallback_published_at = {old}"
            " WHERE campaign_id = 'live' AND id IN (6, 7)"
        )
        await pool.execute(
            "INSERT INTO attempts (campaign_id, recipient_id, attempt_no, channel, provider)"
            " VALUES ('live', 6, 2, 'sms', 'twilio')"
        )
        await pool.execute(
            "UPDATE recipients SET status = 'delivered' WHERE campaign_id = 'live' AND id = 7"
        )
        # A campaign confirmed through the API whose event never reached the scheduler.
        raw = _event("drafted", "acme")
        await pool.execute(
            "INSERT INTO campaign_drafts (id, account_id, name, sending_mode, spec, event,"
            " confirmed_at) VALUES ('drafted', 'acme', 'd', 'SMS', '{}', $1::jsonb,"
            f" {old})",
            raw,
        )
        # A third campaign finished every batch, but its worker's status events were lost:
        # recipients 51 to 60 (batch 3) are still queued.
        raw = _event("stranded", "acme")
        event = parse_campaign_confirmed(raw)
        assert await campaigns.insert(pool, event, raw)
        async with pool.acquire() as conn, conn.transaction():
            await campaigns.expand(conn, event)
        await pool.execute(
            f"UPDATE batches SET published_at = {old}, done_at = {old}"
            " WHERE campaign_id = 'stranded'"
        )
        await pool.execute(
            "UPDATE recipients SET status = 'delivered' WHERE campaign_id = 'stranded' AND id <= 50"
        )
        await pool.execute(
            "UPDATE campaigns SET final = 50, status = 'sending' WHERE id = 'stranded'"
        )
        repaired = await reconcile.repair(pool, after_s=60)
        assert (repaired.batches, repaired.fallbacks, repaired.admitted) == (2, 4, 1)
        unpublished = await pool.fetch(
            "SELECT campaign_id, batch_no FROM batches WHERE published_at IS NULL"
        )
        assert sorted(tuple(r.values()) for r in unpublished) == [("live", 3), ("stranded", 3)]
        assert await pool.fetchval("SELECT status FROM campaigns WHERE id = 'drafted'") == (
            "scheduled"
        )
        again = await reconcile.repair(pool, after_s=60)
        assert again.total == 0
