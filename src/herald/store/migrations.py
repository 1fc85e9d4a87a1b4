"""Numbered .sql migrations, applied in order, each once, recorded in herald_migrations."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from herald.store.queries import sql

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# One lock id for every herald process: migrations never run twice at once.
_ADVISORY_LOCK_ID = 0x6865_7261_6C64


@dataclass(frozen=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    folder = resources.files("herald.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(
                Migration(version=int(match.group(1)), name=entry.name, sql=entry.read_text())
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a number")
    return found


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply what is missing; returns the names applied (empty when up to date)."""
    applied: list[str] = []
    await conn.execute(sql("migrations", "lock"), _ADVISORY_LOCK_ID)
    try:
        await conn.execute(sql("migrations", "create_table"))
        done = {r["version"] for r in await conn.fetch(sql("migrations", "applied"))}
        for migration in available():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(sql("migrations", "record"), migration.version, migration.name)
            log.info("migration applied %s", migration.name, extra={"event": "migration_applied"})
            applied.append(migration.name)
    finally:
        await conn.execute(sql("migrations", "unlock"), _ADVISORY_LOCK_ID)
    return applied
