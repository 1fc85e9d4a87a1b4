"""X-API-Key authentication: every request resolves to one account, or 401."""

from __future__ import annotations

import logging
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from herald.api.errors import ApiError, ErrorCode
from herald.store import api_keys

log = logging.getLogger(__name__)

_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="Your account's API key")
MAX_KEY_LENGTH = 256


def pool_of(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


async def _account(request: Request, key: Annotated[str | None, Depends(_HEADER)] = None) -> str:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ApiError(ErrorCode.UNAUTHORIZED)
    account = await api_keys.account_for(pool_of(request), key)
    if account is None:
        raise ApiError(ErrorCode.UNAUTHORIZED, "The API key is not valid")
    return account


Account = Annotated[str, Depends(_account)]
Pool = Annotated[asyncpg.Pool, Depends(pool_of)]


async def bootstrap(pool: asyncpg.Pool, *, account_id: str, key: str) -> None:
    """Development only: make sure `account_id` exists and `key` opens it."""
    if not key:
        return
    await api_keys.ensure_account(pool, account_id, account_id)
    stored = await api_keys.add(pool, account_id, key, "bootstrap")
    if stored is not None:
        log.info(
            "bootstrap API key stored for account %s",
            account_id,
            extra={"event": "api_key_bootstrapped"},
        )
