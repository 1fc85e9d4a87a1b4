"""Grafana's read-only PostgreSQL role, set up exactly as deploy/README.md says, on a real
PostgreSQL where herald's owner is neither a superuser nor allowed to create roles: the owner
alone cannot create it; an admin with CREATEROLE creates it, the owner grants; and it then
reads the dashboards' columns and nothing else, and writes nothing."""

from __future__ import annotations

import re
import uuid

import asyncpg
import pytest

from herald.embedded import EmbeddedPostgres
from herald.store import migrations
from tests.conftest import database_url
from tests.deploy.render import DEPLOY, ROOT

HEADING = "## Grafana's read-only PostgreSQL role"


def readme_steps() -> tuple[str, str]:
    """The two SQL blocks of the README's section, without psql's backslash commands."""
    text = (DEPLOY / "README.md").read_text()
    start = text.index(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    blocks = re.findall(r"```sql\n(.*?)```", text[start:end], re.DOTALL)
    assert len(blocks) == 2, "the section has the admin's step and the owner's"
    statements = [
        "\n".join(line for line in block.splitlines() if not line.strip().startswith("\\"))
        for block in blocks
    ]
    return statements[0], statements[1]


def _grants(sql: str) -> set[str]:
    found = re.findall(r"GRANT SELECT[^;]*;", sql)
    return {" ".join(statement.split()) for statement in found}


def test_the_owners_grants_are_the_ones_grafana_reads_with() -> None:
    _, owner_step = readme_steps()
    shipped = (ROOT / "grafana" / "postgres-readonly.sql").read_text()
    assert _grants(owner_step) and _grants(owner_step) == _grants(shipped)


async def test_the_readme_steps_work_without_a_superuser(pg_server: EmbeddedPostgres) -> None:
    tag = uuid.uuid4().hex[:8]
    owner, admin, grafana, name = (f"{r}_{tag}" for r in ("owner", "admin", "grafana", "herald"))
    admin_step, owner_step = (
        step.replace("herald_grafana", grafana).replace("DATABASE herald ", f"DATABASE {name} ")
        for step in readme_steps()
    )
    superuser = await asyncpg.connect(pg_server.url)
    await superuser.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB")
    await superuser.execute(f"CREATE ROLE {admin} LOGIN NOSUPERUSER NOCREATEDB CREATEROLE")
    await superuser.execute(f"CREATE DATABASE {name} OWNER {owner}")
    url = database_url(pg_server.url, name)
    connections: list[asyncpg.Connection] = []
    try:
        as_owner = await asyncpg.connect(url, user=owner)
        connections.append(as_owner)
        await migrations.migrate(as_owner)
        # What the old instructions said: everything as the owner. It cannot make the role.
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await as_owner.execute(admin_step)
        as_admin = await asyncpg.connect(url, user=admin)
        connections.append(as_admin)
        await as_admin.execute(admin_step)
        await as_owner.execute(owner_step)
        await as_owner.execute(owner_step)  # again: harmless
        await as_owner.execute(
            """
            INSERT INTO campaigns (id, account_id, name, status, sending_mode, event,
                                   batch_size, fallback_window_s, total_recipients)
            VALUES ('c-ro', 'acct', 'spring', 'sending', 'SMS', '{}'::jsonb, 100, 60, 1);
            INSERT INTO recipients (campaign_id, id, phone, status, channel)
            VALUES ('c-ro', 1, '+15005550006', 'delivered', 'sms');
            """
        )
        as_grafana = await asyncpg.connect(url, user=grafana)
        connections.append(as_grafana)
        assert await as_grafana.fetchval("SELECT status FROM campaigns WHERE id = 'c-ro'") == (
            "sending"
        )
        assert await as_grafana.fetchval("SELECT count(*) FROM recipients") == 1
        assert await as_grafana.fetchval("SHOW default_transaction_read_only") == "on"
        assert await as_grafana.fetchval("SHOW statement_timeout") == "10s"
        # No contact data, no campaign event (its audience), no writes.
        for query in (
            "SELECT phone FROM recipients",
            "SELECT event FROM campaigns",
            "SELECT * FROM recipients",
        ):
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await as_grafana.fetch(query)
        with pytest.raises(asyncpg.exceptions.ReadOnlySQLTransactionError):
            await as_grafana.execute("UPDATE campaigns SET name = 'x'")
    finally:
        for connection in connections:
            await connection.close()
        await superuser.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        for role in (grafana, admin, owner):
            await superuser.execute(f"DROP ROLE IF EXISTS {role}")
        await superuser.close()
