"""Issue 16's vendor moves over the API: a draft's pacing and stats, lean create answers,
create-and-send in one call, calculate-goal without the recipients that will be skipped,
and seed 002's confirm workflow (ready, costed, price unchanged), numeric status and
per-campaign senders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from herald.domain.channels import Channel
from herald.domain.events import parse_campaign_confirmed
from herald.store import accounts
from tests.integration.api_support import Caller, data, error

LATER = (datetime.now(UTC) + timedelta(days=3)).isoformat()


async def _contact(caller: Caller, **fields: Any) -> str:
    contact: str = data(await caller.post("/v1/contacts", fields), 201)["id"]
    return contact


async def test_a_draft_shows_its_pacing_and_zero_stats_like_a_scheduled_one(
    alice: Caller,
) -> None:
    body = {
        "name": "paced",
        "channel": "sms",
        "body": "Hi",
        "destinations": ["+14155550100"],
        "batch_size": 500,
        "batch_delay_ms": 250,
    }
    draft = data(await alice.post("/v1/campaigns", body), 201)
    assert draft["batch_size"] == 500 and draft["batch_delay_ms"] == 250
    zeros = dict.fromkeys(
        ("total_recipients", "sent", "delivered", "read", "failed", "skipped", "cancelled"), 0
    )
    assert draft["stats"] == {**zeros, "pending": 0}
    plain = data(await alice.post("/v1/campaigns", {"name": "plain", "channel": "sms"}), 201)
    assert plain["batch_size"] == 100_000 and plain["batch_delay_ms"] == 0

    data(await alice.put(f"/v1/campaigns/{draft['id']}", {"scheduled_at": LATER}))
    data(await alice.post(f"/v1/campaigns/{draft['id']}/send"), 202)
    scheduled = data(await alice.get(f"/v1/campaigns/{draft['id']}"))
    assert scheduled["status"] == "scheduled"
    assert scheduled["stats"] == draft["stats"]
    changed = data(await alice.put(f"/v1/campaigns/{draft['id']}", {"batch_size": 700}))
    assert changed["stats"] == draft["stats"] and changed["batch_size"] == 700


async def test_create_and_change_answers_leave_the_destinations_out(alice: Caller) -> None:
    numbers = [f"+1415555{i:04d}" for i in range(300)]
    body = {
        "name": "many",
        "channel": "sms",
        "body": "Hi",
        "destinations": numbers,
        "recipient_variables": {numbers[0]: {"code": "A1"}},
    }
    created = data(await alice.post("/v1/campaigns", body), 201)
    assert "destinations" not in created["spec"]
    assert "recipient_variables" not in created["spec"]
    assert created["spec"]["body"] == "Hi"
    changed = data(await alice.put(f"/v1/campaigns/{created['id']}", {"name": "many 2"}))
    assert changed["name"] == "many 2" and "destinations" not in changed["spec"]
    full = data(await alice.get(f"/v1/campaigns/{created['id']}"))
    assert full["spec"]["destinations"] == numbers


async def _outbox(pool: asyncpg.Pool, campaign_id: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE payload ->> 'campaign_id' = $1 ORDER BY id",
        campaign_id,
    )
    return [r["payload"] for r in rows]


async def test_create_and_send_in_one_call_sends_now_or_at_its_time(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    await _contact(alice, phone="+14155551201", tags=["now"])
    body = {"name": "at once", "channel": "sms", "body": "Hi", "tags": ["now"]}
    sent = data(await alice.post("/v1/campaigns/send", body), 202)
    assert sent["status"] == "sending" and sent["started_at"] is not None
    assert sent["event_id"]
    events = await _outbox(api_pool, sent["id"])
    assert [e["event_id"] for e in events] == [sent["event_id"]]
    shown = data(await alice.get(f"/v1/campaigns/{sent['id']}"))
    assert shown["status"] == "sending" and shown["spec"]["tags"] == ["now"]

    later = data(await alice.post("/v1/campaigns/send", {**body, "scheduled_at": LATER}), 202)
    assert later["status"] == "scheduled" and later["started_at"] is None
    assert later["scheduled_at"] is not None


async def test_create_and_send_refused_leaves_nothing_behind(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    before = data(await alice.get("/v1/campaigns", limit=100))
    no_audience = {"name": "half", "channel": "sms", "body": "Hi"}
    error(await alice.post("/v1/campaigns/send", no_audience), 422, "audience_required")
    no_body = {"name": "half", "channel": "sms", "destinations": ["+14155550100"]}
    failed = error(await alice.post("/v1/campaigns/send", no_body), 422, "content_required")
    assert failed["field"] == "content.sms.body"
    past = {**no_body, "body": "Hi", "scheduled_at": "2020-01-01T00:00:00Z"}
    error(await alice.post("/v1/campaigns/send", past), 422, "schedule_in_past")
    assert data(await alice.get("/v1/campaigns", limit=100)) == before
    assert not await api_pool.fetchval(
        "SELECT count(*) FROM campaign_drafts WHERE account_id = $1 AND name = 'half'",
        alice.account_id,
    )


async def test_template_name_and_lang_fill_the_whatsapp_content(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    body = {
        "name": "wa",
        "sending_mode": "WHATSAPP_SMS",
        "template_name": "welcome_message",
        "template_lang": "en_US",
        "content": {"sms": {"body": "Welcome"}},
        "destinations": ["+14155550100"],
    }
    sent = data(await alice.post("/v1/campaigns/send", body), 202)
    (event,) = await _outbox(api_pool, sent["id"])
    assert event["content"]["whatsapp"]["template_name"] == "welcome_message"
    assert event["content"]["whatsapp"]["language"] == "en_US"
    shown = data(await alice.get(f"/v1/campaigns/{sent['id']}"))
    assert shown["spec"]["template_name"] == "welcome_message"
    assert shown["spec"]["template_lang"] == "en_US"

    no_lang = {**body, "name": "wa2"}
    del no_lang["template_lang"]
    failed = error(await alice.post("/v1/campaigns/send", no_lang), 422, "content_required")
    assert failed["field"] == "content.whatsapp.language"
    sms = {"name": "x", "channel": "sms", "template_name": "welcome_message"}
    failed = error(await alice.post("/v1/campaigns", sms), 422, "validation_failed")
    assert failed["field"] == "template_name"
    draft = data(await alice.post("/v1/campaigns", {"name": "w", "channel": "whatsapp"}), 201)
    data(await alice.put(f"/v1/campaigns/{draft['id']}", {"template_lang": "pt_BR"}))
    shown = data(await alice.get(f"/v1/campaigns/{draft['id']}"))
    assert shown["spec"]["template_lang"] == "pt_BR"


async def test_goal_leaves_out_who_will_be_skipped_and_prices_each_channel(
    alice: Caller,
) -> None:
    tag = "goal8"
    reachable = await _contact(alice, phone="+14155552001", tags=[tag])
    no_wa = await _contact(alice, phone="+14155552002", tags=[tag])
    none = await _contact(alice, phone="+14155552003", tags=[tag])
    await _contact(alice, email="mail-only@example.com", tags=[tag])
    for contact, prefs in ((no_wa, {"whatsapp": False}), (none, {"whatsapp": False, "sms": False})):
        data(await alice.put(f"/v1/contacts/{contact}/preferences", {"preferences": prefs}))
    assert reachable
    body = {
        "name": "goal",
        "sending_mode": "WHATSAPP_SMS",
        "template_name": "promo",
        "template_lang": "en",
        "content": {"sms": {"body": "Hi"}},
        "tags": [tag],
        "destinations": ["+14155552999"],
    }
    cid = data(await alice.post("/v1/campaigns", body), 201)["id"]
    goal = data(await alice.post(f"/v1/campaigns/{cid}/calculate-goal"))
    # 5 rows: the mail-only contact (no phone) and the one opted out of both are skipped.
    assert goal["recipients"] == 3 and goal["skipped"] == 2 and goal["opted_out"] == 2
    by_channel = {c["channel"]: c for c in goal["channels"]}
    assert list(by_channel) == ["whatsapp", "sms"]
    assert (by_channel["whatsapp"]["recipients"], by_channel["whatsapp"]["reachable"]) == (2, 2)
    assert (by_channel["sms"]["recipients"], by_channel["sms"]["reachable"]) == (1, 3)
    wa, sms = (
        Decimal(by_channel["whatsapp"]["unit_price"]),
        Decimal(by_channel["sms"]["unit_price"]),
    )
    assert Decimal(goal["cost"]) == 2 * wa + 1 * sms
    assert Decimal(goal["cost_max"]) == 2 * wa + 3 * sms
    assert goal["channel"] == "whatsapp" and Decimal(goal["unit_price"]) == wa
    price = data(await alice.get(f"/v1/campaigns/{cid}/price"))
    assert price["recipients"] == 3 and Decimal(price["cost"]) == Decimal(goal["cost"])

    # A scheduled campaign has a goal too; a sending one has none to calculate.
    data(await alice.put(f"/v1/campaigns/{cid}", {"scheduled_at": LATER}))
    assert data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)["status"] == "scheduled"
    again = data(await alice.post(f"/v1/campaigns/{cid}/calculate-goal"))
    assert again["recipients"] == 3 and again["cost"] == goal["cost"]
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    error(await alice.post(f"/v1/campaigns/{cid}/calculate-goal"), 409, "campaign_not_editable")


async def test_goal_of_an_email_campaign_skips_contacts_without_an_email(alice: Caller) -> None:
    await _contact(alice, phone="+14155553001", tags=["mail8"])
    await _contact(alice, email="a8@example.com", tags=["mail8"])
    body = {
        "name": "m",
        "channel": "email",
        "sender": "news@example.com",
        "subject": "S",
        "body": "B",
        "tags": ["mail8"],
    }
    cid = data(await alice.post("/v1/campaigns", body), 201)["id"]
    goal = data(await alice.post(f"/v1/campaigns/{cid}/calculate-goal"))
    assert goal["recipients"] == 1 and goal["skipped"] == 1
    assert Decimal(goal["cost"]) == Decimal(goal["unit_price"])


async def test_seed_002_confirm_requires_ready_costed_and_the_same_price(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    turned_on = data(await alice.put("/v1/account/settings", {"confirm_requires_goal": True}))
    assert turned_on["confirm_requires_goal"] is True
    await _contact(alice, phone="+14155554001", tags=["wf"])
    await _contact(alice, phone="+14155554002", tags=["wf"])
    body = {"name": "wf", "channel": "sms", "body": "Hi", "tags": ["wf"]}
    cid = data(await alice.post("/v1/campaigns", body), 201)["id"]
    confirm = f"/v1/campaigns/{cid}/confirm"
    refused = error(await alice.put(confirm), 422, "campaign_not_ready")
    assert refused["field"] == "ready_to_send"
    data(await alice.put(f"/v1/campaigns/{cid}", {"ready_to_send": True}))
    assert error(await alice.put(confirm), 422, "goal_required")["field"] == "goal"

    assert data(await alice.post(f"/v1/campaigns/{cid}/calculate-goal"))["recipients"] == 2
    await _contact(alice, phone="+14155554003", tags=["wf"])  # the audience grew since
    outdated = error(await alice.put(confirm), 409, "goal_outdated")
    assert outdated["field"] == "goal" and "3 costing" in outdated["message"]
    assert data(await alice.get(f"/v1/campaigns/{cid}"))["status"] == "draft"

    assert data(await alice.post(f"/v1/campaigns/{cid}/calculate-goal"))["recipients"] == 3
    # Seed 002's order: costed, then marked ready (the goal stays), then confirmed.
    data(await alice.put(f"/v1/campaigns/{cid}", {"ready_to_send": False}))
    data(await alice.put(f"/v1/campaigns/{cid}", {"ready_to_send": True}))
    sent = data(await alice.put(confirm), 202)
    assert sent["status"] == "sending" and sent["status_code"] == 2

    # Create-and-send cannot have been costed: refused, and nothing is created.
    ready = {**body, "name": "wf-at-once", "ready_to_send": True}
    assert error(await alice.post("/v1/campaigns/send", ready), 422, "goal_required")
    assert not await api_pool.fetchval(
        "SELECT count(*) FROM campaign_drafts WHERE account_id = $1 AND name = 'wf-at-once'",
        alice.account_id,
    )
    assert await accounts.confirm_requires_goal(api_pool, alice.account_id)


async def test_without_the_workflow_put_confirm_sends_and_status_codes_follow(
    bob: Caller,
) -> None:
    body = {"name": "plain", "channel": "sms", "body": "Hi", "destinations": ["+14155550100"]}
    cid = data(await bob.post("/v1/campaigns", body), 201)["id"]
    assert data(await bob.get(f"/v1/campaigns/{cid}"))["status_code"] == 0
    sent = data(await bob.put(f"/v1/campaigns/{cid}/confirm"), 202)
    assert (sent["status"], sent["status_code"]) == ("sending", 2)
    paused = data(await bob.post(f"/v1/campaigns/{cid}/pause"))
    assert (paused["status"], paused["status_code"]) == ("paused", 2)
    cancelled = data(await bob.post(f"/v1/campaigns/{cid}/cancel"))
    assert (cancelled["status"], cancelled["status_code"]) == ("cancelled", 4)

    later = data(await bob.post("/v1/campaigns/send", {**body, "scheduled_at": LATER}), 202)
    assert later["status_code"] == 1
    listed = {c["id"]: c for c in data(await bob.get("/v1/campaigns"))}
    assert listed[later["id"]]["status_code"] == 1 and listed[cid]["status_code"] == 4


async def _provider_account(pool: asyncpg.Pool, account: str | None, channel: str) -> str:
    provider = {"whatsapp": "whatsapp", "sms": "twilio"}[channel]
    ident = await pool.fetchval(
        "INSERT INTO provider_accounts (account_id, channel, provider, label) "
        "VALUES ($1, $2, $3, $4) RETURNING id::text",
        account,
        channel,
        provider,
        f"{provider}-{account}",
    )
    assert isinstance(ident, str)
    return ident


async def test_a_campaign_names_its_own_provider_account_per_channel(
    alice: Caller, bob: Caller, api_pool: asyncpg.Pool
) -> None:
    mine = await _provider_account(api_pool, alice.account_id, "whatsapp")
    my_sms = await _provider_account(api_pool, alice.account_id, "sms")
    theirs = await _provider_account(api_pool, bob.account_id, "whatsapp")
    shared = await _provider_account(api_pool, None, "whatsapp")
    body = {
        "name": "by number",
        "sending_mode": "WHATSAPP_SMS",
        "template_name": "promo",
        "template_lang": "en",
        "content": {"sms": {"body": "Hi"}},
        "destinations": ["+14155550100"],
    }
    for chosen, field in (
        ({"whatsapp": theirs}, "provider_accounts.whatsapp"),
        ({"whatsapp": shared}, "provider_accounts.whatsapp"),
        ({"whatsapp": "not-an-id"}, "provider_accounts.whatsapp"),
        ({"whatsapp": mine, "sms": mine}, "provider_accounts.sms"),
    ):
        refused = await alice.post("/v1/campaigns", {**body, "provider_accounts": chosen})
        assert error(refused, 422, "provider_account_invalid")["field"] == field
    outside = await alice.post("/v1/campaigns", {**body, "provider_accounts": {"rcs": mine}})
    assert error(outside, 422, "validation_failed")["field"] == "provider_accounts.rcs"

    chosen = {"whatsapp": mine, "sms": my_sms}
    cid = data(await alice.post("/v1/campaigns", {**body, "provider_accounts": chosen}), 201)["id"]
    bad = await alice.put(f"/v1/campaigns/{cid}", {"provider_accounts": {"whatsapp": theirs}})
    assert error(bad, 422, "provider_account_invalid")["field"] == "provider_accounts.whatsapp"
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    (event,) = await _outbox(api_pool, cid)
    assert event["provider_accounts"] == chosen
    parsed = parse_campaign_confirmed(event)
    assert parsed.provider_accounts == {Channel.WHATSAPP: mine, Channel.SMS: my_sms}

    # A provider account disabled after the draft was saved is refused at send.
    draft = data(await alice.post("/v1/campaigns", {**body, "provider_accounts": chosen}), 201)
    await api_pool.execute("UPDATE provider_accounts SET enabled = false WHERE id = $1::uuid", mine)
    late = await alice.post(f"/v1/campaigns/{draft['id']}/send")
    assert error(late, 422, "provider_account_invalid")["field"] == "provider_accounts.whatsapp"
