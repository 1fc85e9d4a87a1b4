"""A 2,000-recipient campaign through every role on the embedded services, with the exact
counters that the simulator's deterministic outcomes imply."""

from __future__ import annotations

import uuid

import pytest

from herald.bus import codec
from herald.constants import (
    TOPIC_CAMPAIGN_EVENTS,
    TOPIC_DISPATCH_BATCHES,
    TOPIC_STATUS_EVENTS,
)
from herald.demo import BAD_PHONE_EVERY, FIRST_PHONE, NAMELESS_EVERY, campaign_event
from herald.domain.channels import SendingMode
from herald.domain.work import batch_ranges, shares_for
from herald.settings import Settings
from herald.simulator.outcomes import expected_accepted, expected_final
from herald.store import accounts, campaigns, contacts, db
from tests.pipeline import dead_letters, publish, publish_event, running, wait_completed

RECIPIENTS = 2_000


def expected_counters(n: int) -> dict[str, int]:
    counts = {"sent": 0, "delivered": 0, "failed": 0, "skipped": 0}
    for g in range(n):
        if g % BAD_PHONE_EVERY == 0 or g % NAMELESS_EVERY == 0:
            counts["skipped"] += 1
            continue
        phone = f"+{FIRST_PHONE + g}"
        counts["sent"] += int(expected_accepted(phone))
        counts[expected_final(phone)] += 1
    return counts


@pytest.mark.parametrize("batch_size", [700])
async def test_campaign_counts_exactly(settings: Settings, batch_size: int) -> None:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    campaign_id = str(uuid.uuid4())
    event = campaign_event(
        campaign_id=campaign_id, account_id=account_id, mode=SendingMode.SMS, tags=["e2e"]
    )
    event["batch_size"] = batch_size
    async with db.pool(settings.database_url) as pool:
        await accounts.ensure(pool, account_id, "e2e", None)
        await contacts.insert_synthetic(
            pool,
            account_id=account_id,
            count=RECIPIENTS,
            first_phone=FIRST_PHONE,
            tag="e2e",
            nameless_every=NAMELESS_EVERY,
            bad_phone_every=BAD_PHONE_EVERY,
        )
        async with running(settings):
            await publish_event(settings, event)
            # A replay of the same event is deduplicated by campaign id.
            await publish_event(settings, event)
            # Poison on every topic: dead-lettered with a reason, the pipeline carries on.
            await publish(settings, TOPIC_CAMPAIGN_EVENTS, [b"{not json", codec.encode({"x": 1})])
            await publish(settings, TOPIC_DISPATCH_BATCHES, [codec.encode({"v": 1})])
            await publish(settings, TOPIC_STATUS_EVENTS, [codec.encode({"events": [{"c": 1}]})])
            counters = await wait_completed(pool, campaign_id)
            reasons = await dead_letters(settings, expected=4)

        expected = expected_counters(RECIPIENTS)
        assert counters.total == RECIPIENTS
        assert counters.skipped == expected["skipped"]
        assert counters.delivered == expected["delivered"]
        assert counters.failed == expected["failed"]
        assert counters.sent == expected["sent"]
        assert counters.final == RECIPIENTS
        recount = await campaigns.recount(pool, campaign_id)
        assert recount == {
            "sent": counters.sent,
            "delivered": counters.delivered,
            "read": counters.read,
            "failed": counters.failed,
            "skipped": counters.skipped,
            "cancelled": 0,
            "final": counters.final,
            "total": RECIPIENTS,
        }
        by_channel = await campaigns.channel_counters(pool, campaign_id)
        assert by_channel == {
            "sms": {
                "sent": expected["sent"],
                "delivered": expected["delivered"],
                "failed": expected["failed"],
            }
        }
        # One attempt per sendable recipient, each sent once.
        sends = await pool.fetchrow(
            "SELECT count(*) AS n, max(sends) AS most FROM attempts WHERE campaign_id = $1",
            campaign_id,
        )
        assert sends is not None
        assert sends["n"] == RECIPIENTS - expected["skipped"]
        assert sends["most"] == 1
        batches = await pool.fetchval(
            "SELECT count(*) FROM batches WHERE campaign_id = $1 AND done_at IS NOT NULL",
            campaign_id,
        )
        # Each batch_size range is cut over the account's sub-keys (one unless set).
        shares = shares_for(settings.dispatch_subkeys, settings.topic_partitions)
        assert batches == len(batch_ranges(RECIPIENTS, batch_size, shares))
        assert batches == -(-RECIPIENTS // batch_size) * shares
        skip_reasons = {
            r["error_code"]: r["n"]
            for r in await pool.fetch(
                "SELECT error_code, count(*) AS n FROM recipients "
                "WHERE campaign_id = $1 AND status = 'skipped' GROUP BY error_code",
                campaign_id,
            )
        }
        assert skip_reasons == {"invalid_phone": 2, "missing_variable": 2}
    assert sorted(r.split(":")[0] for r in reasons) == [
        "invalid_batch",
        "invalid_event",
        "invalid_event",
        "invalid_status",
    ]


async def test_unknown_version_and_mode_are_dead_lettered(settings: Settings) -> None:
    event = campaign_event(campaign_id="c-v2", account_id="a", mode=SendingMode.SMS, tags=["x"])
    wrong_version = {**event, "version": 2}
    wrong_mode = {**event, "campaign_id": "c-mode", "sending_mode": "CARRIER_PIGEON"}
    async with running(settings, frozenset({"scheduler"})):
        await publish_event(settings, wrong_version)
        await publish_event(settings, wrong_mode)
        reasons = await dead_letters(settings, expected=2)
    assert any("version" in r for r in reasons)
    assert any("sending_mode" in r for r in reasons)
    async with db.pool(settings.database_url) as pool:
        assert await pool.fetchval("SELECT count(*) FROM campaigns") == 0
