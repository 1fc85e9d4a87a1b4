"""API keys: the operator command, self-service keys, revocation and the bootstrap key."""

from __future__ import annotations

import asyncpg
import pytest

from herald.api.admin import keys_create
from herald.api.auth import bootstrap
from herald.settings import Settings
from herald.store import api_keys, db
from tests.integration.api_support import Caller, data, error


async def test_operator_command_prints_a_working_key(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await keys_create(Settings.development(database_url=pg_url), "acme", "ops") == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("hk_")
    async with db.pool(pg_url, max_size=1) as pool:
        assert await api_keys.account_for(pool, key) == "acme"
        stored = await pool.fetchval("SELECT key_hash FROM api_keys WHERE account_id = 'acme'")
        assert key.encode() not in bytes(stored)  # only the hash is kept
        # The SQL fallback in docs/api.md hashes the same way.
        await pool.execute(
            "INSERT INTO api_keys (account_id, key_hash, prefix) "
            "VALUES ('acme', sha256(convert_to('hk_from_sql', 'UTF8')), 'hk_from_sq')"
        )
        assert await api_keys.account_for(pool, "hk_from_sql") == "acme"
    assert await keys_create(Settings.development(database_url=pg_url), " ", "") == 2


async def test_self_service_keys_and_revocation(alice: Caller, bob: Caller) -> None:
    made = data(await alice.post("/v1/api-keys", {"name": "ci"}), 201)
    second = Caller(http=alice.http, account_id=alice.account_id, key=made["key"])
    assert data(await second.get("/v1/contacts")) == []
    listed = data(await alice.get("/v1/api-keys"))
    assert {k["name"] for k in listed} == {"test", "ci"}
    assert all("key" not in k for k in listed)
    error(await bob.delete(f"/v1/api-keys/{made['id']}"), 404, "not_found")
    assert (await alice.delete(f"/v1/api-keys/{made['id']}")).status_code == 204
    error(await second.get("/v1/contacts"), 401, "unauthorized")


async def test_bootstrap_is_idempotent(api_pool: asyncpg.Pool) -> None:
    for _ in range(2):
        await bootstrap(api_pool, account_id="dev-boot", key="hk_dev_key")
    assert await api_keys.account_for(api_pool, "hk_dev_key") == "dev-boot"
    rows = await api_pool.fetchval("SELECT count(*) FROM api_keys WHERE account_id = 'dev-boot'")
    assert rows == 1
    await bootstrap(api_pool, account_id="dev-none", key="")
    assert await api_pool.fetchval("SELECT count(*) FROM accounts WHERE id = 'dev-none'") == 0
