"""Fixtures for the control-plane API tests: one migrated database per test module (cloned
from the session's template), the app over it, and clients with their own accounts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from herald.api.app import create_app
from herald.api.config import ApiConfig
from herald.api.errors import ErrorCode
from herald.api.keys import create_account_key
from herald.domain.status import RecipientStatus, StatusEvent
from herald.embedded import EmbeddedPostgres
from herald.status import StatusFolder
from herald.store import attempts, db
from tests.conftest import cloned_database


@pytest.fixture(scope="module")
async def api_db_url(pg_server: EmbeddedPostgres, pg_template: str) -> AsyncIterator[str]:
    async with cloned_database(pg_server, pg_template, prefix="api") as url:
        yield url


@pytest.fixture(scope="module")
async def api_pool(api_db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(api_db_url, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def api_app(api_pool: asyncpg.Pool) -> FastAPI:
    return create_app(pool=api_pool, config=ApiConfig(max_body_bytes=256 * 1024))


@dataclass
class Caller:
    """An HTTP client holding one account's key."""

    http: httpx.AsyncClient
    account_id: str
    key: str

    def _headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params or None, headers=self._headers())

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.http.post(path, json=body, headers=self._headers(), **kw)

    async def put(self, path: str, body: Any = None) -> httpx.Response:
        return await self.http.put(path, json=body, headers=self._headers())

    async def delete(self, path: str) -> httpx.Response:
        return await self.http.delete(path, headers=self._headers())


@pytest.fixture
async def http(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as client:
        yield client


async def new_caller(http: httpx.AsyncClient, pool: asyncpg.Pool) -> Caller:
    account = f"acct-{uuid.uuid4().hex[:10]}"
    key = await create_account_key(pool, account, "test")
    return Caller(http=http, account_id=account, key=key)


@pytest.fixture
async def alice(http: httpx.AsyncClient, api_pool: asyncpg.Pool) -> Caller:
    return await new_caller(http, api_pool)


@pytest.fixture
async def bob(http: httpx.AsyncClient, api_pool: asyncpg.Pool) -> Caller:
    return await new_caller(http, api_pool)


def data(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"data", "meta"}, body
    assert body["meta"]["request_id"]
    return body["data"]


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error of a refusal, checked against the catalogue: its code and number, a named
    field (every refusal names one) and a timestamp in UTC ending `Z`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "meta"}, body
    assert body["error"]["code"] == code, body
    assert set(body["error"]) == {"code", "number", "message", "field"}, body
    assert body["error"]["number"] == ErrorCode[code.upper()].number, body
    assert ErrorCode[code.upper()].status == status, body
    if status < 500:
        assert body["error"]["field"], body
    assert body["meta"]["timestamp"].endswith("Z"), body
    detail: dict[str, Any] = body["error"]
    return detail


async def sms_reported(
    pool: asyncpg.Pool,
    campaign_id: str,
    recipient_id: int,
    status: RecipientStatus,
    **fields: Any,
) -> None:
    """The recipient's SMS attempt reported `status`, through the status fold: the one writer
    of recipient states and of the counters the API's reads answer from."""
    await attempts.insert_pending(pool, campaign_id, [recipient_id], [1], "sms", "sms")
    folder = StatusFolder(pool=pool, dead_letter=None)  # type: ignore[arg-type]
    await folder.fold(
        [
            StatusEvent(
                campaign_id=campaign_id,
                recipient_id=recipient_id,
                attempt=1,
                channel="sms",
                status=status,
                occurred_at_ms=0,
                source="sms",
                provider_message_id=f"pm-{campaign_id}-{recipient_id}",
                accepted=status is not RecipientStatus.FAILED,
                **fields,
            )
        ]
    )
