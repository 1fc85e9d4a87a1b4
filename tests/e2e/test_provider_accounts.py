"""Provider accounts per account and channel, in priority order: a provider account that
cannot be reached is drained to the next one, and every attempt names the provider account
that took it. Credentials come from HERALD_SECRET_* by reference, never from the table."""

from __future__ import annotations

import uuid

from herald.demo import FIRST_PHONE, campaign_event
from herald.domain.channels import SendingMode
from herald.embedded import free_port
from herald.settings import Secret, Settings
from herald.simulator.outcomes import expected_accepted
from herald.store import accounts, campaigns, contacts, db
from tests.pipeline import publish_event, running, wait_completed

RECIPIENTS = 400


async def test_a_dead_provider_account_drains_to_the_next(settings: Settings) -> None:
    settings = settings.with_overrides(
        secrets={"TWILIO_BACKUP": settings.twilio_auth_token, "UNUSED": Secret("x")}
    )
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    campaign_id = str(uuid.uuid4())
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: every send is refused
    async with db.pool(settings.database_url) as pool:
        await accounts.ensure(pool, account_id, "drain", None)
        await pool.execute(
            "INSERT INTO provider_accounts (account_id, channel, provider, label, priority,"
            " base_url, secret_ref, options) VALUES"
            " ($1, 'sms', 'twilio', 'twilio-primary', 1, $2, 'TWILIO_BACKUP', '{}'),"
            # The backup's own contract rate goes through its own token bucket too.
            " ($1, 'sms', 'twilio', 'twilio-backup', 2, $3, 'TWILIO_BACKUP',"
            "  '{\"rate_per_s\": 1000}'),"
            " ($1, 'sms', 'twilio', 'twilio-broken', 3, $3, 'NOT_SET', '{}')",
            account_id,
            dead,
            settings.simulator_url,
        )
        await contacts.insert_synthetic(
            pool, account_id=account_id, count=RECIPIENTS, first_phone=FIRST_PHONE + 1, tag="d"
        )
        async with running(settings):
            await publish_event(
                settings,
                campaign_event(
                    campaign_id=campaign_id, account_id=account_id, mode=SendingMode.SMS, tags=["d"]
                ),
            )
            counters = await wait_completed(pool, campaign_id, timeout_s=180)
        assert counters.final == RECIPIENTS
        used = {
            r["provider"]: r["n"]
            for r in await pool.fetch(
                "SELECT provider, count(*) AS n FROM attempts WHERE campaign_id = $1"
                " AND outcome = 'accepted' GROUP BY provider",
                campaign_id,
            )
        }
        # Every accepted send went through the backup; the dead primary took none, and no
        # recipient was lost to it: the sent count is exactly what the numbers imply.
        assert set(used) == {"twilio-backup"}
        phones = [f"+{FIRST_PHONE + 1 + g}" for g in range(RECIPIENTS)]
        assert counters.sent == used["twilio-backup"] == sum(map(expected_accepted, phones))
        recount = await campaigns.recount(pool, campaign_id)
        assert recount["final"] == RECIPIENTS
        # The secret's value never reached the table.
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM provider_accounts WHERE row_to_json(provider_accounts)::text"
                " LIKE '%' || $1 || '%'",
                settings.twilio_auth_token.value,
            )
            == 0
        )


async def test_a_campaign_sends_by_the_provider_account_it_chose(settings: Settings) -> None:
    settings = settings.with_overrides(secrets={"TWILIO_OWN": settings.twilio_auth_token})
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    campaign_id = str(uuid.uuid4())
    async with db.pool(settings.database_url) as pool:
        await accounts.ensure(pool, account_id, "chosen", None)
        await pool.execute(
            "INSERT INTO provider_accounts (account_id, channel, provider, label, priority,"
            " base_url, secret_ref, options) VALUES"
            " ($1, 'sms', 'twilio', 'twilio-first', 1, $2, 'TWILIO_OWN', '{}'),"
            " ($1, 'sms', 'twilio', 'twilio-chosen', 2, $2, 'TWILIO_OWN', '{}')",
            account_id,
            settings.simulator_url,
        )
        chosen = await pool.fetchval(
            "SELECT id::text FROM provider_accounts WHERE account_id = $1 AND label = $2",
            account_id,
            "twilio-chosen",
        )
        await contacts.insert_synthetic(
            pool, account_id=account_id, count=50, first_phone=FIRST_PHONE + 1, tag="c"
        )
        event = campaign_event(
            campaign_id=campaign_id, account_id=account_id, mode=SendingMode.SMS, tags=["c"]
        )
        # The account's first provider account in priority order is not the campaign's choice.
        event["provider_accounts"] = {"sms": chosen}
        async with running(settings):
            await publish_event(settings, event)
            counters = await wait_completed(pool, campaign_id, timeout_s=120)
        assert counters.final == 50
        used = {
            r["provider"]
            for r in await pool.fetch(
                "SELECT DISTINCT provider FROM attempts WHERE campaign_id = $1", campaign_id
            )
        }
        assert used == {"twilio-chosen"}
