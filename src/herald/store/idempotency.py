"""Idempotency keys: a POST's first successful answer, kept to replay to its retries."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from herald.store.queries import sql


@dataclass(frozen=True, kw_only=True)
class Stored:
    request_hash: bytes
    status_code: int | None  # None while the first request still runs
    content_type: str | None
    body: bytes | None


async def claim(
    pool: asyncpg.Pool,
    account_id: str,
    key: str,
    request_hash: bytes,
    *,
    retention_s: int,
    abandoned_s: int,
) -> bool:
    """True when this request now holds the key and should run."""
    claimed = await pool.fetchval(
        sql("idempotency", "claim"), account_id, key, request_hash, retention_s, abandoned_s
    )
    return bool(claimed)


async def find(pool: asyncpg.Pool, account_id: str, key: str) -> Stored | None:
    row = await pool.fetchrow(sql("idempotency", "find"), account_id, key)
    if row is None:
        return None
    return Stored(
        request_hash=bytes(row["request_hash"]),
        status_code=row["status_code"],
        content_type=row["content_type"],
        body=None if row["body"] is None else bytes(row["body"]),
    )


async def complete(
    pool: asyncpg.Pool,
    account_id: str,
    key: str,
    request_hash: bytes,
    *,
    status_code: int,
    content_type: str | None,
    body: bytes,
) -> None:
    await pool.execute(
        sql("idempotency", "complete"),
        account_id,
        key,
        request_hash,
        status_code,
        content_type,
        body,
    )


async def release(pool: asyncpg.Pool, account_id: str, key: str, request_hash: bytes) -> None:
    """Frees the key of a request that did not succeed, so a retry runs it again."""
    await pool.execute(sql("idempotency", "release"), account_id, key, request_hash)


async def purge(pool: asyncpg.Pool, retention_s: int) -> int:
    status = await pool.execute(sql("idempotency", "purge"), retention_s)
    return int(status.split()[-1])
