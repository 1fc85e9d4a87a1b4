"""The API served by uvicorn on a real socket: OpenAPI, bootstrap key, streamed bulk import,
body limits, the activity timeline, and a clean stop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import anyio
import asyncpg
import pytest

from herald.api.app import serve
from herald.api.config import ApiConfig
from herald.domain.events import parse_campaign_confirmed
from herald.embedded import free_port
from herald.settings import Settings
from herald.store import campaigns

BOOTSTRAP_KEY = "hk_dev_bootstrap_" + uuid.uuid4().hex


@dataclass
class Server:
    url: str
    key: str
    session: aiohttp.ClientSession

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@pytest.fixture
async def server(api_pool: asyncpg.Pool) -> AsyncIterator[Server]:
    port = free_port()
    stop, ready = anyio.Event(), anyio.Event()
    config = ApiConfig(
        bootstrap_api_key=BOOTSTRAP_KEY,
        bootstrap_account_id=f"dev-{uuid.uuid4().hex[:6]}",
        max_body_bytes=64 * 1024,
        import_batch_rows=1_000,
    )
    # A task of its own: pytest-asyncio sets a fixture up and tears it down in different tasks.
    task = asyncio.create_task(
        serve(
            settings=Settings.development(drain_timeout_s=2.0),
            pool=api_pool,
            stop=stop,
            host="127.0.0.1",
            port=port,
            ready=ready,
            config=config,
        )
    )
    with anyio.fail_after(10):
        await ready.wait()
    async with aiohttp.ClientSession() as session:
        yield Server(url=f"http://127.0.0.1:{port}", key=BOOTSTRAP_KEY, session=session)
    stop.set()
    with anyio.fail_after(10):
        await task


async def test_openapi_document(server: Server) -> None:
    async with server.session.get(f"{server.url}/openapi.json") as response:
        assert response.status == 200
        doc = await response.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in [
        "/v1/contacts",
        "/v1/contacts/{contact_id}/activity",
        "/v1/contacts/optouts",
        "/v1/contacts/import",
        "/v1/contacts/lists/{list_id}/members",
        "/v1/contacts/segments",
        "/v1/templates/{template_id}/approval",
        "/v1/campaigns/{campaign_id}/send",
        "/v1/campaigns/{campaign_id}/recipients",
        "/v1/campaigns/stats/timeseries",
    ]:
        assert path in paths, path
    assert "X-API-Key" in str(doc["components"]["securitySchemes"])


async def test_bootstrap_key_and_request_id(server: Server) -> None:
    async with server.session.get(
        f"{server.url}/v1/contacts", headers={**server.headers, "X-Request-ID": "abc-123"}
    ) as response:
        assert response.status == 200
        assert response.headers["X-Request-ID"] == "abc-123"
        body = await response.json()
    assert body["meta"]["request_id"] == "abc-123"
    async with server.session.get(f"{server.url}/v1/nowhere", headers=server.headers) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"


async def test_body_limit(server: Server) -> None:
    big = {"phone": "+14155550000", "metadata": {"blob": "x" * 70_000}}
    async with server.session.post(
        f"{server.url}/v1/contacts", json=big, headers=server.headers
    ) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "payload_too_large"


async def _chunks(rows: int) -> AsyncIterator[bytes]:
    yield b"phone,email,first_name,tags,plan\r\n"
    for start in range(0, rows, 500):
        lines = []
        for i in range(start, min(start + 500, rows)):
            if i % 1000 == 999:
                lines.append(f"12345,,Bad{i},,free\r\n")  # not E.164: rejected, not fatal
            else:
                lines.append(f'+1628{i:07d},p{i}@example.com,"Guest, {i}",a;b,gold\r\n')
        yield "".join(lines).encode()


async def test_streamed_csv_import(server: Server, api_pool: asyncpg.Pool) -> None:
    async with server.session.post(
        f"{server.url}/v1/contacts/lists", json={"name": "imported"}, headers=server.headers
    ) as response:
        list_id = (await response.json())["data"]["id"]
    rows = 20_000
    async with server.session.post(
        f"{server.url}/v1/contacts/import",
        params={"list_id": list_id},
        data=_chunks(rows),
        headers={**server.headers, "Content-Type": "text/csv"},
    ) as response:
        assert response.status == 200, await response.text()
        result = (await response.json())["data"]
    assert result["imported"] == rows - rows // 1000
    assert result["rejected"] == rows // 1000
    assert result["errors"][0] == {
        "line": 1001,
        "code": "invalid_phone",
        "number": 1102,
        "field": "phone",
        "message": "not in E.164 form (must start with + and a country code)",
    }
    row = await api_pool.fetchrow(
        "SELECT first_name, tags, attributes FROM contacts WHERE phone = '+16280000007'"
    )
    assert row is not None
    assert (row["first_name"], row["tags"], row["attributes"]) == (
        "Guest, 7",
        ["a", "b"],
        {"plan": "gold"},
    )
    async with server.session.get(
        f"{server.url}/v1/contacts/lists/{list_id}", headers=server.headers
    ) as response:
        assert (await response.json())["data"]["member_count"] == result["imported"]


async def test_jsonl_import_and_broken_stream(server: Server, api_pool: asyncpg.Pool) -> None:
    body = (
        b'{"phone": "+14155550123", "first_name": "J", "tags": ["x"], "metadata": {"k": 1}}\n'
        b"not json\n"
        b'{"email": "bad"}\n'
        b'{"email": "ok@example.com"}\n'
        b'{"phone": "+14155550125", "viber_user_id": "u-1"}'
    )
    async with server.session.post(
        f"{server.url}/v1/contacts/import",
        data=body,
        headers={**server.headers, "Content-Type": "application/x-ndjson"},
    ) as response:
        result = (await response.json())["data"]
    assert (result["imported"], result["rejected"]) == (2, 3)
    assert [e["line"] for e in result["errors"]] == [2, 3, 5]
    assert result["errors"][2]["field"] == "viber_user_id"
    # Every row's error names a field and carries its number: `row` for a line that is no
    # object at all.
    assert [(e["field"], e["number"]) for e in result["errors"][:2]] == [
        ("row", 1001),
        ("email", 1103),
    ]
    before = await api_pool.fetchval("SELECT count(*) FROM contacts")
    async with server.session.post(
        f"{server.url}/v1/contacts/import",
        data=b"phone\n+14155550124\n\xff\xfe\n",
        headers={**server.headers, "Content-Type": "text/csv"},
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "import_failed"
    assert await api_pool.fetchval("SELECT count(*) FROM contacts") == before
    async with server.session.post(
        f"{server.url}/v1/contacts/import", data=b"x", headers=server.headers
    ) as response:
        assert response.status == 415


async def test_activity_timeline(server: Server, api_pool: asyncpg.Pool) -> None:
    post = server.session.post
    async with post(
        f"{server.url}/v1/contacts",
        json={"phone": "+14155550777", "first_name": "Tim", "tags": ["timeline"]},
        headers=server.headers,
    ) as response:
        contact_id = (await response.json())["data"]["id"]
    async with post(
        f"{server.url}/v1/campaigns",
        json={"name": "t", "channel": "sms", "body": "Hi", "tags": ["timeline"]},
        headers=server.headers,
    ) as response:
        campaign_id = (await response.json())["data"]["id"]
    async with post(f"{server.url}/v1/campaigns/{campaign_id}/send", headers=server.headers) as r:
        assert r.status == 202
    raw = await api_pool.fetchval(
        "SELECT payload FROM outbox WHERE payload->>'campaign_id' = $1", campaign_id
    )
    event = parse_campaign_confirmed(raw)
    await campaigns.insert(api_pool, event, raw)
    async with api_pool.acquire() as conn, conn.transaction():
        await campaigns.expand(conn, event)
    await api_pool.execute(
        "INSERT INTO attempts (campaign_id, recipient_id, attempt_no, channel, provider, outcome,"
        " status, accepted, updated_at) VALUES ($1, 1, 1, 'sms', 'twilio', 'accepted', "
        "'delivered', true, now() + interval '1 second')",
        campaign_id,
    )
    async with server.session.get(
        f"{server.url}/v1/contacts/{contact_id}/activity", headers=server.headers
    ) as response:
        events = (await response.json())["data"]
    assert [e["type"] for e in events] == ["message.delivered", "message.sent"]
    assert events[0]["message_id"] == f"{campaign_id}.1.1"
    assert events[0]["channel"] == "sms"
