"""One account's work over sub-keys (domain/work.py, bus/dispatch.py): which batches and
fallback recipients go to which sub-key, where each sub-key is published, what rate each
carries, and that an account's buckets never add up to more than its rate."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from herald.bus import codec
from herald.bus.dispatch import partition_of
from herald.delivery import Delivery
from herald.domain.channels import Channel
from herald.domain.work import (
    WHOLE,
    BatchItem,
    BatchRange,
    FallbackItem,
    Share,
    batch_ranges,
    batch_share,
    batch_to_wire,
    fallback_to_wire,
    parse_work,
    recipient_share,
    shares_for,
    subkey,
)
from herald.fakes import MemoryAccounts, MemoryAttemptLog, MemorySink, MemoryTransport
from herald.settings import Settings, SettingsError
from herald.store.accounts import AccountSettings


def _r(batch_no: int, first_id: int, last_id: int) -> BatchRange:
    return BatchRange(batch_no=batch_no, first_id=first_id, last_id=last_id)


@pytest.mark.parametrize(
    ("total", "batch_size", "parts", "expected"),
    [
        # One part: the batches of old, one per batch_size range.
        (250, 100, 1, [_r(1, 1, 100), _r(2, 101, 200), _r(3, 201, 250)]),
        # One range over four sub-keys: four equal batches.
        (100, 100, 4, [_r(1, 1, 25), _r(2, 26, 50), _r(3, 51, 75), _r(4, 76, 100)]),
        # Uneven sizes differ by one at most.
        (10, 100, 4, [_r(1, 1, 2), _r(2, 3, 5), _r(3, 6, 7), _r(4, 8, 10)]),
        # Each range is cut on its own, numbered (range - 1) * parts + part + 1.
        (7, 4, 2, [_r(1, 1, 2), _r(2, 3, 4), _r(3, 5, 5), _r(4, 6, 7)]),
        # Fewer recipients than parts: no empty batch, its number left out.
        (2, 100, 4, [_r(2, 1, 1), _r(4, 2, 2)]),
        (1, 100, 4, [_r(4, 1, 1)]),
        (0, 100, 4, []),
    ],
)
def test_batch_ranges(total: int, batch_size: int, parts: int, expected: list[BatchRange]) -> None:
    got = batch_ranges(total, batch_size, parts)
    assert got == expected
    # Every recipient in exactly one batch.
    ids = [i for r in got for i in range(r.first_id, r.last_id + 1)]
    assert ids == list(range(1, total + 1))


@pytest.mark.parametrize(
    ("total", "batch_size", "parts"),
    [(100_000, 100_000, 4), (250_000, 100_000, 4), (1_000, 100, 8), (5, 2, 3)],
)
def test_every_sub_key_gets_an_equal_part_of_each_range(
    total: int, batch_size: int, parts: int
) -> None:
    per_sub: Counter[int] = Counter()
    for r in batch_ranges(total, batch_size, parts):
        per_sub[batch_share(r.batch_no, parts).sub] += r.last_id - r.first_id + 1
    ranges = -(-total // batch_size)
    assert max(per_sub.values()) - min(per_sub.values()) <= ranges


@pytest.mark.parametrize(
    ("batch_no", "shares", "sub"),
    [(1, 1, 0), (7, 1, 0), (1, 4, 0), (2, 4, 1), (4, 4, 3), (5, 4, 0), (6, 3, 2)],
)
def test_batches_take_the_sub_keys_in_turn(batch_no: int, shares: int, sub: int) -> None:
    assert batch_share(batch_no, shares) == Share(sub=sub, shares=shares)


@pytest.mark.parametrize(
    ("recipient_id", "shares", "sub"), [(1, 1, 0), (1, 4, 1), (4, 4, 0), (11, 4, 3)]
)
def test_fallback_work_is_spread_by_recipient(recipient_id: int, shares: int, sub: int) -> None:
    assert recipient_share(recipient_id, shares) == Share(sub=sub, shares=shares)


@pytest.mark.parametrize(
    ("configured", "partitions", "shares"),
    [(4, 8, 4), (4, 2, 2), (4, 1, 1), (1, 24, 1), (24, 24, 24), (300, 1000, 256)],
)
def test_never_more_sub_keys_than_partitions(configured: int, partitions: int, shares: int) -> None:
    assert shares_for(configured, partitions) == shares


@pytest.mark.parametrize(
    ("account", "sub", "key"), [("acme", 0, "acme"), ("acme", 1, "acme#1"), ("a#b", 3, "a#b#3")]
)
def test_sub_key_zero_is_the_account_itself(account: str, sub: int, key: str) -> None:
    assert subkey(account, Share(sub=sub, shares=4)) == key


@pytest.mark.parametrize("partitions", [1, 2, 8, 24])
@pytest.mark.parametrize("account", ["acme", "big-account", "a1b2c3"])
def test_sub_keys_go_to_consecutive_partitions_from_the_accounts_own(
    account: str, partitions: int
) -> None:
    every = list(range(partitions))
    home = DefaultPartitioner()(codec.key(account), every, every)
    shares = shares_for(4, partitions)
    got = [partition_of(account, Share(sub=s, shares=shares), partitions) for s in range(shares)]
    # Sub-key 0 is where the account's work always went (and items from before still are).
    assert got[0] == home
    assert got == [(home + s) % partitions for s in range(shares)]
    assert len(set(got)) == shares  # never two sub-keys of an account on one partition


@pytest.mark.parametrize(("partitions", "members"), [(8, 2), (8, 4), (24, 4), (24, 3)])
def test_round_robin_members_each_get_a_part_of_an_account(partitions: int, members: int) -> None:
    """The round-robin assignor deals partition p of one topic to member p % members: an
    account's consecutive partitions are spread over every member."""
    shares = shares_for(4, partitions)
    for account in ("acme", "big-account", "a1b2c3"):
        owners = Counter(
            partition_of(account, Share(sub=s, shares=shares), partitions) % members
            for s in range(shares)
        )
        assert len(owners) == min(members, shares)
        assert max(owners.values()) - min(owners.values()) <= 1


