"""A worker joining mid-campaign and another leaving (SIGTERM) mid-campaign: the group
rebalances twice while batches of two accounts, on different partitions, are being sent.

Besides the common invariants, each account's sends, as the simulator saw them arrive, stay
within its rate (+ 5 %) in every one-second window: a partition moves only once its old
owner stopped sending, so an account never runs under two workers' token buckets at once.
"""

from __future__ import annotations

import bisect
import signal
import uuid
from collections.abc import Sequence
from functools import partial

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from herald.bus import codec
from herald.constants import GROUP_WORKER
from herald.demo import FIRST_PHONE
from herald.settings import Settings
from herald.simulator.app import PATH_ARRIVALS
from herald.store import db
from tests.faults import invariants
from tests.faults.ledger import Ledger
from tests.faults.scenario import Campaign, attempts, campaign, children, pipeline, until
from tests.faults.sizes import Scale

# Each campaign's sends take about this long (at the large size 150/s an account: two workers,
# two accounts and the simulator share two cores without stalls that bunch arrivals), in one
# batch whose worker does not hand it back
# (worker_slice_s) and sends it in small chunks: a rebalance lands inside the batch, and a
# revoked worker that went on sending would overlap the new owner for seconds.
SEND_S = {"small": 9.0, "large": 60.0}
RATE_TOLERANCE = 1.05  # the bound: the worst one-second window <= rate + 5 %
# Account i's recipients are FIRST_PHONE + (i + 1) * PHONES_APART + n: the simulator's
# arrivals tell the accounts apart by number (the last two digits, which pick each number's
# outcome, stay those of FIRST_PHONE + n).
PHONES_APART = 10_000_000


def accounts_on_every_partition(partitions: int) -> list[str]:
    """Account ids whose batches (keyed by account) land on partitions 0, 1, ... in turn."""
    partitioner = DefaultPartitioner()
    found: dict[int, str] = {}
    every = list(range(partitions))
    while len(found) < partitions:
        account = f"acct-{uuid.uuid4().hex[:8]}"
        found.setdefault(partitioner(codec.key(account), every, every), account)
    return [found[p] for p in every]


def worst_second(times_s: Sequence[float]) -> int:
    """The most arrivals any window [t, t + 1 s) holds (windows start at an arrival, where a
    maximum starts)."""
    ordered = sorted(times_s)
    return max(
        (bisect.bisect_left(ordered, t + 1.0, lo=i) - i for i, t in enumerate(ordered)),
        default=0,
    )


async def answers(simulator_url: str) -> bool:
    try:
        await invariants.simulator_stats(simulator_url)
    except (OSError, aiohttp.ClientError):
        return False
    return True


async def workers_in_group(settings: Settings) -> int:
    """Members of the workers' consumer group once it is stable (0 while it rebalances)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([settings.topic(GROUP_WORKER)])
    finally:
        await admin.close()
    _error, _group, state, *_rest = response.groups[0]
    return len(response.groups[0][5]) if state == "Stable" else 0


async def arrivals(simulator_url: str) -> list[tuple[float, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(simulator_url + PATH_ARRIVALS, timeout=aiohttp.ClientTimeout(10)) as resp,
    ):
        resp.raise_for_status()
        body = await resp.json()
    return [(float(t), str(to)) for t, to in body["arrivals"]]


async def test_worker_joins_and_leaves(
    fault_settings: Settings, scale: Scale, ledger: Ledger
) -> None:
    """Worker joining and leaving (rebalance)"""
    send_s = SEND_S[scale.name]
    per_account = 3 * scale.recipients
    rate_per_s = per_account / send_s
    settings = fault_settings.with_overrides(
        worker_slice_s=send_s * 2, worker_chunk_size=max(1, int(rate_per_s / 4))
    )
    # The simulator runs in its own process, so the arrival times it notes are not held up
    # by the roles running in this one.
    roles = frozenset({"scheduler", "status", "ingress"})
    async with children(settings) as kids:
        kids.start("simulator")
        first = kids.start("worker")
        async with db.pool(settings.database_url) as pool, pipeline(settings, roles) as up:
            await until(
                partial(answers, settings.simulator_url), timeout_s=60, what="the simulator"
            )
            made: list[Campaign] = [
                await campaign(
                    settings,
                    pool,
                    recipients=per_account,
                    account_id=account,
                    rate_per_s=rate_per_s,
                    batch_size=per_account,
                    first_phone=FIRST_PHONE + (i + 1) * PHONES_APART,
                )
                for i, account in enumerate(accounts_on_every_partition(settings.topic_partitions))
            ]
            total = per_account * len(made)

            async def sent(share: float) -> bool:
                counts = [await attempts(pool, c.id) for c in made]
                return sum(counts) >= total * share

            async def a_tenth() -> bool:
                return await sent(0.1)

            async def joined() -> bool:
                return await workers_in_group(settings) == 2

            await until(a_tenth, timeout_s=60, what="a tenth of the sends")
            kids.start("worker")  # joins: the group rebalances
            await until(joined, timeout_s=60, what="the second worker in the group", every_s=0.2)
            sent_at_join = sum([await attempts(pool, c.id) for c in made])

            async def sent_since_join() -> bool:
                # Both workers have sent for a while (about 1.5 s at the rate) before one leaves.
                since = sent_at_join + 1.5 * rate_per_s * len(made)
                return await sent(min(0.9, max(0.55, since / total)))

            await until(sent_since_join, timeout_s=60, what="sends after the join")
            kids.kill(first, signal.SIGTERM)  # leaves: the group rebalances again
            code = await kids.exited(first, settings.drain_timeout_s + 10)
            sent_at_leave = sum([await attempts(pool, c.id) for c in made])
            ledger.record(
                "fault landed: a worker joined and one left mid-campaign",
                sent_at_join < total and sent_at_leave < total and code == 0,
                f"{sent_at_join} of {total} sent when the second worker had joined, "
                f"{sent_at_leave} when the first left (exit {code})",
            )
            expect = invariants.Expect(
                campaign_ids=[c.id for c in made],
                paths={c.id: c.mode for c in made},
                simulator_url=settings.simulator_url,
            )
            await invariants.check(
                ledger, settings, expect, scale.settle_timeout_s, lambda: up.crashes + kids.died()
            )
            seen = await arrivals(settings.simulator_url)
    for i, made_one in enumerate(made):
        first_phone = FIRST_PHONE + (i + 1) * PHONES_APART
        mine = [
            t
            for t, to in seen
            if first_phone <= int(to.lstrip("+") or 0) < first_phone + PHONES_APART
        ]
        worst = worst_second(mine)
        ledger.record(
            f"one bucket per account: worst second <= rate + 5 % (account {i})",
            len(mine) >= made_one.recipients and worst <= rate_per_s * RATE_TOLERANCE,
            f"{worst} sends in the worst second at {rate_per_s:g}/s "
            f"(bound {rate_per_s * RATE_TOLERANCE:g}); {len(mine)} sends seen",
        )
    ledger.verify()
