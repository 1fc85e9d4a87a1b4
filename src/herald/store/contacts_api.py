"""Contacts as the control-plane API manages them: CRUD, search, tags, preferences,
the activity timeline, and COPY-based bulk import. Every query is scoped to one account."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson

from herald.store.queries import sql

Row = dict[str, Any]
Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection

# Columns bulk import writes, in COPY order.
IMPORT_COLUMNS = (
    "id",
    "account_id",
    "phone",
    "email",
    "first_name",
    "last_name",
    "country_code",
    "lifecycle_stage",
    "tags",
    "attributes",
)


@dataclass(frozen=True, kw_only=True)
class ContactFields:
    phone: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    country_code: str | None = None
    lifecycle_stage: str | None = None
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] | None = None
    viber_user_id: str | None = None


# The channel whose identity the API exposes as `viber_user_id` (contact_identities.channel).
VIBER = "viber"


def _row(record: asyncpg.Record | None) -> Row | None:
    return None if record is None else dict(record)


async def insert(pool: asyncpg.Pool, account_id: str, c: ContactFields) -> Row:
    async with pool.acquire() as conn, conn.transaction():
        record = await conn.fetchrow(
            sql("contacts_api", "insert"),
            account_id,
            c.phone,
            c.email,
            c.first_name,
            c.last_name,
            c.country_code,
            c.lifecycle_stage,
            list(c.tags),
            dict(c.metadata or {}),
        )
        assert record is not None
        row = dict(record)
        if c.viber_user_id is not None:
            await set_identity(conn, account_id, row["id"], VIBER, c.viber_user_id)
    row["viber_user_id"] = c.viber_user_id
    return row


async def get(pool: Conn, account_id: str, contact_id: uuid.UUID) -> Row | None:
    return _row(await pool.fetchrow(sql("contacts_api", "get"), account_id, contact_id))


async def page(
    pool: Conn,
    account_id: str,
    *,
    lifecycle_stage: str | None,
    tag: str | None,
    tsquery: str | None,
    after: tuple[datetime | None, str | None],
    limit: int,
) -> list[Row]:
    args: list[Any] = [account_id, lifecycle_stage, tag, after[0], after[1], limit]
    name = "list"
    if tsquery is not None:
        name = "search"
        args.append(tsquery)
    return [dict(r) for r in await pool.fetch(sql("contacts_api", name), *args)]


async def count(
    pool: Conn,
    account_id: str,
    *,
    lifecycle_stage: str | None,
    tag: str | None,
    tsquery: str | None,
    up_to: int,
) -> int:
    """How many contacts `page` pages through with these filters, counting up to `up_to`."""
    args: list[Any] = [account_id, lifecycle_stage, tag, up_to]
    name = "count"
    if tsquery is not None:
        name = "count_search"
        args.append(tsquery)
    found: int = await pool.fetchval(sql("contacts_api", name), *args)
    return found


async def update(
    pool: asyncpg.Pool, account_id: str, contact_id: uuid.UUID, changes: Mapping[str, Any]
) -> Row | None:
    """Changes name fields to set (a None value clears); `metadata` merges instead;
    `viber_user_id` sets or (None) clears the contact's Viber identity."""
    if "viber_user_id" not in changes:
        return await _update(pool, account_id, contact_id, changes)
    async with pool.acquire() as conn, conn.transaction():
        if await get(conn, account_id, contact_id) is None:
            return None
        address = changes["viber_user_id"]
        if address is None:
            await conn.execute(sql("contacts_api", "clear_identity"), account_id, contact_id, VIBER)
        else:
            await set_identity(conn, account_id, contact_id, VIBER, address)
        return await _update(conn, account_id, contact_id, changes)


async def set_identity(
    conn: asyncpg.Connection, account_id: str, contact_id: uuid.UUID, channel: str, address: str
) -> None:
    """Inside the caller's transaction: the address moves here from any other contact."""
    args = (account_id, contact_id, channel, address)
    await conn.execute(sql("contacts_api", "unset_identity_elsewhere"), *args)
    await conn.execute(sql("contacts_api", "set_identity"), *args)


