"""Every PostgreSQL panel of the dashboards runs, as Grafana's read-only role, on the real
schema; and that role can read nothing else and write nothing."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
ROLE = "herald_grafana"


def _sql_queries() -> Iterator[tuple[str, str]]:
    """(where, SQL) for every PostgreSQL panel and variable of every dashboard."""
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        for variable in board["templating"]["list"]:
            if variable.get("datasource", {}).get("type") == "grafana-postgresql-datasource":
                yield f"{path.name} ${variable['name']}", variable["query"]
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if "rawSql" in target:
                    yield f"{path.name} {panel['title']}", target["rawSql"]


def expand_macros(raw: str) -> str:
    """What Grafana's PostgreSQL data source sends for the macros herald's panels use."""
    raw = re.sub(
        r"\$__timeFilter\(([^)]+)\)",
        r"\1 BETWEEN '2000-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z'",
        raw,
    )
    raw = re.sub(
        r"\$__timeGroupAlias\(([^,]+), '1m'\)",
        r'to_timestamp(floor(extract(epoch FROM \1) / 60) * 60) AS "time"',
        raw,
    )
    raw = raw.replace("${campaign:sqlstring}", "'c-grafana'")
    assert "$" not in raw, f"a macro or variable the test does not expand: {raw}"
    return raw


@pytest.fixture
async def readonly(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    owner = await asyncpg.connect(pg_url)
    try:
        # The test's owner is a superuser, so it plays the admin's part too.
        await owner.execute((GRAFANA / "postgres-readonly-role.sql").read_text())
        await owner.execute((GRAFANA / "postgres-readonly.sql").read_text())
        await owner.execute(
            """
            INSERT INTO campaigns (id, account_id, name, status, sending_mode, event,
                                   batch_size, fallback_window_s, total_recipients,
                                   sent, delivered, failed, final, started_at)
            VALUES ('c-grafana', 'acct', 'spring', 'sending', 'SMS', '{}'::jsonb,
                    100, 60, 2, 2, 1, 1, 2, now());
            INSERT INTO recipients (campaign_id, id, phone, status, channel, error_code)
            VALUES ('c-grafana', 1, '+15005550006', 'delivered', 'sms', NULL),
                   ('c-grafana', 2, '+15005550007', 'failed', 'sms', '30003');
            INSERT INTO campaign_channel_counters (campaign_id, channel, sent, delivered, failed)
            VALUES ('c-grafana', 'sms', 2, 1, 1);
            """
        )
    finally:
        await owner.close()
    conn = await asyncpg.connect(pg_url, user=ROLE)
    try:
        yield conn
    finally:
        await conn.close()


async def test_every_sql_panel_runs_as_the_readonly_role(readonly: asyncpg.Connection) -> None:
    queries = list(_sql_queries())
    assert len(queries) >= 5
    for where, raw in queries:
        try:
            await readonly.fetch(expand_macros(raw))
        except asyncpg.PostgresError as exc:
            pytest.fail(f"{where}: {exc}")


async def test_progress_table_shows_exact_counters(readonly: asyncpg.Connection) -> None:
    (_, raw), *_ = (q for q in _sql_queries() if "Campaign progress" in q[0])
    rows = await readonly.fetch(expand_macros(raw))
    row = next(r for r in rows if r["campaign"] == "c-grafana")
    assert (row["total"], row["sent"], row["delivered"], row["failed"]) == (2, 2, 1, 1)
    assert row["progress"] == 1.0


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT phone FROM recipients",
        "SELECT event FROM campaigns",
        "SELECT * FROM contacts",
        "UPDATE campaigns SET name = 'x'",
        "CREATE TABLE grafana_was_here (id int)",
    ],
)
async def test_the_role_reads_no_contact_data_and_writes_nothing(
    readonly: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.ReadOnlySQLTransactionError)):
        await readonly.execute(statement)
