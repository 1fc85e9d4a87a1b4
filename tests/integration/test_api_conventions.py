"""Issue 16 against the real API: numbered errors that always name their field, the checks
seed 003's catalogue implies (sender per channel, unknown or unreachable audiences), 415 for a
body that is not JSON, and error timestamps in `Z`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from herald.domain.events import parse_campaign_confirmed
from herald.domain.status import RecipientState, RecipientStatus
from herald.store import campaigns, recipients
from tests.integration.api_support import Caller, data, error, sms_reported


async def _draft(caller: Caller, **fields: Any) -> str:
    body = {"name": "conv", **fields}
    return str(data(await caller.post("/v1/campaigns", body), 201)["id"])


async def test_errors_carry_a_number_a_field_and_a_z_timestamp(alice: Caller) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    detail = error(await alice.get(f"/v1/campaigns/{missing}"), 404, "campaign_not_found")
    assert (detail["number"], detail["field"]) == (1601, "campaign_id")
    detail = error(await alice.get(f"/v1/contacts/{missing}"), 404, "contact_not_found")
    assert detail["field"] == "contact_id"
    detail = error(await alice.get("/v1/nothing-here"), 404, "not_found")
    assert (detail["number"], detail["field"]) == (1020, "path")
    response = await alice.http.get("/v1/contacts", headers={"X-API-Key": "wrong"})
    assert error(response, 401, "unauthorized")["field"] == "X-API-Key"
    detail = error(await alice.get("/v1/contacts", limit=0), 422, "validation_failed")
    assert (detail["number"], detail["field"]) == (1001, "limit")
    # A success timestamp ends Z too.
    assert (await alice.get("/v1/contacts")).json()["meta"]["timestamp"].endswith("Z")


async def test_a_form_or_text_body_is_415_naming_the_content_type(alice: Caller) -> None:
    headers = {"X-API-Key": alice.key}
    form = await alice.http.post("/v1/contacts", data={"phone": "+14155550100"}, headers=headers)
    detail = error(form, 415, "unsupported_media_type")
    assert (detail["number"], detail["field"]) == (1022, "Content-Type")
    text = await alice.http.post(
        "/v1/contacts",
        content=b'{"phone": "+14155550100"}',
        headers={**headers, "Content-Type": "text/plain"},
    )
    error(text, 415, "unsupported_media_type")
    # JSON with a charset, and +json types, are JSON.
    ok = await alice.http.post(
        "/v1/contacts",
        content=b'{"phone": "+14155550101"}',
        headers={**headers, "Content-Type": "application/json; charset=utf-8"},
    )
    data(ok, 201)
    # A body that is not JSON at all, or missing, names `body`.
    broken = await alice.http.post(
        "/v1/contacts", content=b"{", headers={**headers, "Content-Type": "application/json"}
    )
    assert error(broken, 400, "malformed_request")["field"] == "body"
    assert error(await alice.post("/v1/contacts"), 422, "validation_failed")["field"] == "body"


async def test_senders_are_checked_per_channel(alice: Caller) -> None:
    bad = {"name": "s", "channel": "sms", "body": "Hi", "sender": "!!!! not a sender !!!!"}
    detail = error(await alice.post("/v1/campaigns", bad), 422, "sender_invalid")
    assert (detail["number"], detail["field"]) == (1604, "sender")
    for content, field in (
        ({"sms": {"sender": "TooLongSender1", "body": "x"}}, "content.sms.sender"),
        ({"rcs": {"agent_id": "agent 1", "text": "x"}}, "content.rcs.agent_id"),
        ({"viber": {"sender": "v" * 29, "text": "x"}}, "content.viber.sender"),
        ({"email": {"from": "nobody", "subject": "s", "body": "b"}}, "content.email.from"),
    ):
        body = {"name": "s", "sending_mode": "SMS", "content": content}
        assert error(await alice.post("/v1/campaigns", body), 422, "sender_invalid")["field"] == (
            field
        )
    variant = {
        "name": "ab",
        "channel": "sms",
        "body": "Hi",
        "ab_test": {
            "variants": [
                {"name": "a", "weight": 50},
                {"name": "b", "weight": 50, "sender": "no-dashes-allowed"},
            ]
        },
    }
    detail = error(await alice.post("/v1/campaigns", variant), 422, "sender_invalid")
    assert detail["field"] == "ab_test.variants.1.sender"
    # Good ones of every kind pass.
    for sender in ("Herald", "+15005550006", "12345"):
        await _draft(alice, channel="sms", body="Hi", sender=sender)
    await _draft(alice, channel="email", body="b", subject="s", sender="Herald <n@herald.example>")
    # A change to a bad sender is refused the same way.
    cid = await _draft(alice, channel="sms", body="Hi", sender="Herald")
    detail = error(await alice.put(f"/v1/campaigns/{cid}", {"sender": "@@"}), 422, "sender_invalid")
    assert detail["field"] == "sender"


async def test_a_templates_sender_is_checked_at_send(alice: Caller) -> None:
    template = data(
        await alice.post(
            "/v1/templates",
            {"name": "t", "channel": "sms", "body": "Hi", "sender": "not a valid sender!"},
        ),
        201,
    )
    data(await alice.post("/v1/contacts", {"phone": "+14155550142", "tags": ["tpl"]}), 201)
    cid = await _draft(alice, channel="sms", template_id=template["id"], tags=["tpl"])
    detail = error(await alice.post(f"/v1/campaigns/{cid}/send"), 422, "sender_invalid")
    assert detail["field"] == "template_id"


async def test_unknown_contact_ids_are_named(alice: Caller, bob: Caller) -> None:
    mine = data(await alice.post("/v1/contacts", {"phone": "+14155550150"}), 201)["id"]
    theirs = data(await bob.post("/v1/contacts", {"phone": "+14155550151"}), 201)["id"]
    never = "00000000-0000-4000-8000-00000000abcd"
    cid = await _draft(alice, channel="sms", body="Hi", contact_ids=[mine, theirs, never])
    detail = error(await alice.post(f"/v1/campaigns/{cid}/send"), 422, "audience_invalid")
    assert (detail["number"], detail["field"]) == (1606, "contact_ids")
    assert theirs in detail["message"] and never in detail["message"]
    assert mine not in detail["message"]
    junk = await _draft(alice, channel="sms", body="Hi", contact_ids=["not-a-uuid"])
    detail = error(await alice.post(f"/v1/campaigns/{junk}/send"), 422, "audience_invalid")
    assert detail["field"] == "contact_ids"
    good = await _draft(alice, channel="sms", body="Hi", contact_ids=[mine])
    data(await alice.post(f"/v1/campaigns/{good}/send"), 202)


async def test_an_invalid_segment_or_list_names_its_field(alice: Caller) -> None:
    cid = await _draft(alice, channel="sms", body="Hi", segment_id="not-a-segment")
    detail = error(await alice.post(f"/v1/campaigns/{cid}/send"), 422, "audience_invalid")
    assert detail["field"] == "segment_id"
    cid = await _draft(alice, channel="sms", body="Hi", list_id="not-a-list")
    detail = error(await alice.post(f"/v1/campaigns/{cid}/send"), 422, "audience_invalid")
    assert detail["field"] == "list_ids"


async def test_an_audience_its_channels_cannot_reach_is_refused(alice: Caller) -> None:
    email = {"body": "b", "subject": "s", "sender": "news@herald.example"}
    phones = await _draft(alice, channel="email", destinations=["+14155550160"], **email)
    detail = error(
        await alice.post(f"/v1/campaigns/{phones}/confirm"), 422, "audience_channel_mismatch"
    )
    assert (detail["number"], detail["field"]) == (1613, "destinations")
    viber = await _draft(
        alice, channel="viber", body="b", sender="Herald", destinations=["+14155550160"]
    )
    error(await alice.post(f"/v1/campaigns/{viber}/send"), 422, "audience_channel_mismatch")
    # Phone-only contacts on an email campaign: nobody to send to.
    phone_only = data(await alice.post("/v1/contacts", {"phone": "+14155550161"}), 201)["id"]
    to_contacts = await _draft(alice, channel="email", contact_ids=[phone_only], **email)
    detail = error(
        await alice.post(f"/v1/campaigns/{to_contacts}/send"), 422, "audience_not_reachable"
    )
    assert (detail["number"], detail["field"]) == (1617, "contact_ids")
    # One reachable contact is enough: the others are skipped per recipient.
    both = data(
        await alice.post("/v1/contacts", {"phone": "+14155550162", "email": "b@herald.example"}),
        201,
    )["id"]
    mixed = await _draft(alice, channel="email", contact_ids=[phone_only, both], **email)
    data(await alice.post(f"/v1/campaigns/{mixed}/send"), 202)
    # The same phone numbers through a chain with SMS are fine.
    chained = await _draft(
        alice,
        sending_mode="WHATSAPP_SMS",
        destinations=["+14155550160"],
        content={
            "whatsapp": {"template_name": "hello", "language": "en"},
            "sms": {"body": "Hi"},
        },
    )
    data(await alice.post(f"/v1/campaigns/{chained}/send"), 202)


async def test_a_schedule_that_is_not_a_time_is_1609(alice: Caller) -> None:
    bad = {"name": "s", "channel": "sms", "body": "Hi", "scheduled_at": "tomorrow"}
    detail = error(await alice.post("/v1/campaigns", bad), 422, "schedule_invalid")
    assert (detail["number"], detail["field"]) == (1609, "scheduled_at")
    naive = {**bad, "scheduled_at": "2099-01-01T10:00:00"}
    error(await alice.post("/v1/campaigns", naive), 422, "schedule_invalid")
    past = {**bad, "scheduled_at": "2000-01-01T10:00:00Z"}
    assert error(await alice.post("/v1/campaigns", past), 422, "schedule_in_past")["number"] == (
        1522
    )


async def _received_by_scheduler(pool: asyncpg.Pool, account: str, campaign_id: str) -> None:
    """What the scheduler does on campaign.confirmed: insert the campaign (a replay when the
    API made its row at confirm) and expand it."""
    raw = await pool.fetchval(
        "SELECT payload FROM outbox WHERE key = $1 AND payload ->> 'campaign_id' = $2",
        account,
        campaign_id,
    )
    event = parse_campaign_confirmed(raw)
    await campaigns.insert(pool, event, raw)
    async with pool.acquire() as conn, conn.transaction():
        await campaigns.expand(conn, event)


async def _fold(pool: asyncpg.Pool, campaign_id: str, rid: int, status: RecipientStatus) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await recipients.write_states(
            conn, [((campaign_id, rid), RecipientState(status, True, "sms"))]
        )


async def test_recipient_rows_carry_seed_004_fields(alice: Caller, api_pool: asyncpg.Pool) -> None:
    ids = []
    for i, name in enumerate(("Ann", "Ben", "Cy")):
        body = {"phone": f"+1415888{i:04d}", "first_name": name, "tags": ["r4"]}
        ids.append(data(await alice.post("/v1/contacts", body), 201)["id"])
    cid = await _draft(
        alice,
        channel="sms",
        body="Hi {{1}} {{code}}",
        tags=["r4"],
        variable_mappings={"1": "first_name"},
        recipient_variables={ids[0]: {"code": "X1"}},
    )
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    await _received_by_scheduler(api_pool, alice.account_id, cid)
    by_contact = {
        str(r["contact_id"]): r["id"]
        for r in await api_pool.fetch(
            "SELECT id, contact_id FROM recipients WHERE campaign_id = $1", cid
        )
    }
    took, refused, pending = (by_contact[i] for i in ids)
    for rid, outcome in ((took, "accepted"), (refused, "rejected"), (pending, "pending")):
        await api_pool.execute(
            "INSERT INTO attempts (campaign_id, recipient_id, attempt_no, channel, provider, "
            "outcome) VALUES ($1, $2, 1, 'sms', 'twilio', $3)",
            cid,
            rid,
            outcome,
        )
    await _fold(api_pool, cid, took, RecipientStatus.DELIVERED)
    rows = {r["id"]: r for r in data(await alice.get(f"/v1/campaigns/{cid}/recipients"))}
    first = rows[took]
    assert first["delivered_at"] is not None and first["read_at"] is None
    await _fold(api_pool, cid, took, RecipientStatus.READ)
    rows = {r["id"]: r for r in data(await alice.get(f"/v1/campaigns/{cid}/recipients"))}
    now_read = rows[took]
    # Read keeps the first delivery's time and adds its own.
    assert now_read["delivered_at"] == first["delivered_at"]
    assert now_read["read_at"] is not None and now_read["read_at"].endswith("Z")
    assert now_read["sent_at"] is not None and now_read["created_at"] is not None
    assert now_read["variables"]["1"] == "Ann" and now_read["variables"]["code"] == "X1"
    assert now_read["variables"]["first_name"] == "Ann"
    # The provider refused it, or has not answered yet: nothing was sent.
    assert rows[refused]["sent_at"] is None and rows[pending]["sent_at"] is None
    assert rows[refused]["variables"]["1"] == "Ben" and "code" not in rows[refused]["variables"]
    assert {r["delivered_at"] for r in (rows[refused], rows[pending])} == {None}
    assert all(r["created_at"] for r in rows.values())


async def test_ab_delivery_rate_is_rounded(alice: Caller, api_pool: asyncpg.Pool) -> None:
    for i in range(6):
        body = {"phone": f"+1415889{i:04d}", "tags": ["ab4"]}
        data(await alice.post("/v1/contacts", body), 201)
    cid = await _draft(
        alice,
        channel="sms",
        body="Hi",
        tags=["ab4"],
        ab_test={"variants": [{"name": "a", "weight": 99}, {"name": "b", "weight": 1}]},
    )
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    await _received_by_scheduler(api_pool, alice.account_id, cid)
    # Six recipients of variant a sent, five delivered: 0.8333…
    # (Slots 37, 74, 11, 48, 85 and 22 all fall in variant a's 0..98.)
    for rid in range(1, 7):
        await sms_reported(
            api_pool, cid, rid, RecipientStatus.SENT if rid == 1 else RecipientStatus.DELIVERED
        )
    (a, _) = data(await alice.get(f"/v1/campaigns/{cid}/ab-test"))["variants"]
    assert (a["sent"], a["delivered"]) == (6, 5)
    assert a["delivery_rate"] == 0.8333


async def test_search_finds_national_numbers_and_lists_report_a_total(alice: Caller) -> None:
    us = data(await alice.post("/v1/contacts", {"phone": "+14152495200", "tags": ["n5"]}), 201)
    uk = data(await alice.post("/v1/contacts", {"phone": "+447700900123", "tags": ["n5"]}), 201)
    data(await alice.post("/v1/contacts", {"email": "other@herald.example", "tags": ["n5"]}), 201)
    for text, found in (
        ("4152495200", us),  # national, without the country code
        ("(415) 249-52", us),  # a prefix of it, with punctuation
        ("+1 415 249 5200", us),
        ("14152495200", us),  # digits with the country code, no +
        ("07700 900123", uk),  # national with its trunk 0
        ("7700900123", uk),
    ):
        body = (await alice.get("/v1/contacts", search=text)).json()
        assert [c["id"] for c in body["data"]] == [found["id"]], text
        assert (body["meta"]["total"], body["meta"]["total_exact"]) == (1, True), text
    body = (await alice.get("/v1/contacts", tag="n5", limit=2)).json()
    assert len(body["data"]) == 2 and body["meta"]["has_more"]
    assert body["meta"]["total"] == 3 and body["meta"]["total_exact"] is True
    assert (await alice.get("/v1/contacts", search="%")).json()["meta"]["total"] == 0


async def test_the_timeline_keeps_delivered_once_read(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    contact = data(await alice.post("/v1/contacts", {"phone": "+14155550666", "tags": ["t6"]}), 201)
    cid = await _draft(alice, channel="sms", body="Hi", tags=["t6"])
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    await _received_by_scheduler(api_pool, alice.account_id, cid)
    await api_pool.execute(
        "INSERT INTO attempts (campaign_id, recipient_id, attempt_no, channel, provider, "
        "outcome, status, accepted, updated_at) VALUES ($1, 1, 1, 'sms', 'twilio', "
        "'accepted', 'read', true, now() + interval '2 seconds')",
        cid,
    )
    await _fold(api_pool, cid, 1, RecipientStatus.DELIVERED)
    await _fold(api_pool, cid, 1, RecipientStatus.READ)
    events = data(await alice.get(f"/v1/contacts/{contact['id']}/activity"))
    assert [e["type"] for e in events] == ["message.read", "message.delivered", "message.sent"]
    assert {e["message_id"] for e in events} == {f"{cid}.1.1"}
    read, delivered, sent = (datetime.fromisoformat(e["timestamp"]) for e in events)
    assert sent <= delivered <= read


async def test_a_voice_opt_out_is_stored_listed_and_kept_apart(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    contact = data(
        await alice.post("/v1/contacts", {"phone": "+14155550610", "tags": ["v10"]}), 201
    )
    path = f"/v1/contacts/{contact['id']}/preferences"
    got = data(await alice.put(path, {"preferences": {"voice": False, "sms": True}}))
    assert got["preferences"] == {"sms": True, "voice": False}
    assert data(await alice.get(path))["preferences"] == {"sms": True, "voice": False}
    listed = data(await alice.get("/v1/contacts/optouts", channel="voice"))
    assert [(c["id"], c["opted_out"]) for c in listed] == [(contact["id"], ["voice"])]
    assert data(await alice.get("/v1/contacts/optouts", channel="sms")) == []
    detail = error(await alice.put(path, {"preferences": {"fax": False}}), 422, "validation_failed")
    assert detail["field"].startswith("preferences")
    # Herald sends no voice: a voice opt-out stops nothing on the channels it sends.
    cid = await _draft(alice, channel="sms", body="Hi", tags=["v10"])
    data(await alice.post(f"/v1/campaigns/{cid}/send"), 202)
    await _received_by_scheduler(api_pool, alice.account_id, cid)
    (row,) = await recipients.queued_chunk(api_pool, cid, 0, 10, 10)
    assert row.opted_out == frozenset()
