"""An A/B test and a retry of its failed recipients through every role: each recipient gets
its variant's content, per-variant outcomes are exact, and the retry reaches exactly the
recipients that failed."""

from __future__ import annotations

import uuid

from herald.demo import FIRST_PHONE, campaign_event
from herald.domain.channels import SendingMode
from herald.domain.events import variant_of
from herald.settings import Settings
from herald.simulator.outcomes import expected_accepted, expected_final
from herald.store import accounts, campaigns, contacts, db, drafts
from tests.pipeline import publish_event, running, wait_completed

RECIPIENTS = 400


async def test_ab_variants_then_retry_failed(settings: Settings) -> None:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    first_id, retry_id = str(uuid.uuid4()), str(uuid.uuid4())
    event = campaign_event(
        campaign_id=first_id, account_id=account_id, mode=SendingMode.SMS, tags=["ab"]
    )
    sms = event["content"]["sms"]
    # Variant B names a variable no contact has: its recipients are skipped, which shows the
    # worker composed each recipient from its own variant.
    event["variants"] = [
        {"name": "A", "weight": 70, "content": {"sms": {**sms, "body": "Hi {{first_name}}"}}},
        {"name": "B", "weight": 30, "content": {"sms": {**sms, "body": "Hi {{nickname}}"}}},
    ]
    starts = [0, 70]
    async with db.pool(settings.database_url) as pool:
        await accounts.ensure(pool, account_id, "ab", None)
        await contacts.insert_synthetic(
            pool,
            account_id=account_id,
            count=RECIPIENTS,
            first_phone=FIRST_PHONE,
            tag="ab",
            nameless_every=10**9,
            bad_phone_every=10**9,
        )
        async with running(settings):
            await publish_event(settings, event)
            await wait_completed(pool, first_id)
            rows = await pool.fetch(
                "SELECT id, phone, variant, status, error_code FROM recipients "
                "WHERE campaign_id = $1 ORDER BY id",
                first_id,
            )
            expected = {
                v: dict.fromkeys(("sent", "delivered", "failed", "skipped"), 0) for v in (0, 1)
            }
            for r in rows:
                assert r["variant"] == variant_of(r["id"], starts)
                if r["phone"] == "12345":  # the synthetic audience's one invalid number
                    assert (r["status"], r["error_code"]) == ("skipped", "invalid_phone")
                elif r["variant"] == 1:
                    assert (r["status"], r["error_code"]) == ("skipped", "missing_variable")
                else:
                    assert r["status"] == expected_final(r["phone"]), r
                    expected[0]["sent"] += int(expected_accepted(r["phone"]))
                expected[r["variant"]][r["status"]] += 1
            counted = await drafts.variant_counters(pool, first_id)
            for v in (0, 1):
                assert {k: counted[v][k] for k in expected[v]} == expected[v]
            assert counted[0]["recipients"] == 280 and counted[1]["recipients"] == 120
            assert expected[0]["delivered"] and expected[0]["failed"]
            failed = sorted(r["phone"] for r in rows if r["status"] == "failed")
            assert failed

            retry = campaign_event(
                campaign_id=retry_id, account_id=account_id, mode=SendingMode.SMS, tags=[]
            )
            retry["audience"] = {"failed_of": first_id}
            await publish_event(settings, retry)
            counters = await wait_completed(pool, retry_id)
        again = await pool.fetch(
            "SELECT phone, status FROM recipients WHERE campaign_id = $1 ORDER BY phone",
            retry_id,
        )
        assert [r["phone"] for r in again] == failed
        # The simulator fails the same numbers again: the retry's counters say so exactly.
        assert counters.total == counters.failed == len(failed)
        assert await campaigns.recount(pool, retry_id) == {
            "sent": counters.sent,
            "delivered": 0,
            "read": 0,
            "failed": len(failed),
            "skipped": 0,
            "cancelled": 0,
            "final": len(failed),
            "total": len(failed),
        }
