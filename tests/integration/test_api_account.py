"""/v1/account/settings and admin keys: any key reads its own account's settings, only an
admin key changes them, another account's never move, bad input names its field."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from herald.store import accounts
from tests.integration.api_support import Caller, data, error

PATH = "/v1/account/settings"


async def _plain_key(admin: Caller) -> Caller:
    """A key the account made through the API, without asking for admin."""
    made = data(await admin.post("/v1/api-keys", {"name": "ci"}), 201)
    assert made["admin"] is False
    return Caller(http=admin.http, account_id=admin.account_id, key=made["key"])


async def test_an_admin_key_sets_rate_and_quiet_hours(
    alice: Caller, bob: Caller, api_pool: asyncpg.Pool
) -> None:
    assert data(await alice.get(PATH)) == {
        "rate_per_s": None,
        "quiet_start_hour": None,
        "quiet_end_hour": None,
        "confirm_requires_goal": False,
    }
    body = {"rate_per_s": 25.0, "quiet_start_hour": 22, "quiet_end_hour": 7}
    answer = {**body, "confirm_requires_goal": False}
    assert data(await alice.put(PATH, body)) == answer
    assert data(await alice.get(PATH)) == answer
    # What the workers read.
    assert await accounts.settings(api_pool, alice.account_id) == accounts.AccountSettings(
        rate_per_s=25.0, quiet_hours=(22, 7)
    )
    # Fields left out keep their value; null clears.
    assert data(await alice.put(PATH, {"rate_per_s": 40}))["quiet_start_hour"] == 22
    cleared = data(await alice.put(PATH, {"quiet_start_hour": None, "quiet_end_hour": None}))
    assert cleared == {
        "rate_per_s": 40.0,
        "quiet_start_hour": None,
        "quiet_end_hour": None,
        "confirm_requires_goal": False,
    }
    workflow = data(await alice.put(PATH, {"confirm_requires_goal": True}))
    assert workflow["confirm_requires_goal"] is True and workflow["rate_per_s"] == 40.0
    # Bob's account never moved: a key reaches only its own account.
    assert data(await bob.get(PATH))["rate_per_s"] is None
    assert await accounts.settings(api_pool, bob.account_id) == accounts.AccountSettings(
        rate_per_s=None, quiet_hours=None
    )


async def test_a_plain_key_reads_but_may_not_change(alice: Caller, api_pool: asyncpg.Pool) -> None:
    plain = await _plain_key(alice)
    assert data(await plain.get(PATH))["rate_per_s"] is None
    refused = error(await plain.put(PATH, {"rate_per_s": 5000}), 403, "admin_required")
    assert refused["field"] == "X-API-Key"
    assert (await accounts.settings(api_pool, alice.account_id)).rate_per_s is None
    # Nor may it make itself an admin key.
    asked = error(await plain.post("/v1/api-keys", {"admin": True}), 403, "admin_required")
    assert asked["field"] == "admin"


async def test_an_admin_key_makes_admin_keys(alice: Caller) -> None:
    made = data(await alice.post("/v1/api-keys", {"name": "ops", "admin": True}), 201)
    assert made["admin"] is True
    second = Caller(http=alice.http, account_id=alice.account_id, key=made["key"])
    assert data(await second.put(PATH, {"rate_per_s": 12.5}))["rate_per_s"] == 12.5
    listed = {k["name"]: k["admin"] for k in data(await alice.get("/v1/api-keys"))}
    assert listed == {"test": True, "ops": True}


async def test_another_accounts_admin_key_cannot_reach_it(alice: Caller, bob: Caller) -> None:
    data(await alice.put(PATH, {"rate_per_s": 30}))
    # Bob's admin key changes Bob's account; no path or field names another account.
    data(await bob.put(PATH, {"rate_per_s": 99}))
    assert data(await alice.get(PATH))["rate_per_s"] == 30.0
    sneaky = {"rate_per_s": 1, "account_id": alice.account_id}
    assert error(await bob.put(PATH, sneaky), 422, "validation_failed")["field"] == "account_id"
    assert data(await alice.get(PATH))["rate_per_s"] == 30.0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rate_per_s": 0}, "rate_per_s"),
        ({"rate_per_s": -3}, "rate_per_s"),
        ({"rate_per_s": 1e9}, "rate_per_s"),
        ({"rate_per_s": "fast"}, "rate_per_s"),
        ({"quiet_start_hour": 24, "quiet_end_hour": 6}, "quiet_start_hour"),
        ({"quiet_start_hour": 22, "quiet_end_hour": -1}, "quiet_end_hour"),
        ({"quiet_start_hour": 22.5, "quiet_end_hour": 6}, "quiet_start_hour"),
        ({"quiet_start_hour": 22}, "quiet_end_hour"),
        ({"quiet_end_hour": 6}, "quiet_start_hour"),
    ],
)
async def test_bad_input_names_its_field(alice: Caller, body: dict[str, Any], field: str) -> None:
    refused = error(await alice.put(PATH, body), 422, "validation_failed")
    assert refused["field"] == field, refused
    assert data(await alice.get(PATH))["quiet_start_hour"] is None


async def test_without_a_key(alice: Caller) -> None:
    response = await alice.http.get(PATH)
    assert response.status_code == 401
