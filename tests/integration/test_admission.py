"""Upstream campaign.confirmed events meet accounts: campaign identity is (account, id), and
events for accounts herald has never heard of are dead-lettered unless told otherwise."""

from __future__ import annotations

import uuid

from herald.demo import campaign_event
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.settings import Settings
from herald.store import accounts, campaigns, db
from herald.store.campaigns import Admission
from tests.pipeline import dead_letters, publish_event, running


def _event(campaign_id: str, account_id: str) -> dict[str, object]:
    raw = campaign_event(
        campaign_id=campaign_id, account_id=account_id, mode=SendingMode.SMS, tags=[]
    )
    raw["audience"] = {"destinations": ["+14155550100"]}
    return raw


async def test_admission_table(pg_url: str) -> None:
    async with db.pool(pg_url) as pool:
        await accounts.ensure(pool, "acme", "Acme", None)
        await accounts.ensure(pool, "dev", "Dev", None)
        await pool.execute(
            "INSERT INTO campaign_drafts (id, account_id, name, sending_mode, spec)"
            " VALUES ('dev-draft', 'dev', 'd', 'SMS', '{}')"
        )

        async def admit(cid: str, account: str, create: bool = False) -> Admission:
            raw = _event(cid, account)
            event = parse_campaign_confirmed(raw)
            return await campaigns.admit(pool, event, raw, create_accounts=create)

        assert await admit("c1", "acme") is Admission.INSERTED
        assert await admit("c1", "acme") is Admission.REPLAY
        assert await admit("c1", "other") is Admission.UNKNOWN_ACCOUNT
        assert await admit("c1", "other", create=True) is Admission.ID_TAKEN
        assert await admit("dev-draft", "acme") is Admission.ID_TAKEN
        assert await admit("c2", "newcomer") is Admission.UNKNOWN_ACCOUNT
        assert await admit("c2", "newcomer", create=True) is Admission.INSERTED
        owners = dict(await pool.fetch("SELECT id, account_id FROM campaigns ORDER BY id"))
        assert owners == {"c1": "acme", "c2": "newcomer"}


async def test_the_scheduler_dead_letters_what_it_refuses(settings: Settings) -> None:
    settings = settings.with_overrides(accounts_create_on_first_event=False)
    taken = str(uuid.uuid4())
    async with db.pool(settings.database_url) as pool:
        await accounts.ensure(pool, "acme", "Acme", None)
        await accounts.ensure(pool, "other", "Other", None)
        raw = _event(taken, "acme")
        await campaigns.insert(pool, parse_campaign_confirmed(raw), raw)
        async with running(settings, frozenset({"scheduler"})):
            await publish_event(settings, _event(str(uuid.uuid4()), "stranger"))
            await publish_event(settings, _event(taken, "other"))
            reasons = await dead_letters(settings, expected=2)
        assert sorted(r.split(":")[0] for r in reasons) == ["campaign_id_taken", "unknown_account"]
        assert (
            await pool.fetchval("SELECT account_id FROM campaigns WHERE id = $1", taken) == "acme"
        )
