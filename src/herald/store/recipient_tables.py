"""Where recipient rows live (0021): a big campaign's own partition of recipients, loaded as
a standalone table and attached; small campaigns' rows in the DEFAULT partition; an ended
campaign's rows moved into the `archive` schema once its retention has passed."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Final

import asyncpg

from herald.store.queries import sql

# HERALD_RECIPIENTS_PARTITION_FROM's default: campaigns of this many recipients or more get
# their own partition.
PARTITION_FROM: Final = 100_000

# herald_recipients_table's names: safe to put into SQL text as they are.
_TABLE = re.compile(r"^recipients_[0-9a-f]{32}$")


async def stage(conn: asyncpg.Connection, campaign_id: str) -> str:
    """Creates the table the campaign's expansion loads, in the caller's transaction; its
    name (letters, digits and underscores only)."""
    name: str = await conn.fetchval(sql("recipient_tables", "stage"), campaign_id)
    if not _TABLE.match(name):
        raise RuntimeError(f"unexpected recipients table name {name!r}")
    return name


async def place(conn: asyncpg.Connection, campaign_id: str, *, own_partition: bool) -> None:
    """The loaded table becomes the campaign's partition, or its rows join the DEFAULT one."""
    await conn.execute(sql("recipient_tables", "place"), campaign_id, own_partition)


async def own_partition(pool: asyncpg.Pool | asyncpg.Connection, campaign_id: str) -> bool:
    found: bool = await pool.fetchval(sql("recipient_tables", "own_partition"), campaign_id)
    return found


async def claim_archivable(
    conn: asyncpg.Connection, ended_before: datetime, ended: Iterable[str]
) -> str | None:
    """An expanded campaign that ended (in one of `ended`) before `ended_before` and still has
    its recipient rows, locked until the caller's transaction ends; the oldest first."""
    found: str | None = await conn.fetchval(
        sql("recipient_tables", "archivable"), ended_before, sorted(ended)
    )
    return found


async def archive(conn: asyncpg.Connection, campaign_id: str) -> str:
    """Moves the campaign's rows into the archive schema in the caller's transaction; the
    archive table's name. Raises when recipients cannot be locked within the lock timeout."""
    await conn.execute(sql("recipient_tables", "archive_lock_timeout"))
    table: str = await conn.fetchval(sql("recipient_tables", "archive"), campaign_id)
    return table


async def archived_at(pool: asyncpg.Pool | asyncpg.Connection, campaign_id: str) -> datetime | None:
    """When the campaign's recipient rows were archived; None while they are in recipients."""
    found: datetime | None = await pool.fetchval(
        sql("recipient_tables", "archived_at"), campaign_id
    )
    return found
