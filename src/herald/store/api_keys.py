"""API keys: stored as SHA-256 hashes, each belonging to one account."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from herald.store.queries import sql

KEY_PREFIX = "hk_"
_SHOWN_PREFIX_CHARS = 10


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    id: str
    account_id: str
    name: str
    prefix: str
    admin: bool  # may change the account's settings, and make admin keys
    created_at: datetime
    revoked_at: datetime | None


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=str(row["id"]),
        account_id=row["account_id"],
        name=row["name"],
        prefix=row["prefix"],
        admin=row["admin"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def account_for(pool: asyncpg.Pool, key: str) -> str | None:
    account: str | None = await pool.fetchval(sql("api_keys", "account_for_key"), digest(key))
    return account


async def is_admin(pool: asyncpg.Pool, key: str) -> bool:
    """Whether `key` is a live admin key."""
    admin: bool = await pool.fetchval(sql("api_keys", "is_admin"), digest(key))
    return admin


async def ensure_account(pool: asyncpg.Pool, account_id: str, name: str) -> None:
    await pool.execute(sql("api_keys", "ensure_account"), account_id, name)


async def add(
    pool: asyncpg.Pool, account_id: str, key: str, name: str = "", *, admin: bool = False
) -> ApiKey | None:
    """Stores a key for an account; None when that key already exists (for any account)."""
    row = await pool.fetchrow(
        sql("api_keys", "insert"), account_id, name, digest(key), key[:_SHOWN_PREFIX_CHARS], admin
    )
    return None if row is None else _key(row)


async def create(
    pool: asyncpg.Pool, account_id: str, name: str = "", *, admin: bool = False
) -> tuple[str, ApiKey]:
    """A new random key for an account: (the key, shown once, and its stored record)."""
    created = await create_capped(pool, account_id, name, max_keys=None, admin=admin)
    assert created is not None
    return created


async def create_capped(
    pool: asyncpg.Pool,
    account_id: str,
    name: str = "",
    *,
    max_keys: int | None,
    admin: bool = False,
) -> tuple[str, ApiKey] | None:
    """create(), unless the account already holds `max_keys` live keys (then None)."""
    key = new_key()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(sql("api_keys", "lock_account"), account_id)
        if max_keys is not None:
            live: int = await conn.fetchval(sql("api_keys", "live_count"), account_id)
            if live >= max_keys:
                return None
        row = await conn.fetchrow(
            sql("api_keys", "insert"),
            account_id,
            name,
            digest(key),
            key[:_SHOWN_PREFIX_CHARS],
            admin,
        )
    assert row is not None  # 256 random bits do not collide
    return key, _key(row)


async def list_for(pool: asyncpg.Pool, account_id: str) -> list[ApiKey]:
    return [_key(r) for r in await pool.fetch(sql("api_keys", "list"), account_id)]


async def revoke(pool: asyncpg.Pool, account_id: str, key_id: str) -> bool:
    try:
        ident = uuid.UUID(key_id)
    except ValueError:
        return False
    return await pool.fetchval(sql("api_keys", "revoke"), account_id, ident) is not None
