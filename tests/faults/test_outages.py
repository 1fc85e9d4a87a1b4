"""Infrastructure outages under load: the broker cut off and restored through a TCP proxy,
and PostgreSQL stopped and started again mid-campaign."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import asyncpg

from herald.embedded import EmbeddedPostgres
from herald.settings import Settings
from herald.store import db
from tests.faults import invariants
from tests.faults.ledger import Ledger
from tests.faults.proxy import ProxiedBroker
from tests.faults.scenario import attempts, campaign, pipeline, scalar, until
from tests.faults.sizes import Scale

SEND_S = 4.0  # spread a campaign's sends over this long, so the outage lands mid-campaign


async def test_broker_cut_and_restored(
    fault_settings: Settings, scale: Scale, ledger: Ledger
) -> None:
    """Broker cut off and restored (TCP proxy)"""
    async with ProxiedBroker() as broker:
        settings = fault_settings.with_overrides(kafka_bootstrap=broker.bootstrap)
        async with db.pool(settings.database_url) as pool, pipeline(settings) as roles_up:
            c = await campaign(
                settings, pool, recipients=scale.recipients, rate_per_s=scale.recipients / SEND_S
            )

            async def a_quarter_sent() -> bool:
                return await attempts(pool, c.id) >= c.recipients // 4

            await until(a_quarter_sent, timeout_s=60, what="a quarter of the sends")
            await broker.proxy.cut()
            at_cut = await attempts(pool, c.id)
            await anyio.sleep(scale.outage_s)
            await broker.proxy.restore()
            before = broker.proxy.accepted

            async def reconnected() -> bool:
                return broker.proxy.accepted > before

            await until(reconnected, timeout_s=30, what="clients to reconnect")
            ledger.record(
                "fault landed: cut with sends to come",
                at_cut < c.recipients,
                f"{at_cut} of {c.recipients} attempts at the cut, {scale.outage_s:g} s outage",
            )
            expect = invariants.Expect(
                campaign_ids=[c.id], paths={c.id: c.mode}, simulator_url=settings.simulator_url
            )
            await invariants.check(
                ledger, settings, expect, scale.settle_timeout_s, lambda: roles_up.crashes
            )
    ledger.verify()


class RestartablePostgres(EmbeddedPostgres):
    """The embedded server with a way to stop it and start it again on the same data."""

    async def down(self) -> None:
        server = self._server
        assert server is not None
        await anyio.to_thread.run_sync(server.stop)  # type: ignore[attr-defined]

    async def up(self) -> None:
        server = self._server
        assert server is not None
        await anyio.to_thread.run_sync(server.ensure_postgres_running)  # type: ignore[attr-defined]


async def _count(url: str, query: str, *args: object) -> int | None:
    """None while the server is down."""
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return None
    try:
        return int(await conn.fetchval(query, *args) or 0)
    finally:
        await conn.close()


# A recipient already final, with its send's provider message id.
_SETTLED = """
SELECT a.recipient_id, a.provider_message_id FROM attempts a
JOIN recipients r ON r.campaign_id = a.campaign_id AND r.id = a.recipient_id
WHERE a.campaign_id = $1 AND a.provider_message_id IS NOT NULL AND r.status = 'delivered'
ORDER BY a.recipient_id LIMIT 1
"""
_PARK = "INSERT INTO parked_status_events (provider_message_id, event) VALUES ($1, $2)"
# The parked-callback sweep's fold, waiting for the recipient row the test holds.
_SWEEP_WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
  AND query LIKE '%FOR UPDATE OF r%'
"""


@asynccontextmanager
async def _sweep_in_flight(url: str, campaign_id: str) -> AsyncIterator[bool]:
    """Holds a status sweep's transactions open until PostgreSQL stops under them.

    A callback parked for a send that is recorded by now (its recipient already delivered)
    is folded by the status role's next sweep; the test holds that recipient's row, so the
    fold waits inside the sweep's transaction. Stopping PostgreSQL then lands mid-sweep on
    every run instead of by chance. Yields whether the sweep was seen waiting.
    """
    holder = await asyncpg.connect(url)
    try:
        with anyio.fail_after(30):
            while (found := await holder.fetchrow(_SETTLED, campaign_id)) is None:
                await anyio.sleep(0.1)
        tx = holder.transaction()
        await tx.start()
        await holder.execute(
            "SELECT 1 FROM recipients WHERE campaign_id = $1 AND id = $2 FOR UPDATE",
            campaign_id,
            found["recipient_id"],
        )
        event = {"c": "", "r": 0, "a": 0, "ch": "sms", "s": "sent", "t": 0, "src": "twilio"}
        event |= {"acc": True, "pm": found["provider_message_id"]}
        async with db.pool(url, max_size=1) as pool:
            await pool.execute(_PARK, found["provider_message_id"], event)

            async def waiting() -> bool:
                return await scalar(pool, _SWEEP_WAITING) > 0

            try:
                await until(waiting, timeout_s=15, what="the sweep to wait on the row")
                seen = True
            except TimeoutError:
                seen = False
        yield seen
    finally:
        # PostgreSQL stopped under it: the lock went with the server.
        holder.terminate()


async def test_postgres_restarted_under_load(
    fault_settings: Settings, scale: Scale, ledger: Ledger, tmp_path: Path
) -> None:
    """PostgreSQL restarted under load"""
    server = RestartablePostgres(tmp_path / "restart-pg")
    await anyio.to_thread.run_sync(server.start)
    try:
        settings = fault_settings.with_overrides(database_url=server.url)
        async with pipeline(settings) as roles_up:
            async with db.pool(settings.database_url) as pool:
                c = await campaign(
                    settings,
                    pool,
                    recipients=scale.recipients,
                    rate_per_s=scale.recipients / SEND_S,
                )

                async def a_quarter_sent() -> bool:
                    return await attempts(pool, c.id) >= c.recipients // 4

                await until(a_quarter_sent, timeout_s=60, what="a quarter of the sends")
            async with _sweep_in_flight(settings.database_url, c.id) as mid_sweep:
                await server.down()
            await anyio.sleep(scale.outage_s)
            await server.up()
            at_stop = await _count(
                settings.database_url, "SELECT final FROM campaigns WHERE id = $1", c.id
            )
            ledger.record(
                "fault landed: stopped mid-campaign, mid-sweep",
                at_stop is not None and at_stop < c.recipients and mid_sweep,
                f"{at_stop} of {c.recipients} final after the restart; "
                f"sweep {'was' if mid_sweep else 'was not'} open at the stop",
            )
            expect = invariants.Expect(
                campaign_ids=[c.id], paths={c.id: c.mode}, simulator_url=settings.simulator_url
            )
            await invariants.check(
                ledger, settings, expect, scale.settle_timeout_s, lambda: roles_up.crashes
            )
    finally:
        await anyio.to_thread.run_sync(server.stop)
    ledger.verify()
