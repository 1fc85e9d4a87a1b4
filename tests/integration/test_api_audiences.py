"""Lists, segments and templates over the API against real PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from herald.store import segments
from tests.integration.api_support import Caller, data, error

PEOPLE = [
    {
        "phone": "+14155550001",
        "first_name": "Ann",
        "country_code": "US",
        "lifecycle_stage": "lead",
        "tags": ["enterprise", "vip"],
        "metadata": {"plan": "gold", "seats": 50, "renews": "2026-05-01"},
    },
    {
        "phone": "+14155550002",
        "first_name": "Ben",
        "country_code": "US",
        "lifecycle_stage": "lead",
        "tags": ["smb"],
        "metadata": {"plan": "free", "seats": 2},
    },
    {
        "phone": "+442071234567",
        "first_name": "Cat",
        "country_code": "GB",
        "lifecycle_stage": "customer",
        "tags": ["enterprise"],
        "metadata": {"plan": "gold", "seats": 500, "renews": "2027-01-01", "langs": ["en", "fr"]},
    },
    {
        "email": "dan@example.com",
        "first_name": "Dan",
        "lifecycle_stage": "churned",
        "metadata": {"seats": "many"},
    },
]


async def _people(caller: Caller) -> dict[str, str]:
    ids = {}
    for person in PEOPLE:
        ids[str(person["first_name"])] = data(await caller.post("/v1/contacts", person), 201)["id"]
    return ids


async def test_lists_and_members(alice: Caller, bob: Caller) -> None:
    ids = await _people(alice)
    created = data(
        await alice.post("/v1/contacts/lists", {"name": "VIP", "description": "High value"}), 201
    )
    assert created["member_count"] == 0
    lid = created["id"]
    added = data(
        await alice.post(
            f"/v1/contacts/lists/{lid}/members",
            {"contact_ids": [ids["Ann"], ids["Ben"], "00000000-0000-4000-8000-000000000000"]},
        )
    )
    assert sorted(added["added"]) == sorted([ids["Ann"], ids["Ben"]])
    assert added["not_found"] == ["00000000-0000-4000-8000-000000000000"]
    again = data(
        await alice.post(f"/v1/contacts/lists/{lid}/members", {"contact_ids": [ids["Ann"]]})
    )
    assert again["already_members"] == [ids["Ann"]] and again["added"] == []
    # Bob's contacts cannot be added to Alice's list, nor Alice's to Bob's.
    bob_contact = data(await bob.post("/v1/contacts", {"phone": "+14155559999"}), 201)["id"]
    foreign = data(
        await alice.post(f"/v1/contacts/lists/{lid}/members", {"contact_ids": [bob_contact]})
    )
    assert foreign["not_found"] == [bob_contact]
    error(
        await bob.post(f"/v1/contacts/lists/{lid}/members", {"contact_ids": [bob_contact]}),
        404,
        "list_not_found",
    )

    assert data(await alice.get(f"/v1/contacts/lists/{lid}"))["member_count"] == 2
    members = (await alice.get(f"/v1/contacts/lists/{lid}/members", limit=1)).json()
    assert len(members["data"]) == 1 and members["meta"]["has_more"]
    rest = data(
        await alice.get(
            f"/v1/contacts/lists/{lid}/members", limit=1, cursor=members["meta"]["next_cursor"]
        )
    )
    assert {members["data"][0]["id"], rest[0]["id"]} == {ids["Ann"], ids["Ben"]}

    renamed = data(await alice.put(f"/v1/contacts/lists/{lid}", {"name": "VIPs"}))
    assert renamed["name"] == "VIPs" and renamed["description"] == "High value"
    assert (await alice.delete(f"/v1/contacts/lists/{lid}/members/{ids['Ben']}")).status_code == 204
    error(
        await alice.delete(f"/v1/contacts/lists/{lid}/members/{ids['Ben']}"),
        404,
        "contact_not_found",
    )
    for response in [
        await bob.get(f"/v1/contacts/lists/{lid}"),
        await bob.put(f"/v1/contacts/lists/{lid}", {"name": "x"}),
        await bob.get(f"/v1/contacts/lists/{lid}/members"),
        await bob.delete(f"/v1/contacts/lists/{lid}"),
    ]:
        error(response, 404, "list_not_found")
    assert data(await bob.get("/v1/contacts/lists")) == []
    assert (await alice.delete(f"/v1/contacts/lists/{lid}")).status_code == 204
    assert data(await alice.get(f"/v1/contacts/{ids['Ann']}"))["first_name"] == "Ann"


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            {"country_code": "US", "lifecycle_stage": "lead", "tags": {"$contains": "enterprise"}},
            {"Ann"},
        ),
        ({"tags": {"$in": ["smb", "vip"]}}, {"Ann", "Ben"}),
        ({"metadata.plan": "gold"}, {"Ann", "Cat"}),
        ({"metadata.seats": {"$gt": 10, "$lt": 100}}, {"Ann"}),
        ({"metadata.seats": {"$gte": 2}}, {"Ann", "Ben", "Cat"}),
        ({"metadata.renews": {"$gt": "2026-12-31"}}, {"Cat"}),
        ({"metadata.langs": {"$contains": "fr"}}, {"Cat"}),
        ({"$or": [{"country_code": "GB"}, {"lifecycle_stage": "churned"}]}, {"Cat", "Dan"}),
        (
            {"$and": [{"tags": {"$contains": "enterprise"}}, {"$not": {"country_code": "GB"}}]},
            {"Ann"},
        ),
        ({"phone": {"$exists": False}}, {"Dan"}),
        (
            {"lifecycle_stage": {"$in": ["lead", "churned"]}, "first_name": {"$ne": "Ben"}},
            {"Ann", "Dan"},
        ),
        ({"created_at": {"$gt": "2020-01-01"}}, {"Ann", "Ben", "Cat", "Dan"}),
        ({"first_name": "x' OR '1'='1"}, set()),
        ({"metadata.plan": {"$in": ["gold'); DROP TABLE contacts; --"]}}, set()),
        ({"first_name": {"$contains": "%"}}, set()),
    ],
)
async def test_segment_rules_select_contacts(
    alice: Caller, rules: dict[str, object], expected: set[str]
) -> None:
    await _people(alice)
    seg = data(await alice.post("/v1/contacts/segments", {"name": "s", "rules": rules}), 201)
    assert seg["contact_count"] == len(expected)
    members = data(await alice.get(f"/v1/contacts/segments/{seg['id']}/contacts", limit=100))
    assert {m["first_name"] for m in members} == expected


async def test_segment_crud_and_isolation(
    alice: Caller, bob: Caller, api_pool: asyncpg.Pool
) -> None:
    await _people(alice)
    await _people(bob)
    seg = data(
        await alice.post(
            "/v1/contacts/segments", {"name": "Gold", "rules": {"metadata.plan": "gold"}}
        ),
        201,
    )
    assert seg["contact_count"] == 2  # Bob's gold contacts are not counted
    listed = data(await alice.get("/v1/contacts/segments"))
    assert [s["id"] for s in listed] == [seg["id"]]
    changed = data(
        await alice.put(f"/v1/contacts/segments/{seg['id']}", {"rules": {"metadata.plan": "free"}})
    )
    assert changed["contact_count"] == 1 and changed["name"] == "Gold"
    detail = error(
        await alice.post("/v1/contacts/segments", {"name": "bad", "rules": {"shoe_size": 9}}),
        422,
        "invalid_segment_rules",
    )
    assert detail["field"] == "rules.shoe_size"
    error(
        await alice.post(
            "/v1/contacts/segments", {"name": "bad", "rules": {"tags": {"$regex": "x"}}}
        ),
        422,
        "invalid_segment_rules",
    )
    for response in [
        await bob.get(f"/v1/contacts/segments/{seg['id']}"),
        await bob.put(f"/v1/contacts/segments/{seg['id']}", {"name": "x"}),
        await bob.get(f"/v1/contacts/segments/{seg['id']}/contacts"),
        await bob.delete(f"/v1/contacts/segments/{seg['id']}"),
    ]:
        error(response, 404, "segment_not_found")
    before = await api_pool.fetchval(
        "SELECT count(*) FROM contacts WHERE account_id = $1", alice.account_id
    )
    assert (await alice.delete(f"/v1/contacts/segments/{seg['id']}")).status_code == 204
    after = await api_pool.fetchval(
        "SELECT count(*) FROM contacts WHERE account_id = $1", alice.account_id
    )
    assert before == after == len(PEOPLE)


async def test_templates(alice: Caller, bob: Caller) -> None:
    sms = data(
        await alice.post(
            "/v1/templates",
            {"name": "promo", "channel": "sms", "body": "Hi {{first_name}}, {{code}}"},
        ),
        201,
    )
    assert sms["approval_status"] == "approved"
    assert sms["placeholders"] == ["first_name", "code"]
    email = data(
        await alice.post(
            "/v1/templates",
            {"name": "mail", "channel": "email", "subject": "For {{first_name}}", "body": "Body"},
        ),
        201,
    )
    assert email["placeholders"] == ["first_name"]
    for body, field in [
        ({"name": "m", "channel": "email", "body": "x"}, "subject"),
        ({"name": "w", "channel": "whatsapp", "body": "x"}, "body"),
        (
            {
                "name": "w",
                "channel": "whatsapp",
                "components": [{"type": "body", "text": "{{name}}"}],
            },
            "components.0.text",
        ),
        (
            {"name": "w", "channel": "whatsapp", "components": [{"type": "body", "text": "{{2}}"}]},
            "components.0.text",
        ),
        (
            {"name": "w", "channel": "whatsapp", "components": [{"type": "header", "text": "x"}]},
            "components",
        ),
        (
            {"name": "s", "channel": "sms", "components": [{"type": "body", "text": "x"}]},
            "components",
        ),
    ]:
        detail = error(await alice.post("/v1/templates", body), 422, "invalid_template")
        assert detail["field"] == field, body
    wa = data(
        await alice.post(
            "/v1/templates",
            {
                "name": "wa",
                "channel": "whatsapp",
                "components": [{"type": "body", "text": "Hi {{1}}"}],
            },
        ),
        201,
    )
    assert wa["approval_status"] == "pending"
    rejected = data(
        await alice.put(
            f"/v1/templates/{wa['id']}/approval", {"status": "rejected", "rejection_reason": "spam"}
        )
    )
    assert rejected["approval_status"] == "rejected" and rejected["rejection_reason"] == "spam"
    data(await alice.put(f"/v1/templates/{wa['id']}/approval", {"status": "approved"}))
    edited = data(
        await alice.put(
            f"/v1/templates/{wa['id']}", {"components": [{"type": "body", "text": "Yo {{1}}"}]}
        )
    )
    assert edited["approval_status"] == "pending"
    error(
        await alice.put(f"/v1/templates/{sms['id']}/approval", {"status": "approved"}),
        409,
        "template_needs_no_approval",
    )
    assert [t["name"] for t in data(await alice.get("/v1/templates", channel="whatsapp"))] == ["wa"]
    assert len(data(await alice.get("/v1/templates", approval_status="approved"))) == 2
    for response in [
        await bob.get(f"/v1/templates/{sms['id']}"),
        await bob.put(f"/v1/templates/{sms['id']}", {"name": "x"}),
        await bob.put(f"/v1/templates/{wa['id']}/approval", {"status": "approved"}),
        await bob.delete(f"/v1/templates/{sms['id']}"),
    ]:
        error(response, 404, "template_not_found")
    assert data(await bob.get("/v1/templates")) == []
    assert (await alice.delete(f"/v1/templates/{email['id']}")).status_code == 204


async def test_segment_condition_for_audience_expansion(
    alice: Caller, api_pool: asyncpg.Pool
) -> None:
    ids = await _people(alice)
    seg = data(
        await alice.post(
            "/v1/contacts/segments", {"name": "g", "rules": {"metadata.plan": "gold"}}
        ),
        201,
    )
    condition = await segments.audience_condition(
        api_pool, alice.account_id, seg["id"], first_param=2
    )
    found = await api_pool.fetch(
        f"SELECT c.id FROM contacts c WHERE c.account_id = $1 AND ({condition.sql})",
        alice.account_id,
        *condition.params,
    )
    assert {str(r["id"]) for r in found} == {ids["Ann"], ids["Cat"]}
    missing = await segments.audience_condition(api_pool, "other", seg["id"], first_param=2)
    assert missing.sql == "FALSE"
