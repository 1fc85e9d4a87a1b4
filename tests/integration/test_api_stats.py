"""Statistics units over the API (issue 16, item 7): the account totals are the sums of the
per-channel figures (both count messages), and recipients are counted apart, under names that
say so. A fallback chain is what makes the two units differ: one recipient, two messages."""

from __future__ import annotations

import asyncpg

from tests.integration.api_support import Caller, data


async def _sent_campaign(caller: Caller, tag: str) -> str:
    for i in range(2):
        body = {"phone": f"+1415888{i:04d}", "first_name": f"S{i}", "tags": [tag]}
        data(await caller.post("/v1/contacts", body), 201)
    spec = {"name": "units", "channel": "sms", "body": "Hi", "tags": [tag]}
    cid: str = data(await caller.post("/v1/campaigns", spec), 201)["id"]
    data(await caller.post(f"/v1/campaigns/{cid}/send"), 202)
    return cid


async def test_account_totals_are_the_sum_of_the_channels(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    cid = await _sent_campaign(alice, "units")
    # Recipient 1: its SMS failed, its WhatsApp fallback was delivered (one recipient
    # delivered, two messages). Recipient 2: its SMS was delivered.
    await api_pool.execute(
        "UPDATE campaigns SET total_recipients = 2, sent = 2, delivered = 2, final = 2 "
        "WHERE id = $1",
        cid,
    )
    await api_pool.execute(
        "INSERT INTO campaign_channel_counters VALUES ($1, 'sms', 2, 1, 0, 1), "
        "($1, 'whatsapp', 1, 1, 0, 0)",
        cid,
    )

    totals = data(await alice.get("/v1/campaigns/stats"))
    channels = totals["channels"]
    assert channels == {
        "sms": {"sent": 2, "delivered": 1, "read": 0, "failed": 1},
        "whatsapp": {"sent": 1, "delivered": 1, "read": 0, "failed": 0},
    }
    for total, figure in [
        ("total_messages_sent", "sent"),
        ("total_delivered", "delivered"),
        ("total_read", "read"),
        ("total_failed", "failed"),
    ]:
        assert totals[total] == sum(c[figure] for c in channels.values()), total
    assert totals["delivery_rate"] == round(2 / 3, 4)
    assert totals["total_recipients"] == 2
    assert totals["recipients"] == {
        "total": 2,
        "sent": 2,
        "delivered": 2,
        "read": 0,
        "failed": 0,
        "skipped": 0,
        "cancelled": 0,
        "delivery_rate": 1.0,
    }

    sms_only = data(await alice.get("/v1/campaigns/stats", channel="sms"))
    assert list(sms_only["channels"]) == ["sms"]
    assert (sms_only["total_messages_sent"], sms_only["total_failed"]) == (2, 1)

    one = data(await alice.get(f"/v1/campaigns/{cid}/stats"))
    assert (one["sent"], one["delivered"], one["failed"]) == (2, 2, 0)
    assert one["messages"] == {"sent": 3, "delivered": 2, "read": 0, "failed": 1}
