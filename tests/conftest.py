"""Shared fixtures: one embedded PostgreSQL and one embedded broker per test session, reached
over real connections. Each test that asks for `pg_url` gets a fresh database cloned from a
migrated template; each `settings` gets its own topic prefix, so tests never see each other.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from herald.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from herald.settings import Settings
from herald.store import migrations

# Tests build their settings explicitly; nothing leaks in from the shell.
for _name in [n for n in os.environ if n.startswith("HERALD_")]:
    del os.environ[_name]

TEMPLATE_DB = "herald_template"


def database_url(server_url: str, database: str) -> str:
    """The embedded server's URL with another database name."""
    head, _, query = server_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}?{query}" if query else f"{base}/{database}"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")) / "data")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def pg_template(pg_server: EmbeddedPostgres) -> str:
    conn = await asyncpg.connect(pg_server.url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await conn.close()
    conn = await asyncpg.connect(database_url(pg_server.url, TEMPLATE_DB))
    try:
        await migrations.migrate(conn)
    finally:
        await conn.close()
    return TEMPLATE_DB


@asynccontextmanager
async def cloned_database(
    server: EmbeddedPostgres, template: str, prefix: str = "t"
) -> AsyncIterator[str]:
    """A fresh database cloned from the migrated template, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(server.url)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await conn.close()
    try:
        yield database_url(server.url, name)
    finally:
        conn = await asyncpg.connect(server.url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


@pytest.fixture
async def pg_url(pg_server: EmbeddedPostgres, pg_template: str) -> AsyncIterator[str]:
    async with cloned_database(pg_server, pg_template) as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    broker = EmbeddedBroker()
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def settings(pg_url: str, kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own database, topic prefix and ports."""
    return Settings.development(
        database_url=pg_url,
        kafka_bootstrap=kafka_bootstrap,
        data_dir=tmp_path,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        topic_partitions=2,
        api_port=free_port(),
        ingress_port=free_port(),
        simulator_port=free_port(),
        simulator_smtp_port=free_port(),
        metrics_port=0,
        drain_timeout_s=5.0,
    )
