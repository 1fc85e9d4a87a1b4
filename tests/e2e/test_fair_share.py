"""Fair sharing: one account's large, rate-limited campaign does not hold up the small
campaigns of other accounts whose work lands on the same partition (here every account
shares one partition). A batch hands its rest back to the end of the partition after
HERALD_WORKER_SLICE_S."""

from __future__ import annotations

import time
import uuid

import anyio

from herald.demo import FIRST_PHONE, campaign_event
from herald.domain.channels import SendingMode
from herald.settings import Settings
from herald.store import accounts, campaigns, contacts, db
from tests.pipeline import publish_event, running, wait_completed

BIG = 1_500
BIG_RATE_PER_S = 100.0
SMALL = 20
SMALL_ACCOUNTS = 3


async def test_a_slow_campaign_does_not_starve_other_accounts(settings: Settings) -> None:
    settings = settings.with_overrides(topic_partitions=1, worker_slice_s=1.0)
    async with db.pool(settings.database_url) as pool, running(settings):
        big_account, big = f"big-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
        await accounts.ensure(pool, big_account, "big", BIG_RATE_PER_S)
        await contacts.insert_synthetic(
            pool, account_id=big_account, count=BIG, first_phone=FIRST_PHONE, tag="big"
        )
        event = campaign_event(
            campaign_id=big, account_id=big_account, mode=SendingMode.SMS, tags=["big"]
        )
        event["batch_size"] = BIG  # one batch: before, it held the partition to its end
        await publish_event(settings, event)
        with anyio.fail_after(60):
            while (
                await pool.fetchval("SELECT count(*) FROM attempts WHERE campaign_id = $1", big)
                < 100
            ):
                await anyio.sleep(0.1)
        took: list[float] = []
        for n in range(SMALL_ACCOUNTS):
            account, small = f"small{n}-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
            await accounts.ensure(pool, account, "small", None)
            await contacts.insert_synthetic(
                pool, account_id=account, count=SMALL, first_phone=FIRST_PHONE, tag="s"
            )
            confirmed = time.monotonic()
            await publish_event(
                settings,
                campaign_event(
                    campaign_id=small, account_id=account, mode=SendingMode.SMS, tags=["s"]
                ),
            )
            counters = await wait_completed(pool, small, timeout_s=60)
            took.append(time.monotonic() - confirmed)
            assert counters.final == counters.total == SMALL
        # The big campaign alone needs 15 s at its rate; each small one is done long before.
        assert max(took) < 5.0, took
        big_now = await campaigns.counters(pool, big)
        assert big_now is not None and big_now.status == "sending"
        counters = await wait_completed(pool, big, timeout_s=120)
        assert counters.final == counters.total == BIG
        recount = await campaigns.recount(pool, big)
        for name in ("sent", "delivered", "failed", "skipped", "final"):
            assert recount[name] == getattr(counters, name), name
        # Handed back, never sent twice: one attempt per sendable recipient.
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM attempts WHERE campaign_id = $1 AND sends > 1", big
            )
            == 0
        )
