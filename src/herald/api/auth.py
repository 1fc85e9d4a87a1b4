"""X-API-Key authentication: every request resolves to one account, or 401; routes that
change an account's settings need an admin key, or 403 admin_required."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from herald import metrics
from herald.api.errors import ApiError, ErrorCode
from herald.api.ratelimit import KeyedBuckets, client_address
from herald.store import api_keys

log = logging.getLogger(__name__)

_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="Your account's API key")
MAX_KEY_LENGTH = 256


def pool_of(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


@dataclass(frozen=True, kw_only=True)
class Guards:
    """The budgets authentication spends (see ratelimit.py): failures per client address,
    requests per account. None turns one off."""

    failures: KeyedBuckets | None = None
    accounts: KeyedBuckets | None = None


def guards_of(request: Request) -> Guards:
    guards: Guards = getattr(request.app.state, "guards", Guards())
    return guards


async def _account(request: Request, key: Annotated[str | None, Depends(_HEADER)] = None) -> str:
    guards = guards_of(request)
    if not key or len(key) > MAX_KEY_LENGTH:
        _failed(request, guards, "missing")
        raise ApiError(ErrorCode.UNAUTHORIZED)
    account = await api_keys.account_for(pool_of(request), key)
    if account is None:
        _failed(request, guards, "invalid")
        raise ApiError(ErrorCode.UNAUTHORIZED, "The API key is not valid")
    if guards.accounts is not None:
        decision = guards.accounts.take(account.encode())
        if not decision.allowed:
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"Too many requests for this account; retry in {decision.retry_after_s} s",
                headers={"Retry-After": str(decision.retry_after_s)},
            )
    return account


def _failed(request: Request, guards: Guards, reason: str) -> None:
    metrics.API_AUTH_FAILURES.labels(reason=reason).inc()
    if guards.failures is not None:
        guards.failures.take(client_address(request.scope))


Account = Annotated[str, Depends(_account)]
Pool = Annotated[asyncpg.Pool, Depends(pool_of)]


async def key_is_admin(request: Request, key: str | None) -> bool:
    """Whether the request's key is an admin key (looked up only where a route needs it)."""
    return bool(key) and await api_keys.is_admin(pool_of(request), str(key))


async def _admin_account(
    request: Request, account: Account, key: Annotated[str | None, Depends(_HEADER)] = None
) -> str:
    if not await key_is_admin(request, key):
        raise ApiError(
            ErrorCode.ADMIN_REQUIRED,
            "This needs an admin API key: `herald keys create` makes one",
            field="X-API-Key",
        )
    return account


AdminAccount = Annotated[str, Depends(_admin_account)]


async def bootstrap(pool: asyncpg.Pool, *, account_id: str, key: str) -> None:
    """Development only: make sure `account_id` exists and `key` opens it."""
    if not key:
        return
    await api_keys.ensure_account(pool, account_id, account_id)
    # The operator configured it, as with `herald keys create`: an admin key.
    stored = await api_keys.add(pool, account_id, key, "bootstrap", admin=True)
    if stored is not None:
        log.info(
            "bootstrap API key stored for account %s",
            account_id,
            extra={"event": "api_key_bootstrapped"},
        )
