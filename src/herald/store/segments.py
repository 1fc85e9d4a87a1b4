"""Dynamic segments: stored rules, counted and listed through compiled parameterised SQL."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from herald.domain.segments import Compiled, compile_rules
from herald.store.queries import sql

Row = dict[str, Any]
Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection


def with_rules(name: str, compiled: Compiled) -> str:
    """A named block with the compiled condition in place of {rules}."""
    return sql("segments", name).replace("{rules}", compiled.sql)


async def insert(
    pool: Conn, account_id: str, name: str, description: str, rules: Mapping[str, Any]
) -> Row:
    row = await pool.fetchrow(sql("segments", "insert"), account_id, name, description, rules)
    assert row is not None
    return dict(row)


async def get(pool: Conn, account_id: str, segment_id: uuid.UUID) -> Row | None:
    row = await pool.fetchrow(sql("segments", "get"), account_id, segment_id)
    return None if row is None else dict(row)


async def page(
    pool: Conn, account_id: str, *, after: tuple[datetime | None, str | None], limit: int
) -> list[Row]:
    rows = await pool.fetch(sql("segments", "list"), account_id, after[0], after[1], limit)
    return [dict(r) for r in rows]


async def update(
    pool: Conn,
    account_id: str,
    segment_id: uuid.UUID,
    *,
    name: str | None,
    description: str | None,
    rules: Mapping[str, Any] | None,
) -> Row | None:
    row = await pool.fetchrow(
        sql("segments", "update"), account_id, segment_id, name, description, rules
    )
    return None if row is None else dict(row)


async def delete(pool: Conn, account_id: str, segment_id: uuid.UUID) -> bool:
    return await pool.fetchval(sql("segments", "delete"), account_id, segment_id) is not None


async def count_members(pool: Conn, account_id: str, rules: Mapping[str, Any]) -> int:
    compiled = compile_rules(rules, first_param=2)
    count: int = await pool.fetchval(
        with_rules("count_members", compiled), account_id, *compiled.params
    )
    return count


async def members(
    pool: Conn,
    account_id: str,
    rules: Mapping[str, Any],
    *,
    after: tuple[datetime | None, str | None],
    limit: int,
) -> list[Row]:
    compiled = compile_rules(rules, first_param=5)
    rows = await pool.fetch(
        with_rules("members", compiled), account_id, after[0], after[1], limit, *compiled.params
    )
    return [dict(r) for r in rows]


async def audience_condition(
    conn: Conn, account_id: str, segment_id: str, *, first_param: int
) -> Compiled:
    """A campaign's segment as a condition over `contacts c` for audience expansion, with
    placeholders from `first_param`; FALSE when the account has no such segment (or the
    id cannot be one), so a deleted segment reaches nobody."""
    try:
        ident = uuid.UUID(segment_id)
    except ValueError:
        return Compiled(sql="FALSE", params=())
    row = await get(conn, account_id, ident)
    if row is None:
        return Compiled(sql="FALSE", params=())
    return compile_rules(row["rules"], first_param=first_param)
