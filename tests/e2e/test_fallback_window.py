"""The fallback window: a channel that stays silent past the campaign's fallback_window_s hands
the recipient to the next channel. WhatsApp's late delivery is still recorded (and wins); RBM
messages are revoked first, and the chain goes on only because the revoke won."""

from __future__ import annotations

import uuid

import anyio
import asyncpg

from herald.demo import FIRST_PHONE, campaign_event
from herald.domain.channels import SendingMode
from herald.settings import Settings
from herald.store import accounts, campaigns, contacts, db
from tests.pipeline import publish_event, running, wait_completed

# Ten numbers ending 70..79: the simulator delivers them late (tens digit 7).
SLOW_FIRST = FIRST_PHONE + 70


async def _run(
    settings: Settings, mode: SendingMode
) -> tuple[campaigns.Counters, dict[str, dict[str, int]]]:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    campaign_id = str(uuid.uuid4())
    async with db.pool(settings.database_url) as pool:
        await accounts.ensure(pool, account_id, "window", None)
        await contacts.insert_synthetic(
            pool, account_id=account_id, count=10, first_phone=SLOW_FIRST, tag="slow"
        )
        event = campaign_event(
            campaign_id=campaign_id, account_id=account_id, mode=mode, tags=["slow"]
        )
        event["fallback_window_s"] = 1
        async with running(settings):
            await publish_event(settings, event)
            counters = await wait_completed(pool, campaign_id, timeout_s=60)
            # Slow numbers deliver late on every channel: some deliveries land after the
            # campaign completed (a recipient is final once any channel delivered).
            await wait_channel(pool, campaign_id, "sms", delivered=10)
            if mode is SendingMode.WHATSAPP_SMS:
                await wait_channel(pool, campaign_id, "whatsapp", delivered=6)
            # With a 1 s window even the last channel's window passes before these slow
            # numbers report: the campaign completes with them failed, and their late
            # deliveries then move them to delivered, counters and all.
            final = await campaigns.counters(pool, campaign_id)
            assert final is not None
            counters = final
        by_channel = await campaigns.channel_counters(pool, campaign_id)
        recount = await campaigns.recount(pool, campaign_id)
        assert recount["delivered"] == counters.delivered
        return counters, by_channel


async def wait_channel(
    pool: asyncpg.Pool, campaign_id: str, channel: str, *, delivered: int
) -> None:
    with anyio.fail_after(30):
        while True:
            got = await campaigns.channel_counters(pool, campaign_id)
            if got.get(channel, {}).get("delivered", 0) >= delivered:
                return
            await anyio.sleep(0.2)


async def test_whatsapp_window_then_late_delivery(settings: Settings) -> None:
    counters, by_channel = await _run(settings, SendingMode.WHATSAPP_SMS)
    assert counters.delivered == 10
    # Every recipient got its SMS: six because WhatsApp stayed silent past the window, four
    # because WhatsApp reported 131026. The six late WhatsApp deliveries are recorded too.
    assert by_channel["sms"] == {"sent": 10, "delivered": 10, "failed": 0}
    assert by_channel["whatsapp"] == {"sent": 10, "delivered": 6, "failed": 4}


async def test_rcs_window_revokes_then_falls_back(settings: Settings) -> None:
    counters, by_channel = await _run(settings, SendingMode.RCS_SMS)
    assert counters.delivered == 10
    # Six RCS-capable numbers were accepted, stayed silent, were revoked and went to SMS;
    # four are not RCS-capable (404) and went to SMS at once.
    assert by_channel["rcs"] == {"sent": 6, "delivered": 0, "failed": 10}
    assert by_channel["sms"] == {"sent": 10, "delivered": 10, "failed": 0}