@pytest.mark.parametrize("shares", [1, 2, 4, 24])
def test_an_accounts_sub_keys_add_up_to_its_rate(shares: int) -> None:
    rate = 400.0
    buckets = {batch_share(n, shares) for n in range(1, 100)}
    buckets |= {recipient_share(r, shares) for r in range(1, 100)}
    assert sum(b.rate_per_s(rate) for b in buckets) == pytest.approx(rate)


def test_items_carry_their_sub_key_on_the_wire() -> None:
    share = Share(sub=2, shares=4)
    batch = BatchItem(
        campaign_id="c", account_id="a", batch_no=3, first_id=1, last_id=5, share=share
    )
    assert parse_work(batch_to_wire(batch)) == batch
    fallback = FallbackItem(campaign_id="c", account_id="a", recipients=((6, 2),), share=share)
    assert parse_work(fallback_to_wire(fallback)) == fallback


def test_items_from_before_sub_keys_are_sub_key_zero_of_the_workers_setting() -> None:
    raw = {"v": 1, "campaign_id": "c", "account_id": "a", "batch_no": 1, "first_id": 1}
    raw["last_id"] = 9
    item = parse_work(raw, default_shares=4)
    assert item.share == Share(sub=0, shares=4)
    assert parse_work(raw).share == WHOLE


@pytest.mark.parametrize(
    "extra",
    [
        {"sub": 4, "shares": 4},
        {"sub": -1, "shares": 4},
        {"sub": 0, "shares": 0},
        {"sub": 0, "shares": 1000},
        {"sub": 1},
        {"shares": 4},
        {"sub": "1", "shares": 4},
    ],
)
def test_bad_sub_keys_are_refused(extra: dict[str, object]) -> None:
    raw = {"v": 1, "campaign_id": "c", "account_id": "a", "batch_no": 1, "first_id": 1}
    with pytest.raises(ValueError):
        parse_work(raw | {"last_id": 9} | extra)


@pytest.mark.parametrize("value", ["0", "-2", "257"])
def test_the_sub_key_setting_is_checked(value: str) -> None:
    with pytest.raises(SettingsError, match="HERALD_DISPATCH_SUBKEYS"):
        Settings.from_env({"HERALD_DISPATCH_SUBKEYS": value})


async def test_each_sub_key_has_its_own_limiter_at_its_share_of_the_rate(
    tmp_path: Path,
) -> None:
    settings = Settings.development(data_dir=tmp_path)
    directory = MemoryTransport({})
    delivery = Delivery(
        settings=settings,
        attempts=MemoryAttemptLog(),
        accounts=MemoryAccounts(default=AccountSettings(rate_per_s=400.0, quiet_hours=None)),
        transport=directory,
        sink=MemorySink(),
    )
    limiters = [
        await delivery.limiter_for("acct", Channel.SMS, Share(sub=s, shares=4)) for s in range(4)
    ]
    assert len({id(limiter) for limiter in limiters}) == 4
    assert [limiter.state.configured_per_s for limiter in limiters] == [100.0] * 4
    # The same sub-key again is the same bucket; another channel is another.
    again = await delivery.limiter_for("acct", Channel.SMS, Share(sub=1, shares=4))
    assert again is limiters[1]
    assert await delivery.limiter_for("acct", Channel.EMAIL, Share(sub=1, shares=4)) is not again
    # A whole item (one share) has the account's full rate.
    assert (await delivery.limiter_for("solo", Channel.SMS)).state.configured_per_s == 400.0
    # An account's own provider account with a rate is split the same way.
    directory.rates["twilio-eu"] = 90.0
    shares = [Share(sub=s, shares=3) for s in range(3)]
    provider = [delivery._provider_limiter("twilio-eu", share) for share in shares]
    assert len({id(limiter) for limiter in provider}) == 3
    assert [limiter.state.configured_per_s for limiter in provider if limiter] == [30.0] * 3