async def _update(
    pool: Conn, account_id: str, contact_id: uuid.UUID, changes: Mapping[str, Any]
) -> Row | None:
    args: list[Any] = [account_id, contact_id]
    for name in (
        "phone",
        "email",
        "first_name",
        "last_name",
        "country_code",
        "lifecycle_stage",
        "tags",
    ):
        args.append(name in changes)
        value = changes.get(name)
        args.append(list(value) if name == "tags" and value is not None else value)
    if args[-2] and args[-1] is None:
        args[-1] = []
    args.append(changes.get("metadata"))
    return _row(await pool.fetchrow(sql("contacts_api", "update"), *args))


async def delete(pool: Conn, account_id: str, contact_id: uuid.UUID) -> bool:
    return await pool.fetchval(sql("contacts_api", "delete"), account_id, contact_id) is not None


async def add_tags(
    pool: Conn, account_id: str, contact_id: uuid.UUID, tags: Sequence[str]
) -> Row | None:
    return _row(
        await pool.fetchrow(sql("contacts_api", "add_tags"), account_id, contact_id, list(tags))
    )


async def remove_tag(pool: Conn, account_id: str, contact_id: uuid.UUID, tag: str) -> Row | None:
    return _row(await pool.fetchrow(sql("contacts_api", "remove_tag"), account_id, contact_id, tag))


async def set_preferences(
    pool: asyncpg.Pool, account_id: str, contact_id: uuid.UUID, choices: Mapping[str, bool]
) -> list[Row] | None:
    """The contact's preferences after the change; None when the contact is not the account's."""
    async with pool.acquire() as conn, conn.transaction():
        if await get(conn, account_id, contact_id) is None:
            return None
        channels = sorted(choices)
        await conn.execute(
            sql("contacts_api", "set_preferences"),
            account_id,
            contact_id,
            channels,
            [choices[c] for c in channels],
        )
        return await preferences(conn, account_id, contact_id)


async def preferences(pool: Conn, account_id: str, contact_id: uuid.UUID) -> list[Row]:
    rows = await pool.fetch(sql("contacts_api", "preferences"), account_id, contact_id)
    return [dict(r) for r in rows]


async def optouts(
    pool: Conn,
    account_id: str,
    *,
    channel: str | None,
    tsquery: str | None,
    after: tuple[datetime | None, str | None],
    limit: int,
) -> list[Row]:
    rows = await pool.fetch(
        sql("contacts_api", "optouts"), account_id, channel, tsquery, after[0], after[1], limit
    )
    return [dict(r) for r in rows]


async def activity(
    pool: Conn,
    account_id: str,
    contact_id: uuid.UUID,
    *,
    after: tuple[datetime | None, str | None],
    limit: int,
) -> list[Row]:
    rows = await pool.fetch(
        sql("contacts_api", "activity"), account_id, contact_id, after[0], after[1], limit
    )
    return [dict(r) for r in rows]


async def reach(
    pool: Conn, account_id: str, contact_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Row]:
    """The account's contacts among `contact_ids`, each with `phone`, `email` and `viber`
    flags: whether it has that address."""
    rows = await pool.fetch(sql("contacts_api", "reach"), account_id, list(contact_ids))
    return {r["id"]: dict(r) for r in rows}


async def copy_contacts(conn: asyncpg.Connection, records: Sequence[tuple[Any, ...]]) -> None:
    """Bulk insert through COPY, inside the caller's transaction; records follow
    IMPORT_COLUMNS with metadata as a dict."""
    await conn.execute(sql("contacts_api", "create_stage"))
    staged = [(*r[:-1], orjson.dumps(r[-1]).decode()) for r in records]
    await conn.copy_records_to_table(
        "contact_import_stage", records=staged, columns=list(IMPORT_COLUMNS)
    )
    await conn.execute(sql("contacts_api", "flush_stage"))


async def copy_members(
    conn: asyncpg.Connection, list_id: uuid.UUID, contact_ids: Sequence[uuid.UUID]
) -> None:
    """List memberships for freshly copied contacts (they cannot be members already)."""
    await conn.copy_records_to_table(
        "list_members",
        records=[(list_id, c) for c in contact_ids],
        columns=["list_id", "contact_id"],
    )
