"""A worker joining mid-campaign and another leaving (SIGTERM) mid-campaign: the group
rebalances twice while batches of two accounts, on different partitions, are being sent."""

from __future__ import annotations

import signal
import uuid

from aiokafka.partitioner import DefaultPartitioner

from herald.bus import codec
from herald.settings import Settings
from herald.store import db
from tests.faults import invariants
from tests.faults.ledger import Ledger
from tests.faults.scenario import Campaign, attempts, campaign, children, pipeline, until
from tests.faults.sizes import Scale

SEND_S = 4.0  # each campaign's sends take about this long


def accounts_on_every_partition(partitions: int) -> list[str]:
    """Account ids whose batches (keyed by account) land on partitions 0, 1, ... in turn."""
    partitioner = DefaultPartitioner()
    found: dict[int, str] = {}
    every = list(range(partitions))
    while len(found) < partitions:
        account = f"acct-{uuid.uuid4().hex[:8]}"
        found.setdefault(partitioner(codec.key(account), every, every), account)
    return [found[p] for p in every]


async def test_worker_joins_and_leaves(
    fault_settings: Settings, scale: Scale, ledger: Ledger
) -> None:
    """Worker joining and leaving (rebalance)"""
    settings = fault_settings
    roles = frozenset({"scheduler", "status", "ingress", "simulator"})
    per_account = scale.recipients
    async with children(settings) as kids:
        first = kids.start("worker")
        async with db.pool(settings.database_url) as pool, pipeline(settings, roles) as up:
            made: list[Campaign] = [
                await campaign(
                    settings,
                    pool,
                    recipients=per_account,
                    account_id=account,
                    rate_per_s=per_account / SEND_S,
                    batch_size=max(1, per_account // 4),
                )
                for account in accounts_on_every_partition(settings.topic_partitions)
            ]
            total = per_account * len(made)

            async def sent(share: float) -> bool:
                counts = [await attempts(pool, c.id) for c in made]
                return sum(counts) >= total * share

            async def a_fifth() -> bool:
                return await sent(0.2)

            async def over_half() -> bool:
                return await sent(0.55)

            await until(a_fifth, timeout_s=60, what="a fifth of the sends")
            kids.start("worker")  # joins: the group rebalances
            await until(over_half, timeout_s=60, what="over half of the sends")
            kids.kill(first, signal.SIGTERM)  # leaves: the group rebalances again
            code = await kids.exited(first, settings.drain_timeout_s + 10)
            sent_at_leave = sum([await attempts(pool, c.id) for c in made])
            ledger.record(
                "fault landed: a worker joined and one left mid-campaign",
                sent_at_leave < total and code == 0,
                f"{sent_at_leave} of {total} sent when the first worker left (exit {code})",
            )
            expect = invariants.Expect(
                campaign_ids=[c.id for c in made],
                paths={c.id: c.mode for c in made},
                simulator_url=settings.simulator_url,
            )
            await invariants.check(
                ledger, settings, expect, scale.settle_timeout_s, lambda: up.crashes + kids.died()
            )
    ledger.verify()
