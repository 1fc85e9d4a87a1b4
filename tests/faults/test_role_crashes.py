"""SIGKILL of the status consumer, of the scheduler mid-expansion and of the outbox relay,
each run as its own child process and killed mid-work, then started again."""

from __future__ import annotations

from herald.constants import TOPIC_CAMPAIGN_EVENTS
from herald.domain.channels import SendingMode
from herald.settings import Settings
from herald.store import db, outbox
from tests.faults import invariants
from tests.faults.ledger import Ledger
from tests.faults.offsets import Offsets
from tests.faults.scenario import campaign, children, finals, pipeline, scalar, until
from tests.faults.sizes import Scale
from tests.pipeline import publish_event

SEND_S = 3.0  # spread a campaign's sends over this long, so a kill lands mid-work


async def test_status_consumer_sigkill(
    fault_settings: Settings, scale: Scale, ledger: Ledger
) -> None:
    """SIGKILL of the status consumer mid-fold"""
    settings = fault_settings
    roles = frozenset({"scheduler", "worker", "ingress", "simulator"})
    async with children(settings) as kids:
        # The child starts while the in-process roles do.
        first = kids.start("status")
        async with db.pool(settings.database_url) as pool, pipeline(settings, roles) as roles_up:
            c = await campaign(
                settings, pool, recipients=scale.recipients, rate_per_s=scale.recipients / SEND_S
            )

            async def a_third_final() -> bool:
                return await finals(pool, c.id) >= c.recipients // 3

            await until(a_third_final, timeout_s=60, what="a third of the recipients folded")
            kids.kill(first)
            folded = await finals(pool, c.id)
            ledger.record(
                "fault landed: killed with folds to come",
                folded < c.recipients,
                f"{folded} of {c.recipients} final at the kill",
            )
            kids.start("status")
            expect = invariants.Expect(
                campaign_ids=[c.id],
                paths={c.id: SendingMode.SMS},
                simulator_url=settings.simulator_url,
            )
            await invariants.check(
                ledger,
                settings,
                expect,
                scale.settle_timeout_s,
                lambda: roles_up.crashes + kids.died(),
            )
    ledger.verify()


# Gives every 13th contact (by number) the first name the template needs.
NAME_SOME = """
UPDATE contacts SET first_name = 'Guest'
WHERE account_id = $1 AND right(phone, 4)::int % 13 = 0
"""
# The expansion's INSERT into recipients is running: until it commits, nothing else in this
# test's database writes recipient rows (there are none yet).
MID_EXPANSION = """
SELECT count(*) FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.state = 'active' AND a.pid <> pg_backend_pid()
  AND EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class t ON t.oid = l.relation
              WHERE l.pid = a.pid AND t.relname = 'recipients' AND l.mode = 'RowExclusiveLock')
"""


async def test_scheduler_sigkill_mid_expansion(
    fault_settings: Settings, scale: Scale, ledger: Ledger
) -> None:
    """SIGKILL of the scheduler mid-expansion"""
    settings = fault_settings
    roles = frozenset({"worker", "status", "ingress", "simulator"})
    async with children(settings) as kids:
        first = kids.start("scheduler")
        async with db.pool(settings.database_url) as pool, pipeline(settings, roles) as roles_up:
            # A big audience, so the expansion takes a moment; most contacts lack the
            # first name the template needs (skipped), so sends stay few.
            c = await campaign(
                settings,
                pool,
                recipients=scale.expansion_audience,
                nameless_every=1,
                batch_size=scale.expansion_audience // 6,
                publish=False,
            )
            await pool.execute(NAME_SOME, c.account_id)
            await publish_event(settings, c.event)

            async def expanding() -> bool:
                return await scalar(pool, MID_EXPANSION) > 0

            await until(expanding, timeout_s=60, what="the expansion to start", every_s=0.01)
            kids.kill(first)

            async def rolled_back() -> bool:
                return not await expanding()

            await until(rolled_back, timeout_s=60, what="the killed expansion to end")
            status = await pool.fetchval("SELECT status FROM campaigns WHERE id = $1", c.id)
            rows = await scalar(
                pool, "SELECT count(*) FROM recipients WHERE campaign_id = $1", c.id
            )
            ledger.record(
                "fault landed: killed mid-expansion, rolled back",
                status == "scheduled" and rows == 0,
                f"campaign {status} with {rows} recipient rows after the kill",
            )
            kids.start("scheduler")
            expect = invariants.Expect(
                campaign_ids=[c.id],
                paths={c.id: SendingMode.SMS},
                simulator_url=settings.simulator_url,
            )
            await invariants.check(
                ledger,
                settings,
                expect,
                scale.settle_timeout_s,
                lambda: roles_up.crashes + kids.died(),
            )
            batches = await pool.fetch(
                "SELECT first_id, last_id, published_at IS NOT NULL AS published, "
                "done_at IS NOT NULL AS done FROM batches WHERE campaign_id = $1 ORDER BY batch_no",
                c.id,
            )
            covered = sum(b["last_id"] - b["first_id"] + 1 for b in batches)
            ledger.record(
                "each recipient expanded once, in one batch",
                covered == scale.expansion_audience and all(b["done"] for b in batches),
                f"{len(batches)} batches cover {covered} of {scale.expansion_audience}",
            )
    ledger.verify()


async def test_relay_sigkill(fault_settings: Settings, scale: Scale, ledger: Ledger) -> None:
    """SIGKILL of the outbox relay mid-publish"""
    settings = fault_settings
    roles = frozenset({"scheduler", "worker", "status", "ingress", "simulator"})
    rows = scale.outbox_rows
    async with db.pool(settings.database_url) as pool, pipeline(settings, roles) as roles_up:
        made = [
            await campaign(settings, pool, recipients=10, publish=False)
            for _ in range(scale.outbox_campaigns)
        ]
        # Every campaign confirmed many times over, as an API retrying its writes would:
        # the relay publishes each row at least once, the scheduler keeps each campaign once.
        async with pool.acquire() as conn, conn.transaction():
            for n in range(rows):
                c = made[n % len(made)]
                await outbox.insert(conn, TOPIC_CAMPAIGN_EVENTS, c.account_id, c.event)
        async with children(settings) as kids:
            first = kids.start("relay")

            async def a_third_published() -> bool:
                return rows - await outbox.pending(pool) >= rows // 3

            await until(
                a_third_published,
                timeout_s=60,
                what="a third of the outbox published",
                every_s=0.01,
            )
            kids.kill(first)
            left = await outbox.pending(pool)
            ledger.record(
                "fault landed: killed with rows to publish",
                left > 0,
                f"{left} of {rows} rows unpublished at the kill",
            )
            kids.start("relay")

            async def all_published() -> bool:
                return await outbox.pending(pool) == 0

            await until(all_published, timeout_s=60, what="the outbox to drain")
            ids = [c.id for c in made]
            expect = invariants.Expect(
                campaign_ids=ids,
                paths={c.id: SendingMode.SMS for c in made},
                simulator_url=settings.simulator_url,
            )
            await invariants.check(
                ledger,
                settings,
                expect,
                scale.settle_timeout_s,
                lambda: roles_up.crashes + kids.died(),
            )
        known = await scalar(pool, "SELECT count(*) FROM campaigns")
        async with Offsets(settings) as offsets:
            published = sum((await offsets.end(TOPIC_CAMPAIGN_EVENTS)).values())
        ledger.record(
            "every outbox row published at least once, each campaign kept once",
            published >= rows and known == len(made),
            f"{published} records for {rows} rows; {known} campaigns for {len(made)}",
        )
    ledger.verify()
