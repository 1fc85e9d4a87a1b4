"""Campaigns over the API against real PostgreSQL: drafts, send through the outbox (the
payload round-trips through parse_campaign_confirmed), control, goal, recipients, stats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from herald.demo import campaign_event
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.domain.status import RecipientStatus
from herald.store import campaigns
from tests.integration.api_support import Caller, data, error, sms_reported


async def _contacts(caller: Caller, n: int, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        body = {"phone": f"+1415777{i:04d}", "first_name": f"C{i}", "tags": [tag]}
        ids.append(data(await caller.post("/v1/contacts", body), 201)["id"])
    return ids


async def _outbox_events(pool: asyncpg.Pool, account: str) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT payload FROM outbox WHERE key = $1 ORDER BY id", account)
    return [r["payload"] for r in rows]


async def test_draft_lifecycle_and_send_writes_a_valid_event(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    ids = await _contacts(alice, 3, "vip")
    lst = data(await alice.post("/v1/contacts/lists", {"name": "VIPs"}), 201)
    data(await alice.post(f"/v1/contacts/lists/{lst['id']}/members", {"contact_ids": ids[:2]}))
    draft = data(
        await alice.post(
            "/v1/campaigns",
            {
                "name": "Spring Promo",
                "channel": "sms",
                "list_id": lst["id"],
                "body": "Hi {{first_name}}, enjoy 20% off!",
                "destinations": ["+14155550100"],
            },
        ),
        201,
    )
    assert draft["status"] == "draft"
    assert draft["sending_mode"] == "SMS"
    cid = draft["id"]

    updated = data(
        await alice.put(f"/v1/campaigns/{cid}", {"name": "Spring Promo 2026", "tags": ["vip"]})
    )
    assert updated["name"] == "Spring Promo 2026"
    assert updated["spec"]["tags"] == ["vip"]

    goal = data(await alice.post(f"/v1/campaigns/{cid}/calculate-goal"))
    # 3 vip contacts (2 of them also in the list) + 1 raw destination.
    assert goal["recipients"] == 4
    assert goal["units_per_message"] == 1
    price = data(await alice.get(f"/v1/campaigns/{cid}/price"))
    assert price["recipients"] == 4 and price["cost"] == goal["cost"]

    sent = data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    # Sent now: it is sending from this answer on (the scheduler expands it next).
    assert sent["status"] == "sending" and sent["started_at"] is not None
    assert data(await alice.get(f"/v1/campaigns/{cid}"))["status"] == "sending"
    error(await alice.post(f"/v1/campaigns/{cid}/send"), 409, "campaign_state_conflict")
    error(await alice.post(f"/v1/campaigns/{cid}/confirm"), 409, "campaign_state_conflict")

    events = await _outbox_events(api_pool, alice.account_id)
    assert len(events) == 1
    event = parse_campaign_confirmed(events[0])
    assert event.campaign_id == cid
    assert event.account_id == alice.account_id
    assert event.sending_mode is SendingMode.SMS
    assert event.content.sms is not None
    assert event.content.sms.body == "Hi {{first_name}}, enjoy 20% off!"
    assert event.audience.list_ids == (lst["id"],)
    assert event.audience.tags == ("vip",)
    assert event.audience.destinations == ("+14155550100",)
    assert event.event_id == sent["event_id"]


async def test_every_sending_mode_round_trips(alice: Caller, api_pool: asyncpg.Pool) -> None:
    wa = data(
        await alice.post(
            "/v1/templates",
            {
                "name": "spring_sale",
                "channel": "whatsapp",
                "language": "en_US",
                "components": [
                    {"type": "HEADER", "text": "Sale {{1}}"},
                    {"type": "BODY", "text": "Hi {{1}}, {{2}} off"},
                ],
            },
        ),
        201,
    )
    assert wa["approval_status"] == "pending"
    assert wa["placeholders"] == ["1", "2"]
    data(await alice.put(f"/v1/templates/{wa['id']}/approval", {"status": "approved"}))
    content = {
        "sms": {"sender": "Herald", "body": "Hi {{first_name}}"},
        "whatsapp": {"template_id": wa["id"]},
        "rcs": {"agent_id": "agent-1", "text": "Hi"},
        "viber": {"sender": "Herald", "text": "Hi"},
        "email": {"from": "offers@example.com", "subject": "Sale", "body": "Hi"},
    }
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for mode in SendingMode:
        cid = data(
            await alice.post(
                "/v1/campaigns",
                {
                    "name": f"mode {mode.value}",
                    "sending_mode": mode.value,
                    "content": content,
                    "tags": ["anyone"],
                    "variable_mappings": {"1": "first_name"},
                    "recipient_variables": {"+14155550100": {"2": 20}},
                    "scheduled_at": later,
                    "batch_size": 500,
                    "batch_delay_ms": 10,
                    "fallback_window_s": 60,
                },
            ),
            201,
        )["id"]
        data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    events = await _outbox_events(api_pool, alice.account_id)
    parsed = [parse_campaign_confirmed(e) for e in events]
    assert {e.sending_mode for e in parsed} == set(SendingMode)
    for event in parsed:
        assert event.batch_size == 500 and event.fallback_window_s == 60
        assert event.scheduled_at is not None
        assert event.recipient_variables == {"+14155550100": {"2": "20"}}
        if event.content.whatsapp is not None:
            assert event.content.whatsapp.template_name == "spring_sale"
            assert event.content.whatsapp.language == "en_US"
            assert [c["type"] for c in event.content.whatsapp.components] == ["header", "body"]
    listed = (await alice.get("/v1/campaigns", scheduled="true", limit=100)).json()["data"]
    assert len(listed) == len(SendingMode)


async def test_send_refuses_incomplete_drafts(alice: Caller) -> None:
    async def draft(body: dict[str, Any]) -> str:
        return str(data(await alice.post("/v1/campaigns", {"name": "x", **body}), 201)["id"])

    no_audience = await draft({"channel": "sms", "body": "hi"})
    error(await alice.post(f"/v1/campaigns/{no_audience}/send"), 422, "audience_required")
    no_body = await draft({"channel": "sms", "tags": ["a"]})
    detail = error(await alice.post(f"/v1/campaigns/{no_body}/send"), 422, "content_required")
    assert detail["field"] == "content.sms.body"
    no_sender = await draft({"sending_mode": "VIBER", "body": "hi", "tags": ["a"]})
    error(await alice.post(f"/v1/campaigns/{no_sender}/send"), 422, "sender_required")
    bad_list = await draft(
        {"channel": "sms", "body": "hi", "list_id": "00000000-0000-4000-8000-000000000000"}
    )
    error(await alice.post(f"/v1/campaigns/{bad_list}/send"), 422, "audience_invalid")
    tpl = data(
        await alice.post(
            "/v1/templates",
            {"name": "t", "channel": "whatsapp", "components": [{"type": "body", "text": "Hi"}]},
        ),
        201,
    )
    unapproved = await draft({"channel": "whatsapp", "template_id": tpl["id"], "tags": ["a"]})
    error(await alice.post(f"/v1/campaigns/{unapproved}/send"), 422, "template_not_approved")
    sms_tpl = data(
        await alice.post(
            "/v1/templates", {"name": "s", "channel": "sms", "body": "Hi {{first_name}}"}
        ),
        201,
    )
    mismatch = await draft(
        {"channel": "viber", "sender": "H", "template_id": sms_tpl["id"], "tags": ["a"]}
    )
    error(await alice.post(f"/v1/campaigns/{mismatch}/send"), 422, "template_channel_mismatch")
    from_template = await draft({"channel": "sms", "template_id": sms_tpl["id"], "tags": ["a"]})
    data(await alice.post(f"/v1/campaigns/{from_template}/send"), 202)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    error(
        await alice.post("/v1/campaigns", {"name": "x", "channel": "sms", "scheduled_at": past}),
        422,
        "schedule_in_past",
    )
    error(await alice.post("/v1/campaigns", {"name": "x"}), 422, "validation_failed")
    detail = error(
        await alice.post("/v1/campaigns", {"name": "x", "channel": "sms", "ab_test": {}}),
        422,
        "validation_failed",
    )
    assert detail["field"] == "ab_test.variants"


async def _received_by_scheduler(pool: asyncpg.Pool, account: str, campaign_id: str) -> None:
    """What the scheduler does on campaign.confirmed: the insert is a replay (the API created
    the campaign's row when it confirmed it), then the expansion."""
    raw = next(e for e in await _outbox_events(pool, account) if e["campaign_id"] == campaign_id)
    event = parse_campaign_confirmed(raw)
    assert not await campaigns.insert(pool, event, raw)
    async with pool.acquire() as conn, conn.transaction():
        await campaigns.expand(conn, event)


async def test_pause_resume_cancel_and_recipients(
    alice: Caller, bob: Caller, api_pool: asyncpg.Pool
) -> None:
    await _contacts(alice, 3, "ctl")
    cid = data(
        await alice.post(
            "/v1/campaigns", {"name": "ctl", "channel": "sms", "body": "Hi", "tags": ["ctl"]}
        ),
        201,
    )["id"]
    error(await alice.post(f"/v1/campaigns/{cid}/pause"), 409, "campaign_state_conflict")
    error(await alice.post(f"/v1/campaigns/{cid}/cancel"), 409, "campaign_state_conflict")
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    # Sending from the send's answer on, before the scheduler expands it: a pause holds it
    # there, and its resume lets the scheduler start it.
    assert data(await alice.get(f"/v1/campaigns/{cid}"))["status"] == "sending"
    held = data(await alice.post(f"/v1/campaigns/{cid}/pause", {"reason": "hold"}))
    assert held["status"] == "paused" and held["stats"]["total_recipients"] == 0
    assert data(await alice.post(f"/v1/campaigns/{cid}/resume"))["status"] == "sending"

    await _received_by_scheduler(api_pool, alice.account_id, cid)
    got = data(await alice.get(f"/v1/campaigns/{cid}"))
    assert got["status"] == "sending"
    assert got["stats"]["total_recipients"] == 3 and got["stats"]["pending"] == 3

    error(await alice.post(f"/v1/campaigns/{cid}/resume"), 409, "campaign_state_conflict")
    paused = data(await alice.post(f"/v1/campaigns/{cid}/pause", {"reason": "budget"}))
    assert paused["status"] == "paused" and paused["pause_reason"] == "budget"
    error(await alice.post(f"/v1/campaigns/{cid}/pause"), 409, "campaign_state_conflict")
    resumed = data(await alice.post(f"/v1/campaigns/{cid}/resume"))
    assert resumed["status"] == "sending" and resumed["pause_reason"] is None

    await sms_reported(
        api_pool,
        cid,
        2,
        RecipientStatus.FAILED,
        error_code="30003",
        error_description="Unreachable",
    )
    failed = data(await alice.get(f"/v1/campaigns/{cid}/recipients", status="failed"))
    assert [(r["id"], r["error_code"]) for r in failed] == [(2, "30003")]
    first = (await alice.get(f"/v1/campaigns/{cid}/recipients", limit=2)).json()
    assert [r["id"] for r in first["data"]] == [1, 2]
    rest = data(
        await alice.get(
            f"/v1/campaigns/{cid}/recipients", limit=2, cursor=first["meta"]["next_cursor"]
        )
    )
    assert [r["id"] for r in rest] == [3]

    error(await bob.get(f"/v1/campaigns/{cid}/recipients"), 404, "campaign_not_found")
    error(await bob.post(f"/v1/campaigns/{cid}/cancel"), 404, "campaign_not_found")
    cancelled = data(await alice.post(f"/v1/campaigns/{cid}/cancel"))
    assert cancelled["status"] == "cancelled"
    error(await alice.post(f"/v1/campaigns/{cid}/resume"), 409, "campaign_state_conflict")
    error(await alice.post(f"/v1/campaigns/{cid}/cancel"), 409, "campaign_state_conflict")


async def test_cancel_before_the_scheduler_sees_it(alice: Caller, api_pool: asyncpg.Pool) -> None:
    cid = data(
        await alice.post(
            "/v1/campaigns", {"name": "c", "channel": "sms", "body": "Hi", "tags": ["t"]}
        ),
        201,
    )["id"]
    # confirm is send under seed 002's name.
    data(await alice.post(f"/v1/campaigns/{cid}/confirm"), 202)
    assert data(await alice.post(f"/v1/campaigns/{cid}/cancel"))["status"] == "cancelled"
    raw = (await _outbox_events(api_pool, alice.account_id))[-1]
    # The scheduler's insert is then a no-op: the campaign never expands.
    assert not await campaigns.insert(api_pool, parse_campaign_confirmed(raw), raw)
    assert data(await alice.get(f"/v1/campaigns/{cid}"))["status"] == "cancelled"


async def test_list_filters(alice: Caller, bob: Caller) -> None:
    for name, ready in [("Alpha promo", True), ("Beta promo", False), ("Gamma", False)]:
        data(
            await alice.post(
                "/v1/campaigns",
                {"name": name, "channel": "sms", "ready_to_send": ready, "description": "spring"},
            ),
            201,
        )

    def names(response: httpx.Response) -> list[str]:
        return [c["name"] for c in response.json()["data"]]

    assert names(await alice.get("/v1/campaigns", search="promo")) == ["Beta promo", "Alpha promo"]
    assert names(await alice.get("/v1/campaigns", search="promo", direction="asc")) == [
        "Alpha promo",
        "Beta promo",
    ]
    assert names(await alice.get("/v1/campaigns", ready_to_send="true")) == ["Alpha promo"]
    assert len(names(await alice.get("/v1/campaigns", status="draft,sending"))) == 3
    # The total counts what the filters keep, on every page (Orbit's pagination.total).
    first = (await alice.get("/v1/campaigns", search="promo", limit=1)).json()["meta"]
    assert (first["total"], first["total_exact"], first["has_more"]) == (2, True, True)
    rest = await alice.get("/v1/campaigns", search="promo", limit=1, cursor=first["next_cursor"])
    assert rest.json()["meta"]["total"] == 2
    assert (await bob.get("/v1/campaigns")).json()["meta"]["total"] == 0
    assert names(await alice.get("/v1/campaigns", draft="false")) == []
    assert len(names(await alice.get("/v1/campaigns", channel="sms"))) == 3
    assert names(await alice.get("/v1/campaigns", channel="email")) == []
    today = datetime.now(UTC).date()
    window = {"start_date": today.isoformat(), "end_date": today.isoformat()}
    assert len(names(await alice.get("/v1/campaigns", **window))) == 3
    old = {"start_date": "2020-01-01", "end_date": "2020-01-31"}
    assert names(await alice.get("/v1/campaigns", **old)) == []
    error(await alice.get("/v1/campaigns", status="bogus"), 422, "validation_failed")
    assert names(await alice.get("/v1/campaigns", search="%")) == []
    page1 = (await alice.get("/v1/campaigns", limit=2)).json()
    page2 = (await alice.get("/v1/campaigns", limit=2, cursor=page1["meta"]["next_cursor"])).json()
    assert len(page1["data"]) == 2 and len(page2["data"]) == 1
    error(
        await alice.get(
            "/v1/campaigns", limit=2, direction="asc", cursor=page1["meta"]["next_cursor"]
        ),
        400,
        "invalid_cursor",
    )


async def test_stats(alice: Caller, api_pool: asyncpg.Pool) -> None:
    await _contacts(alice, 4, "stats")
    cid = data(
        await alice.post(
            "/v1/campaigns", {"name": "s", "channel": "sms", "body": "Hi", "tags": ["stats"]}
        ),
        201,
    )["id"]
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    await _received_by_scheduler(api_pool, alice.account_id, cid)
    await api_pool.execute(
        "INSERT INTO attempts (campaign_id, recipient_id, attempt_no, channel, provider, "
        "outcome, status, accepted) SELECT $1, id, 1, 'sms', 'twilio', 'accepted', "
        "CASE WHEN id = 1 THEN 'failed' ELSE 'delivered' END, id <> 1 "
        "FROM recipients WHERE campaign_id = $1 AND id <= 3",
        cid,
    )
    await api_pool.execute(
        "UPDATE campaigns SET sent = 2, delivered = 2, failed = 1, skipped = 1, final = 4 "
        "WHERE id = $1",
        cid,
    )
    await api_pool.execute(
        "INSERT INTO campaign_channel_counters VALUES ($1, 'sms', 2, 2, 0, 1)", cid
    )
    await api_pool.execute(
        "UPDATE recipients SET status = 'skipped' WHERE campaign_id = $1 AND id = 4", cid
    )
    totals = data(await alice.get("/v1/campaigns/stats"))
    assert totals["total_messages_sent"] == 2 and totals["total_delivered"] == 2
    assert totals["active_campaigns"] == 1 and totals["delivery_rate"] == 1.0
    assert totals["channels"] == {"sms": {"sent": 2, "delivered": 2, "read": 0, "failed": 1}}
    one = data(await alice.get(f"/v1/campaigns/{cid}/stats"))
    assert (one["total_recipients"], one["failed"], one["skipped"], one["pending"]) == (4, 1, 1, 0)
    today = datetime.now(UTC).date().isoformat()
    for unit in ("hour", "day", "week", "month"):
        buckets = data(
            await alice.get(
                "/v1/campaigns/stats/timeseries",
                start_date=today,
                end_date=today,
                aggregate_on=unit,
            )
        )
        assert len(buckets) == 1
        b = buckets[0]
        assert (b["attempts"], b["sent"], b["delivered"], b["failed"], b["skipped"]) == (
            3,
            2,
            2,
            1,
            1,
        )
    per_campaign = data(
        await alice.get(f"/v1/campaigns/{cid}/stats/timeseries", start_date=today, end_date=today)
    )
    assert sum(b["attempts"] for b in per_campaign) == 3
    error(
        await alice.get("/v1/campaigns/stats/timeseries", start_date=today),
        422,
        "validation_failed",
    )


async def test_other_accounts_cannot_see_campaigns(alice: Caller, bob: Caller) -> None:
    cid = data(
        await alice.post(
            "/v1/campaigns", {"name": "mine", "channel": "sms", "body": "x", "tags": ["a"]}
        ),
        201,
    )["id"]
    for response in [
        await bob.get(f"/v1/campaigns/{cid}"),
        await bob.put(f"/v1/campaigns/{cid}", {"name": "theirs"}),
        await bob.delete(f"/v1/campaigns/{cid}"),
        await bob.post(f"/v1/campaigns/{cid}/send"),
        await bob.post(f"/v1/campaigns/{cid}/confirm"),
        await bob.post(f"/v1/campaigns/{cid}/pause"),
        await bob.post(f"/v1/campaigns/{cid}/resume"),
        await bob.post(f"/v1/campaigns/{cid}/calculate-goal"),
        await bob.get(f"/v1/campaigns/{cid}/price"),
        await bob.get(f"/v1/campaigns/{cid}/stats"),
        await bob.get(f"/v1/campaigns/{cid}/ab-test"),
        await bob.post(f"/v1/campaigns/{cid}/retry-failed"),
    ]:
        error(response, 404, "campaign_not_found")
    assert data(await bob.get("/v1/campaigns")) == []
    assert data(await bob.get("/v1/campaigns/stats"))["total_campaigns"] == 0
    assert data(await alice.get(f"/v1/campaigns/{cid}"))["name"] == "mine"


async def test_ab_test_variants_go_into_the_event_and_count_per_variant(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    await _contacts(alice, 4, "ab")
    body = {
        "name": "AB",
        "channel": "sms",
        "tags": ["ab"],
        "ab_test": {
            "variants": [
                {"name": "short", "weight": 50, "body": "Hi {{first_name}}"},
                {"name": "long", "weight": 50, "body": "Hello {{first_name}}, 20% off"},
            ]
        },
    }
    for bad, field in [
        ({"variants": body["ab_test"]["variants"][:1]}, "ab_test.variants"),
        (
            {"variants": [{**v, "weight": 40} for v in body["ab_test"]["variants"]]},
            "ab_test.variants.weight",
        ),
        (
            {"variants": [body["ab_test"]["variants"][0]] * 2},
            "ab_test.variants.name",
        ),
        (
            {"variants": [{"name": "x", "weight": 50, "color": "red"}] * 2},
            "ab_test.variants.0.color",
        ),
    ]:
        response = await alice.post("/v1/campaigns", {**body, "ab_test": bad})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field, response.text
    cid = data(await alice.post("/v1/campaigns", body), 201)["id"]
    before = data(await alice.get(f"/v1/campaigns/{cid}/ab-test"))
    assert [(v["name"], v["weight"], v["recipients"]) for v in before["variants"]] == [
        ("short", 50, 0),
        ("long", 50, 0),
    ]
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    raw = next(
        e for e in await _outbox_events(api_pool, alice.account_id) if e["campaign_id"] == cid
    )
    event = parse_campaign_confirmed(raw)
    bodies = [v.content.sms.body for v in event.variants if v.content.sms]
    assert bodies == ["Hi {{first_name}}", "Hello {{first_name}}, 20% off"]

    await _received_by_scheduler(api_pool, alice.account_id, cid)
    # Recipient 2 (slot 74) is the second variant's only one.
    await sms_reported(api_pool, cid, 2, RecipientStatus.DELIVERED)
    after = data(await alice.get(f"/v1/campaigns/{cid}/ab-test"))["variants"]
    # Slots of recipients 1-4 are 37, 74, 11, 48: the split is exact per 100, not per 4.
    assert [(v["recipients"], v["sent"], v["delivered"], v["pending"]) for v in after] == [
        (3, 0, 0, 3),
        (1, 1, 1, 0),
    ]
    assert [v["delivery_rate"] for v in after] == [None, 1.0]

    plain = data(
        await alice.post("/v1/campaigns", {"name": "p", "channel": "sms", "body": "x"}), 201
    )["id"]
    error(await alice.get(f"/v1/campaigns/{plain}/ab-test"), 404, "ab_test_not_found")


async def test_a_variant_without_content_for_its_chain_names_the_variant(alice: Caller) -> None:
    cid = data(
        await alice.post(
            "/v1/campaigns",
            {
                "name": "AB chain",
                "sending_mode": "RCS_SMS",
                "tags": ["t"],
                "content": {"rcs": {"agent_id": "agent"}, "sms": {"body": "fallback"}},
                "ab_test": {
                    "variants": [
                        {"name": "A", "weight": 50, "body": "A text"},
                        {"name": "B", "weight": 50, "content": {"sms": {"body": "B sms"}}},
                    ]
                },
            },
        ),
        201,
    )["id"]
    got = error(await alice.post(f"/v1/campaigns/{cid}/send"), 422, "content_required")
    assert got["field"] == "ab_test.variants.1.content.rcs.text"


async def test_retry_failed_makes_a_draft_for_the_failed_recipients(
    alice: Caller, bob: Caller, api_pool: asyncpg.Pool
) -> None:
    await _contacts(alice, 3, "rf")
    cid = data(
        await alice.post(
            "/v1/campaigns",
            {
                "name": "Flash sale",
                "channel": "sms",
                "body": "Hi {{first_name}}",
                "tags": ["rf"],
                "destinations": ["+14155550900"],
                "variable_mappings": {"first_name": "first_name"},
            },
        ),
        201,
    )["id"]
    error(await alice.post(f"/v1/campaigns/{cid}/retry-failed"), 409, "campaign_state_conflict")
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    await _received_by_scheduler(api_pool, alice.account_id, cid)
    # Still sending: its failed set is not known yet.
    error(await alice.post(f"/v1/campaigns/{cid}/retry-failed"), 409, "campaign_state_conflict")
    await api_pool.execute(
        "UPDATE recipients SET status = CASE WHEN id IN (1, 4) THEN 'failed' ELSE 'delivered' END "
        "WHERE campaign_id = $1",
        cid,
    )
    await api_pool.execute(
        "UPDATE campaigns SET status = 'completed', failed = 2, final = 4 WHERE id = $1", cid
    )
    error(await bob.post(f"/v1/campaigns/{cid}/retry-failed"), 404, "campaign_not_found")
    retry = data(await alice.post(f"/v1/campaigns/{cid}/retry-failed"), 201)
    assert retry["status"] == "draft" and retry["id"] != cid
    assert retry["name"] == "Flash sale (retry)"
    assert retry["spec"]["failed_of"] == cid
    assert retry["spec"]["content"]["sms"]["body"] == "Hi {{first_name}}"
    goal = data(await alice.post(f"/v1/campaigns/{retry['id']}/calculate-goal"))
    assert goal["recipients"] == 2

    data(await alice.post(f"/v1/campaigns/{retry['id']}/send"), 202)
    await _received_by_scheduler(api_pool, alice.account_id, retry["id"])
    again = await api_pool.fetch(
        "SELECT phone FROM recipients WHERE campaign_id = $1 ORDER BY phone", retry["id"]
    )
    failed = await api_pool.fetch(
        "SELECT phone FROM recipients WHERE campaign_id = $1 AND status = 'failed' ORDER BY phone",
        cid,
    )
    assert [r["phone"] for r in again] == [r["phone"] for r in failed]

    # A campaign with nothing failed has nothing to retry; bob cannot aim at alice's campaign.
    await api_pool.execute(
        "UPDATE campaigns SET status = 'completed', failed = 0 WHERE id = $1", retry["id"]
    )
    error(await alice.post(f"/v1/campaigns/{retry['id']}/retry-failed"), 409, "nothing_to_retry")
    theirs = data(
        await bob.post(
            "/v1/campaigns", {"name": "b", "channel": "sms", "body": "x", "failed_of": cid}
        ),
        201,
    )["id"]
    got = error(await bob.post(f"/v1/campaigns/{theirs}/send"), 422, "audience_invalid")
    assert got["field"] == "failed_of"


async def test_send_now_on_a_scheduled_campaign_starts_it(
    alice: Caller, bob: Caller, api_pool: asyncpg.Pool
) -> None:
    await _contacts(alice, 2, "now")
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = {"name": "Later", "channel": "sms", "body": "Hi", "tags": ["now"], "scheduled_at": later}
    cid = data(await alice.post("/v1/campaigns", body), 201)["id"]
    first = data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    assert first["status"] == "scheduled" and first["started_at"] is None
    error(await bob.post(f"/v1/campaigns/{cid}/send"), 404, "campaign_not_found")
    # Orbit's "send now": the same call on the scheduled campaign starts it at once.
    now = data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    assert now["status"] == "sending" and now["started_at"] is not None
    assert now["event_id"] == first["event_id"]
    # Pause and cancel work from here on, before the scheduler has expanded it.
    assert data(await alice.post(f"/v1/campaigns/{cid}/pause"))["status"] == "paused"
    cancelled = data(await alice.post(f"/v1/campaigns/{cid}/cancel"))
    assert cancelled["status"] == "cancelled" and cancelled["completed_at"] is not None
    got = error(await alice.post(f"/v1/campaigns/{cid}/send"), 409, "campaign_state_conflict")
    assert got["message"] == "cannot send a campaign that is cancelled"


async def test_a_scheduled_campaign_can_change_or_go_until_it_starts(
    alice: Caller, bob: Caller, api_pool: asyncpg.Pool
) -> None:
    await _contacts(alice, 2, "sched")
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    body = {"name": "Later", "channel": "sms", "body": "Hi", "tags": ["sched"]}
    cid = data(await alice.post("/v1/campaigns", {**body, "scheduled_at": later}), 201)["id"]
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    assert data(await alice.get(f"/v1/campaigns/{cid}"))["status"] == "scheduled"

    # Changed before the scheduler has even received it: the pipeline row is written now
    # with the new event, so the first event, when it arrives, is a replay.
    changed = data(await alice.put(f"/v1/campaigns/{cid}", {"body": "Hello again"}))
    assert changed["status"] == "scheduled" and changed["spec"]["body"] == "Hello again"
    stored = await api_pool.fetchrow("SELECT status, event FROM campaigns WHERE id = $1", cid)
    assert stored is not None and stored["status"] == "scheduled"
    assert parse_campaign_confirmed(stored["event"]).content.sms.body == "Hello again"  # type: ignore[union-attr]
    first = next(
        e for e in await _outbox_events(api_pool, alice.account_id) if e["campaign_id"] == cid
    )
    assert not await campaigns.insert(api_pool, parse_campaign_confirmed(first), first)
    # A change must still be sendable, and keep its time in the future.
    got = error(await alice.put(f"/v1/campaigns/{cid}", {"body": ""}), 422, "validation_failed")
    assert got["field"] == "body"
    error(
        await alice.put(f"/v1/campaigns/{cid}", {"scheduled_at": "2020-01-01T00:00:00Z"}),
        422,
        "schedule_in_past",
    )
    error(await bob.put(f"/v1/campaigns/{cid}", {"name": "x"}), 404, "campaign_not_found")
    error(await bob.delete(f"/v1/campaigns/{cid}"), 404, "campaign_not_found")

    # Deleted while scheduled: cancelled so it never runs, and gone from the API.
    response = await alice.delete(f"/v1/campaigns/{cid}")
    assert response.status_code == 204
    error(await alice.get(f"/v1/campaigns/{cid}"), 404, "campaign_not_found")
    assert cid not in [c["id"] for c in data(await alice.get("/v1/campaigns"))]
    assert await api_pool.fetchval("SELECT status FROM campaigns WHERE id = $1", cid) == (
        "cancelled"
    )

    # Once the scheduler has started a campaign, neither is possible.
    started = data(await alice.post("/v1/campaigns", body), 201)["id"]
    data(await alice.post(f"/v1/campaigns/{started}/send"), 202)
    await _received_by_scheduler(api_pool, alice.account_id, started)
    assert data(await alice.get(f"/v1/campaigns/{started}"))["status"] == "sending"
    error(await alice.put(f"/v1/campaigns/{started}", {"name": "x"}), 409, "campaign_not_editable")
    error(await alice.delete(f"/v1/campaigns/{started}"), 409, "campaign_not_deletable")


async def test_schedules_are_checked_by_the_databases_clock(
    alice: Caller, monkeypatch: Any
) -> None:
    """The API host's clock two hours behind: a time one hour in the past is still refused,
    as the scheduler (which starts campaigns by PostgreSQL's now()) would start it at once."""

    class Behind(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) - timedelta(hours=2)

    import herald.api.campaign_spec
    import herald.api.campaigns

    monkeypatch.setattr(herald.api.campaigns, "datetime", Behind)
    monkeypatch.setattr(herald.api.campaign_spec, "datetime", Behind, raising=False)
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    body = {"name": "x", "channel": "sms", "tags": ["a"], "body": "Hi", "scheduled_at": past}
    error(await alice.post("/v1/campaigns", body), 422, "schedule_in_past")
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    made = data(await alice.post("/v1/campaigns", {**body, "scheduled_at": soon}), 201)
    error(
        await alice.put(f"/v1/campaigns/{made['id']}", {"scheduled_at": past}),
        422,
        "schedule_in_past",
    )


async def test_a_campaign_id_another_account_holds_never_crosses_over(
    alice: Caller, bob: Caller, api_pool: asyncpg.Pool
) -> None:
    """Rows that share an id across accounts (from before admission checked it): each
    account sees, pauses and cancels only its own."""
    mine = data(
        await alice.post("/v1/campaigns", {"name": "mine", "channel": "sms", "tags": ["a"]}), 201
    )["id"]
    raw = campaign_event(campaign_id=mine, account_id=bob.account_id, mode=SendingMode.SMS, tags=[])
    raw["name"] = "theirs"
    raw["audience"] = {"destinations": ["+14155550100"]}
    event = parse_campaign_confirmed(raw)
    assert await campaigns.insert(api_pool, event, raw)
    await api_pool.execute("UPDATE campaigns SET status = 'sending' WHERE id = $1", mine)
    shown = data(await alice.get(f"/v1/campaigns/{mine}"))
    assert shown["status"] == "draft" and shown["name"] == "mine"
    error(await alice.post(f"/v1/campaigns/{mine}/pause"), 409, "campaign_state_conflict")
    error(await alice.post(f"/v1/campaigns/{mine}/cancel"), 409, "campaign_state_conflict")
    status = await api_pool.fetchval(
        "SELECT status FROM campaigns WHERE id = $1 AND account_id = $2", mine, bob.account_id
    )
    assert status == "sending"
    listed = data(await bob.get("/v1/campaigns"))
    assert any(c["id"] == mine and c["name"] == "theirs" for c in listed)


async def test_transliteration_drops_the_goal_from_ucs2_to_gsm7_segments(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    body = "“Spring sale” — it’s on " + "x" * 90  # 114 characters: 2 UCS-2 parts, 1 GSM-7
    draft = {
        "name": "Smart quotes",
        "channel": "sms",
        "body": body,
        "destinations": ["+14155550101", "+14155550102"],
    }
    cid = data(await alice.post("/v1/campaigns", draft), 201)["id"]
    before = data(await alice.post(f"/v1/campaigns/{cid}/calculate-goal"))
    price = Decimal(str(before["unit_price"]))
    assert before["recipients"] == 2 and before["units_per_message"] == 2
    assert Decimal(str(before["cost"])) == 2 * 2 * price

    data(await alice.put(f"/v1/campaigns/{cid}", {"content": {"sms": {"transliterate": True}}}))
    after = data(await alice.post(f"/v1/campaigns/{cid}/calculate-goal"))
    assert after["recipients"] == 2 and after["units_per_message"] == 1
    assert Decimal(str(after["cost"])) == 2 * 1 * price

    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    raw = next(
        e for e in await _outbox_events(api_pool, alice.account_id) if e["campaign_id"] == cid
    )
    assert raw["content"]["sms"] == {"body": body, "transliterate": True}
    event = parse_campaign_confirmed(raw)
    assert event.content.sms is not None and event.content.sms.transliterate


async def test_a_fallback_policy_goes_into_the_event_and_bad_ones_name_the_field(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    content = {
        "whatsapp": {"template_name": "spring_sale", "language": "en_US"},
        "sms": {"sender": "Herald", "body": "Hi"},
    }
    base = {"name": "Policy", "sending_mode": "WHATSAPP_SMS", "content": content, "tags": ["p"]}
    policy = [
        {"channel": "whatsapp", "after_s": 30, "success": "delivered"},
        {"channel": "sms", "success": "sent"},
    ]
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    cid = data(
        await alice.post("/v1/campaigns", {**base, "fallback": policy, "scheduled_at": later}),
        201,
    )["id"]
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    raw = next(
        e for e in await _outbox_events(api_pool, alice.account_id) if e["campaign_id"] == cid
    )
    assert raw["fallback"] == policy
    event = parse_campaign_confirmed(raw)
    assert [(s.channel.value, s.after_s, s.success.value) for s in event.fallback] == [
        ("whatsapp", 30, "delivered"),
        ("sms", None, "sent"),
    ]
    # A scheduled campaign's change rewrites the pipeline row; its policy column follows.
    data(await alice.put(f"/v1/campaigns/{cid}", {"fallback": [{"channel": "sms"}]}))
    stored = await api_pool.fetchval("SELECT fallback_policy FROM campaigns WHERE id = $1", cid)
    assert stored == {"sms": {"success": "delivered"}}

    bad = [
        ([{"channel": "rcs"}], "fallback.0.channel", "channel of the chain"),
        ([{"channel": "sms"}, {"channel": "sms"}], "fallback.1.channel", "has a step already"),
        ([{"channel": "sms", "after_s": -1}], "fallback.0.after_s", ""),
        ([{"channel": "sms", "after_s": 10**8}], "fallback.0.after_s", ""),
        ([{"channel": "whatsapp", "success": "read"}], "fallback.0.success", "read cannot be"),
        ([{"channel": "whatsapp", "success": "opened"}], "fallback.0.success", "one of"),
    ]
    for fallback, field, words in bad:
        detail = error(
            await alice.post("/v1/campaigns", {**base, "fallback": fallback}),
            422,
            "validation_failed",
        )
        assert detail["field"] == field, detail
        assert words in detail["message"], detail
    detail = error(
        await alice.put(f"/v1/campaigns/{cid}", {"fallback": [{"channel": "viber"}]}),
        422,
        "validation_failed",
    )
    assert detail["field"] == "fallback.0.channel"
