"""Contacts over the API against real PostgreSQL: CRUD, search, tags, preferences, opt-outs."""

from __future__ import annotations

import pytest

from tests.integration.api_support import Caller, data, error

JANE = {
    "phone": "+14155552671",
    "email": "jane@example.com",
    "first_name": "Jane",
    "last_name": "Doe",
    "country_code": "us",
    "lifecycle_stage": "lead",
    "tags": ["beta-tester"],
    "metadata": {"plan": "gold", "seats": 5},
}


async def test_create_get_update_delete(alice: Caller) -> None:
    created = data(await alice.post("/v1/contacts", JANE), 201)
    assert created["phone"] == "+14155552671"
    assert created["country_code"] == "US"
    assert created["tags"] == ["beta-tester"]
    cid = created["id"]
    assert data(await alice.get(f"/v1/contacts/{cid}"))["email"] == "jane@example.com"

    updated = data(
        await alice.put(
            f"/v1/contacts/{cid}", {"first_name": "Janet", "metadata": {"seats": 7, "plan": None}}
        )
    )
    assert updated["first_name"] == "Janet"
    assert updated["last_name"] == "Doe"
    assert updated["metadata"] == {"seats": 7}

    assert (await alice.delete(f"/v1/contacts/{cid}")).status_code == 204
    error(await alice.get(f"/v1/contacts/{cid}"), 404, "contact_not_found")


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"phone": "4155552671"}, "invalid_phone", "phone"),
        ({"phone": "+1415"}, "invalid_phone", "phone"),
        ({"email": "not-an-email"}, "invalid_email", "email"),
        ({"first_name": "Nobody"}, "contact_needs_address", "phone"),
        ({"phone": "+14155552671", "colour": "red"}, "validation_failed", "colour"),
        ({"phone": "+14155552671", "tags": "vip"}, "validation_failed", "tags"),
        ({"phone": "+14155552671", "country_code": "USA"}, "validation_failed", "country_code"),
    ],
)
async def test_validation_errors_name_the_field(
    alice: Caller, body: dict[str, object], code: str, field: str
) -> None:
    detail = error(await alice.post("/v1/contacts", body), 422, code)
    assert detail["field"] == field


async def test_malformed_json_is_400(alice: Caller) -> None:
    response = await alice.http.post(
        "/v1/contacts",
        content=b"{nope",
        headers={"X-API-Key": alice.key, "Content-Type": "application/json"},
    )
    error(response, 400, "malformed_request")


async def test_auth_is_required(alice: Caller) -> None:
    error(await alice.http.get("/v1/contacts"), 401, "unauthorized")
    error(
        await alice.http.get("/v1/contacts", headers={"X-API-Key": "hk_wrong"}), 401, "unauthorized"
    )


async def test_search_and_pagination(alice: Caller) -> None:
    for i in range(25):
        data(
            await alice.post(
                "/v1/contacts",
                {
                    "phone": f"+1415555{i:04d}",
                    "email": f"person{i}@corp.example",
                    "first_name": f"Person{i}",
                    "lifecycle_stage": "customer" if i % 2 else "lead",
                },
            ),
            201,
        )
    first = await alice.get("/v1/contacts", limit=10)
    body = first.json()
    assert len(body["data"]) == 10
    assert body["meta"]["has_more"] is True
    seen = [c["id"] for c in body["data"]]
    cursor = body["meta"]["next_cursor"]
    while cursor:
        body = (await alice.get("/v1/contacts", limit=10, cursor=cursor)).json()
        seen += [c["id"] for c in body["data"]]
        cursor = body["meta"]["next_cursor"]
    assert len(seen) == len(set(seen)) == 25

    hits = data(await alice.get("/v1/contacts", search="person1"))
    assert {c["first_name"] for c in hits} >= {"Person1", "Person10", "Person19"}
    assert all(c["first_name"].startswith("Person1") for c in hits)
    by_phone = data(await alice.get("/v1/contacts", search="+1 415 555 0007"))
    assert [c["first_name"] for c in by_phone] == ["Person7"]
    by_email = data(await alice.get("/v1/contacts", search="person3@corp.example"))
    assert [c["first_name"] for c in by_email] == ["Person3"]
    leads = data(await alice.get("/v1/contacts", lifecycle_stage="lead", limit=100))
    assert len(leads) == 13

    for hostile in ["' OR 1=1 --", "x' & !y | z:*", "%", "\\", "person1') OR ('1'='1"]:
        response = await alice.get("/v1/contacts", search=hostile)
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) <= 1


async def test_limit_and_cursor_are_validated(alice: Caller) -> None:
    error(await alice.get("/v1/contacts", limit=101), 422, "validation_failed")
    error(await alice.get("/v1/contacts", limit=0), 422, "validation_failed")
    error(await alice.get("/v1/contacts", cursor="garbage!"), 400, "invalid_cursor")
    detail = error(await alice.get("/v1/contacts", stauts="x"), 422, "unknown_parameter")
    assert detail["field"] == "stauts"


