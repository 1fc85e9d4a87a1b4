"""Provider accounts per account and channel (see migration 0005)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from herald.store.queries import sql


@dataclass(frozen=True, kw_only=True)
class ProviderAccount:
    id: str
    account_id: str | None
    channel: str
    provider: str
    label: str
    priority: int
    base_url: str
    options: dict[str, Any]
    secret_ref: str | None


async def for_account(pool: asyncpg.Pool, account_id: str) -> list[ProviderAccount]:
    rows = await pool.fetch(sql("provider_accounts", "for_account"), account_id)
    return [ProviderAccount(**dict(r)) for r in rows]
