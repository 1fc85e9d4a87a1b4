"""Every process killed with SIGKILL, then a broker that comes back empty, at several points
of a WHATSAPP_RCS_SMS campaign: every recipient ends final, counters equal a recount.

An empty broker is what herald sees after losing Kafka's data: new topics, no consumer group
offsets, none of the batches, fallback work or status events in flight. It is made here by
restarting every role against a fresh topic prefix on the same broker. PostgreSQL keeps
everything; the reconciler puts back what was owed.
"""

from __future__ import annotations

import os
import signal
import uuid

import anyio
import asyncpg
import pytest

from herald.demo import FIRST_PHONE, campaign_event
from herald.domain.channels import SendingMode
from herald.domain.work import shares_for
from herald.process import ChildRole
from herald.settings import Settings
from herald.store import accounts, campaigns, contacts, db
from tests.faults.sizes import Scale
from tests.pipeline import publish_event, wait_completed

RATE_PER_S = 300.0


def _lossy(settings: Settings) -> Settings:
    return settings.with_overrides(
        kafka_session_timeout_ms=3_000,
        reconcile_interval_s=0.5,
        reconcile_after_s=3.0,
        worker_concurrency=32,
    )


async def _attempts(pool: asyncpg.Pool, campaign_id: str) -> int:
    n: int = await pool.fetchval(
        "SELECT count(*) FROM attempts WHERE campaign_id = $1", campaign_id
    )
    return n


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
async def test_kill_everything_and_lose_kafka(
    settings: Settings, scale: Scale, share: float
) -> None:
    """SIGKILL of every process and an empty broker mid-campaign."""
    settings = _lossy(settings)
    recipients = scale.recipients * 3
    account_id, campaign_id = f"acct-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    async with db.pool(settings.database_url) as pool:
        await accounts.ensure(pool, account_id, "loss", RATE_PER_S)
        await contacts.insert_synthetic(
            pool, account_id=account_id, count=recipients, first_phone=FIRST_PHONE, tag="loss"
        )
        event = campaign_event(
            campaign_id=campaign_id,
            account_id=account_id,
            mode=SendingMode.WHATSAPP_RCS_SMS,
            tags=["loss"],
        )
        event["batch_size"] = max(50, recipients // 6)
        event["fallback_window_s"] = 3
        first = ChildRole(settings, ["all"])
        first.start()
        try:
            await publish_event(settings, event)
            with anyio.fail_after(120):
                while await _attempts(pool, campaign_id) < share * recipients:
                    assert first.alive(), "herald run all exited by itself"
                    await anyio.sleep(0.05)
        finally:
            if first.pid is not None and first.alive():
                os.kill(first.pid, signal.SIGKILL)
            first.stop()
        # The broker comes back empty: every topic and consumer group is new.
        empty = settings.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
        second = ChildRole(empty, ["all"])
        second.start()
        try:
            counters = await wait_completed(pool, campaign_id, timeout_s=scale.settle_timeout_s)
        finally:
            second.stop()
        assert counters.total == counters.final == recipients
        recount = await campaigns.recount(pool, campaign_id)
        for name in ("sent", "delivered", "read", "failed", "skipped", "final"):
            assert recount[name] == getattr(counters, name), name
        # Each attempt sent at most twice (once more only when its answer died with the
        # process), and no more of them than the sends in flight at the kill and the attempt
        # rows written ahead of their sends: a few micro-batches for each batch being sent,
        # one for each of the account's sub-keys (each has a batch of the campaign).
        repeated = await pool.fetchval(
            "SELECT count(*) FROM attempts WHERE campaign_id = $1 AND sends > 1", campaign_id
        )
        shares = shares_for(settings.dispatch_subkeys, settings.topic_partitions)
        assert repeated <= 4 * settings.worker_concurrency * shares
        assert (
            await pool.fetchval(
                "SELECT max(sends) FROM attempts WHERE campaign_id = $1", campaign_id
            )
            <= 2
        )