async def test_tags_are_added_once_and_removed(alice: Caller) -> None:
    cid = data(await alice.post("/v1/contacts", JANE), 201)["id"]
    tagged = data(
        await alice.post(
            f"/v1/contacts/{cid}/tags", {"tags": ["vip", "beta-tester", "vip", "enterprise"]}
        )
    )
    assert tagged["tags"] == ["beta-tester", "vip", "enterprise"]
    removed = data(await alice.delete(f"/v1/contacts/{cid}/tags/vip"))
    assert removed["tags"] == ["beta-tester", "enterprise"]


async def test_preferences_and_optouts(alice: Caller) -> None:
    cid = data(await alice.post("/v1/contacts", JANE), 201)["id"]
    other = data(await alice.post("/v1/contacts", {"email": "x@example.com"}), 201)["id"]
    prefs = data(
        await alice.put(
            f"/v1/contacts/{cid}/preferences",
            {"preferences": {"sms": True, "whatsapp": True, "email": False}},
        )
    )
    assert prefs["preferences"] == {"email": False, "sms": True, "whatsapp": True}
    error(
        await alice.put(f"/v1/contacts/{cid}/preferences", {"preferences": {"fax": False}}),
        422,
        "validation_failed",
    )
    optouts = data(await alice.get("/v1/contacts/optouts"))
    assert [o["id"] for o in optouts] == [cid]
    assert optouts[0]["opted_out"] == ["email"]
    assert data(await alice.get("/v1/contacts/optouts", channel="sms")) == []
    assert other not in [o["id"] for o in optouts]


async def test_other_accounts_see_nothing(alice: Caller, bob: Caller) -> None:
    cid = data(await alice.post("/v1/contacts", JANE), 201)["id"]
    for response in [
        await bob.get(f"/v1/contacts/{cid}"),
        await bob.put(f"/v1/contacts/{cid}", {"first_name": "Mallory"}),
        await bob.post(f"/v1/contacts/{cid}/tags", {"tags": ["x"]}),
        await bob.delete(f"/v1/contacts/{cid}/tags/beta-tester"),
        await bob.put(f"/v1/contacts/{cid}/preferences", {"preferences": {"sms": False}}),
        await bob.get(f"/v1/contacts/{cid}/preferences"),
        await bob.get(f"/v1/contacts/{cid}/activity"),
        await bob.delete(f"/v1/contacts/{cid}"),
    ]:
        error(response, 404, "contact_not_found")
    assert data(await bob.get("/v1/contacts", search="jane")) == []
    assert data(await alice.get(f"/v1/contacts/{cid}"))["first_name"] == "Jane"
    error(await bob.get("/v1/contacts/not-a-uuid"), 404, "contact_not_found")


async def test_viber_user_id_is_set_moved_and_cleared(alice: Caller, bob: Caller) -> None:
    body = {**JANE, "viber_user_id": "01234567890A="}
    jane = data(await alice.post("/v1/contacts", body), 201)
    assert jane["viber_user_id"] == "01234567890A="
    assert data(await alice.get(f"/v1/contacts/{jane['id']}"))["viber_user_id"] == "01234567890A="
    listed = data(await alice.get("/v1/contacts"))
    assert [c["viber_user_id"] for c in listed] == ["01234567890A="]

    # Another account's bot user is another contact's business.
    other = data(await bob.post("/v1/contacts", {**body, "phone": "+14155550000"}), 201)
    assert other["viber_user_id"] == "01234567890A="

    # Set on another contact of the account, the user id moves there.
    john = data(await alice.post("/v1/contacts", {"phone": "+14155550001"}), 201)
    assert john["viber_user_id"] is None
    moved = data(await alice.put(f"/v1/contacts/{john['id']}", {"viber_user_id": "01234567890A="}))
    assert moved["viber_user_id"] == "01234567890A="
    assert data(await alice.get(f"/v1/contacts/{jane['id']}"))["viber_user_id"] is None
    assert data(await bob.get(f"/v1/contacts/{other['id']}"))["viber_user_id"] == "01234567890A="

    # Other changes keep it; null clears it.
    kept = data(await alice.put(f"/v1/contacts/{john['id']}", {"first_name": "John"}))
    assert kept["viber_user_id"] == "01234567890A="
    cleared = data(await alice.put(f"/v1/contacts/{john['id']}", {"viber_user_id": None}))
    assert cleared["viber_user_id"] is None

    # Not the account's contact: 404, and nothing is linked.
    error(
        await bob.put(f"/v1/contacts/{john['id']}", {"viber_user_id": "zz"}),
        404,
        "contact_not_found",
    )
    assert data(await alice.get(f"/v1/contacts/{john['id']}"))["viber_user_id"] is None


@pytest.mark.parametrize("value", ["", "has space", "x" * 201, 12345])
async def test_viber_user_id_is_validated(alice: Caller, value: object) -> None:
    error(
        await alice.post("/v1/contacts", {**JANE, "viber_user_id": value}),
        422,
        "validation_failed",
    )
