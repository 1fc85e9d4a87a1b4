"""Idempotency-Key on POST against real PostgreSQL: a retry gets the first answer, never a
second effect; keys are per account; failures free the key; misuse is a clear 4xx."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import orjson

from herald.api.idempotency import request_hash
from tests.integration.api_support import Caller, data, error

DRAFT = {"name": "Once", "channel": "sms", "body": "Hi", "tags": ["t"]}


async def _post(caller: Caller, path: str, body: Any, key: str) -> httpx.Response:
    return await caller.http.post(
        path, json=body, headers={"X-API-Key": caller.key, "Idempotency-Key": key}
    )


async def test_a_retry_gets_the_first_answer_and_no_second_effect(alice: Caller) -> None:
    first = await _post(alice, "/v1/campaigns", DRAFT, "create-1")
    again = await _post(alice, "/v1/campaigns", DRAFT, "create-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(data(await alice.get("/v1/campaigns"))) == 1

    cid = first.json()["data"]["id"]
    sent = await _post(alice, f"/v1/campaigns/{cid}/send", None, "send-1")
    resent = await _post(alice, f"/v1/campaigns/{cid}/send", None, "send-1")
    assert sent.status_code == resent.status_code == 202
    assert resent.json()["data"]["event_id"] == sent.json()["data"]["event_id"]
    # Without the key, a second send is the state conflict it always was.
    error(await alice.post(f"/v1/campaigns/{cid}/send"), 409, "campaign_state_conflict")


async def test_a_key_names_one_request_of_one_account(alice: Caller, bob: Caller) -> None:
    mine = data(await _post(alice, "/v1/campaigns", DRAFT, "shared"), 201)
    other = error(
        await _post(alice, "/v1/campaigns", {**DRAFT, "name": "Twice"}, "shared"),
        422,
        "idempotency_key_reused",
    )
    assert other["field"] == "Idempotency-Key"
    # The same key string is another account's own.
    theirs = data(await _post(bob, "/v1/campaigns", DRAFT, "shared"), 201)
    assert theirs["id"] != mine["id"]
    assert [c["id"] for c in data(await bob.get("/v1/campaigns"))] == [theirs["id"]]


async def test_a_failed_request_frees_its_key(alice: Caller) -> None:
    bad = await _post(alice, "/v1/campaigns", {"name": "x"}, "k-fail")
    assert bad.status_code == 422 and "idempotent-replayed" not in bad.headers
    # Nothing was kept, so the key can carry a corrected request.
    data(await _post(alice, "/v1/campaigns", DRAFT, "k-fail"), 201)


async def test_misuse_is_a_clear_4xx(alice: Caller, api_pool: asyncpg.Pool) -> None:
    detail = error(await _post(alice, "/v1/campaigns", DRAFT, "x" * 256), 422, "validation_failed")
    assert detail["field"] == "Idempotency-Key"
    error(await _post(alice, "/v1/campaigns", DRAFT, "tab\there"), 422, "validation_failed")
    big = {**DRAFT, "description": "d" * 300_000}
    error(await _post(alice, "/v1/campaigns", big, "big"), 413, "payload_too_large")
    # A request still running elsewhere (its row has no answer yet).
    digest = b"\0" * 32
    await api_pool.execute(
        "INSERT INTO idempotency_keys (account_id, key, request_hash) VALUES ($1, 'busy', $2)",
        alice.account_id,
        digest,
    )
    error(await _post(alice, "/v1/campaigns", DRAFT, "busy"), 422, "idempotency_key_reused")
    # The body exactly as the client sends it (compact JSON).
    same = request_hash("POST", "/v1/campaigns", b"", orjson.dumps(DRAFT))
    await api_pool.execute(
        "UPDATE idempotency_keys SET request_hash = $2 WHERE account_id = $1 AND key = 'busy'",
        alice.account_id,
        same,
    )
    error(await _post(alice, "/v1/campaigns", DRAFT, "busy"), 409, "idempotency_key_in_flight")
    # Its process died: after a minute the key is taken over and the request runs.
    await api_pool.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '61 seconds' "
        "WHERE account_id = $1 AND key = 'busy'",
        alice.account_id,
    )
    data(await _post(alice, "/v1/campaigns", DRAFT, "busy"), 201)
    # Without a valid API key the key is never looked at: 401 as always.
    response = await alice.http.post(
        "/v1/campaigns", json=DRAFT, headers={"X-API-Key": "nope", "Idempotency-Key": "k"}
    )
    assert response.status_code == 401
