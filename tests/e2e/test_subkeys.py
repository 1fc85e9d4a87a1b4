"""One account's campaign sent by two worker processes at once, within the account's rate.

The account's batches are spread over its sub-keys (HERALD_DISPATCH_SUBKEYS, here one per
partition), each paced at the account's rate / sub-keys: both workers send part of the
campaign, and the sends of both, as the provider saw them arrive, stay within the rate (+ the
pacer's 5 % bound) in every one-second window. Each worker talks to its own simulator
process, so each simulator's arrivals are what one worker sent.
"""

from __future__ import annotations

from functools import partial

from herald.demo import FIRST_PHONE
from herald.embedded import free_port
from herald.settings import Settings
from herald.store import campaigns, db
from tests.faults.scenario import campaign, children, pipeline, until
from tests.faults.test_rebalance import (
    RATE_TOLERANCE,
    answers,
    arrivals,
    workers_in_group,
    worst_second,
)
from tests.pipeline import wait_completed

# Each sub-key's pacer keeps its share within one send of its rate in any window, and jitter
# can put that one send of every sub-key into the same second: the rate is high enough here
# that the sub-keys' one send each stays inside the 5 % bound (4 of 200, as at 400/s).
RATE_PER_S = 200.0
RECIPIENTS = 2_400  # 12 s at the rate
PARTITIONS = 4


async def test_two_workers_send_one_accounts_campaign_within_its_rate(
    settings: Settings,
) -> None:
    settings = settings.with_overrides(
        topic_partitions=PARTITIONS, dispatch_subkeys=PARTITIONS, kafka_session_timeout_ms=6_000
    )
    # Worker B's providers are simulator B (empty provider URLs mean the simulator in
    # development); everything else is shared.
    other = settings.with_overrides(simulator_port=free_port(), simulator_smtp_port=free_port())
    roles = frozenset({"scheduler", "status", "ingress"})
    async with children(settings) as kids:
        kids.start("simulator")
        kids.start("simulator", settings=other)
        kids.start("worker")
        kids.start("worker", settings=other)
        async with db.pool(settings.database_url) as pool, pipeline(settings, roles):
            for url in (settings.simulator_url, other.simulator_url):
                await until(partial(answers, url), timeout_s=60, what=f"the simulator at {url}")

            async def both_joined() -> bool:
                return await workers_in_group(settings) == 2

            # Both in the group before the campaign: each owns half the partitions from the
            # first batch on.
            await until(both_joined, timeout_s=90, what="both workers in the group", every_s=0.2)
            made = await campaign(
                settings,
                pool,
                recipients=RECIPIENTS,
                rate_per_s=RATE_PER_S,
                batch_size=RECIPIENTS,
            )
            counters = await wait_completed(pool, made.id, timeout_s=120)
            assert counters.final == counters.total == RECIPIENTS
            recount = await campaigns.recount(pool, made.id)
            for name in ("sent", "delivered", "failed", "skipped", "final"):
                assert recount[name] == getattr(counters, name), name
            # One batch per sub-key, every one done.
            batches = await pool.fetch(
                "SELECT batch_no, done_at FROM batches WHERE campaign_id = $1", made.id
            )
            assert len(batches) == PARTITIONS and all(b["done_at"] for b in batches)
            # Sent once each: no attempt repeated.
            assert (
                await pool.fetchval(
                    "SELECT count(*) FROM attempts WHERE campaign_id = $1 AND sends > 1", made.id
                )
                == 0
            )
            seen_a = await arrivals(settings.simulator_url)
            seen_b = await arrivals(other.simulator_url)

    def ours(seen: list[tuple[float, str]]) -> list[tuple[float, str]]:
        return [
            (t, to)
            for t, to in seen
            if FIRST_PHONE <= int(to.lstrip("+") or 0) < FIRST_PHONE + RECIPIENTS
        ]

    by_a, by_b = ours(seen_a), ours(seen_b)
    # Both workers sent a part of the campaign (two sub-keys each, by the round-robin
    # assignment of the four partitions), and together all of it. (A number may arrive twice
    # where the simulator's outcome for it asks for a retry.)
    numbers_a, numbers_b = {to for _, to in by_a}, {to for _, to in by_b}
    assert len(numbers_a | numbers_b) == RECIPIENTS
    assert not numbers_a & numbers_b  # a recipient is on one sub-key only
    assert min(len(numbers_a), len(numbers_b)) >= RECIPIENTS // 4, (
        len(numbers_a),
        len(numbers_b),
    )
    times_a, times_b = [t for t, _ in by_a], [t for t, _ in by_b]
    # At the same time, not one after the other.
    assert max(min(times_a), min(times_b)) < min(max(times_a), max(times_b))
    worst = worst_second(times_a + times_b)
    assert worst <= RATE_PER_S * RATE_TOLERANCE, f"{worst} sends in one second at {RATE_PER_S}/s"
