"""API abuse budgets: invented keys are throttled by client address before any lookup, an
account's keys share one rate, and an account holds a bounded number of live keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from herald import metrics
from herald.api.app import create_app
from herald.api.config import ApiConfig
from herald.store import api_keys


@pytest.fixture
async def client_for(api_pool: asyncpg.Pool) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    async def make(config: ApiConfig, address: str = "203.0.113.7") -> httpx.AsyncClient:
        app = create_app(pool=api_pool, config=config)
        transport = httpx.ASGITransport(app=app, client=(address, 40_000))
        client = httpx.AsyncClient(transport=transport, base_url="http://herald.test")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def _count(reason: str) -> float:
    return metrics.API_AUTH_FAILURES.labels(reason=reason)._value.get()


async def test_invented_keys_are_throttled_by_address_before_any_lookup(
    client_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = 0
    real = api_keys.account_for

    async def counted(pool: asyncpg.Pool, key: str) -> str | None:
        nonlocal lookups
        lookups += 1
        return await real(pool, key)

    monkeypatch.setattr(api_keys, "account_for", counted)
    config = ApiConfig(auth_failure_rate_per_s=0.01, auth_failure_burst=5)
    attacker = await client_for(config)
    invalid, throttled = _count("invalid"), _count("throttled")
    codes = [
        (await attacker.get("/v1/campaigns", headers={"X-API-Key": f"hk_invented_{i}"})).status_code
        for i in range(40)
    ]
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 35
    assert lookups == 5
    assert _count("invalid") - invalid == 5 and _count("throttled") - throttled == 35
    # Another address is not held to this one's failures.
    other = await client_for(config, address="198.51.100.9")
    answer = await other.get("/v1/campaigns", headers={"X-API-Key": "hk_invented_x"})
    assert answer.status_code == 401


async def test_an_accounts_keys_share_one_rate(client_for: Any, api_pool: asyncpg.Pool) -> None:
    await api_keys.ensure_account(api_pool, "guarded", "guarded")
    keys = [(await api_keys.create(api_pool, "guarded"))[0] for _ in range(20)]
    client = await client_for(ApiConfig(rate_limit_per_s=0.01, rate_limit_burst=10))
    codes = [
        (await client.get("/v1/campaigns", headers={"X-API-Key": keys[i % 20]})).status_code
        for i in range(60)
    ]
    # Each key alone is far under its own burst; the account as a whole is not.
    assert codes.count(200) == 10 and codes.count(429) == 50
    refused = await client.get("/v1/campaigns", headers={"X-API-Key": keys[0]})
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


async def test_live_keys_per_account_are_capped(client_for: Any, api_pool: asyncpg.Pool) -> None:
    await api_keys.ensure_account(api_pool, "capped", "capped")
    first, _ = await api_keys.create(api_pool, "capped")
    client = await client_for(ApiConfig(max_keys_per_account=3))
    headers = {"X-API-Key": first}
    made = [await client.post("/v1/api-keys", json={}, headers=headers) for _ in range(3)]
    assert [m.status_code for m in made] == [201, 201, 409]
    assert made[2].json()["error"]["code"] == "api_key_limit"
    revoked = await client.delete(f"/v1/api-keys/{made[0].json()['data']['id']}", headers=headers)
    assert revoked.status_code == 204
    again = await client.post("/v1/api-keys", json={}, headers=headers)
    assert again.status_code == 201
