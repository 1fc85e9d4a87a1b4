"""Migrations against the embedded PostgreSQL: ordered, recorded, safe to run twice."""

from __future__ import annotations

import asyncpg

from herald.store import migrations


async def test_migrate_twice_is_a_no_op(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        # The template database was migrated already; nothing is left to apply.
        assert await migrations.migrate(conn) == []
        assert await migrations.migrate(conn) == []
        recorded = await conn.fetch("SELECT version, name FROM herald_migrations ORDER BY version")
        assert [r["name"] for r in recorded] == [m.name for m in migrations.available()]
    finally:
        await conn.close()


async def test_fresh_database_gets_every_table(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("CREATE DATABASE fresh_one")
    finally:
        await conn.close()
    fresh_url = pg_url.replace(pg_url.split("?")[0].rsplit("/", 1)[1], "fresh_one", 1)
    conn = await asyncpg.connect(fresh_url)
    try:
        applied = await migrations.migrate(conn)
        assert applied == [m.name for m in migrations.available()]
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        assert {"campaigns", "recipients", "attempts", "batches", "contacts"} <= tables
    finally:
        await conn.close()
        admin = await asyncpg.connect(pg_url)
        try:
            await admin.execute("DROP DATABASE fresh_one WITH (FORCE)")
        finally:
            await admin.close()


def test_migrations_are_numbered_in_order() -> None:
    versions = [m.version for m in migrations.available()]
    assert versions == sorted(versions)
    assert versions[0] == 1
