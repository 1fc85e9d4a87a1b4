"""Contacts. The control-plane API owns their full life cycle; this holds what dispatch needs,
and the channel identities providers' callbacks teach (domain/identities.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from herald.domain.identities import IdentityEvent
from herald.store.queries import sql


async def insert_synthetic(
    pool: asyncpg.Pool,
    *,
    account_id: str,
    count: int,
    first_phone: int,
    tag: str,
    nameless_every: int = 0,
    bad_phone_every: int = 0,
) -> None:
    """Demo and benchmark audiences: `count` contacts in one set-based INSERT."""
    await pool.execute(
        sql("contacts", "insert_synthetic"),
        account_id,
        count,
        first_phone,
        [tag],
        nameless_every,
        bad_phone_every,
    )


async def apply_identities(conn: asyncpg.Connection, events: Sequence[IdentityEvent]) -> int:
    """Links and unlinks, in the order given, inside the caller's transaction; the number of
    links whose contact exists (a context naming no contact links nothing)."""
    linked = 0
    for event in events:
        at = (
            datetime.fromtimestamp(event.occurred_at_ms / 1000, UTC)
            if event.occurred_at_ms
            else (datetime.now(UTC))
        )
        if not event.linked:
            await conn.execute(sql("contacts", "unlink_identity"), event.channel, event.address, at)
            continue
        assert event.contact_ref is not None
        contact = uuid.UUID(event.contact_ref)
        await conn.execute(
            sql("contacts", "unlink_elsewhere"), contact, event.channel, event.address, at
        )
        if await conn.fetchval(
            sql("contacts", "link_identity"), contact, event.channel, event.address, at
        ):
            linked += 1
    return linked


async def phones(pool: asyncpg.Pool, account_id: str) -> list[tuple[str, str]]:
    """(contact id, phone) of the account's contacts that have a phone."""
    return [(r["id"], r["phone"]) for r in await pool.fetch(sql("contacts", "phones"), account_id)]


async def identities(pool: asyncpg.Pool, account_id: str, channel: str) -> int:
    """How many of the account's contacts have an address of their own on `channel`."""
    count: int = await pool.fetchval(sql("contacts", "identities"), account_id, channel)
    return count
