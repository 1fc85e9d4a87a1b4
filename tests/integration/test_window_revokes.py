"""Fallback windows of revocable messages (RBM): the revoke goes out with no transaction open,
only a won revoke produces a failure, a won revoke is never lost to a later 404, and two
sweepers never revoke or publish one window twice."""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
import pytest

from herald.bus.consumer import DeadLetter
from herald.bus.producer import producer
from herald.bus.topics import ensure_topics
from herald.demo import campaign_event
from herald.domain.channels import Channel, SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.domain.status import WINDOW_EXPIRED, RecipientStatus, StatusEvent
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.providers.directory import Directory
from herald.providers.rbm import RevokeError
from herald.settings import Settings
from herald.store import attempts, campaigns, db
from herald.sweeper import Sweeper
from tests.producers import Broken, Recording

PHONES = ["+14155550100", "+14155550101"]


class Revoker:
    """An RBM stand-in: answers each revoke with `answer` (True: withdrawn, False: 404, an
    exception: raised), after running `check` if given."""

    name = "rbm"
    channel = Channel.RCS

    def __init__(self, answer: bool | Exception, check: Any = None, delay_s: float = 0) -> None:
        self.answer = answer
        self.check = check
        self.delay_s = delay_s
        self.calls: list[str] = []

    async def revoke(self, message_id: str, to: str) -> bool:
        self.calls.append(message_id)
        if self.check is not None:
            await self.check(message_id)
        await anyio.sleep(self.delay_s)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def send(self, message: OutboundMessage) -> SendResult:
        raise AssertionError("the sweeper never sends")

    async def close(self) -> None:
        return None


async def _campaign(pool: asyncpg.Pool, cid: str) -> None:
    """Two RCS attempts accepted a minute ago, past the campaign's 1 s window."""
    raw = campaign_event(campaign_id=cid, account_id="a", mode=SendingMode.RCS_SMS, tags=[])
    raw["audience"] = {"destinations": PHONES}
    raw["fallback_window_s"] = 1
    event = parse_campaign_confirmed(raw)
    assert await campaigns.insert(pool, event, raw)
    async with pool.acquire() as conn, conn.transaction():
        assert await campaigns.expand(conn, event) == 2
    await attempts.insert_pending(pool, cid, [1, 2], [1, 1], "rcs", "rbm")
    await pool.execute(
        "UPDATE attempts SET status = 'sent', accepted = true,"
        " created_at = now() - interval '1 minute' WHERE campaign_id = $1",
        cid,
    )
    await pool.execute("UPDATE campaigns SET status = 'sending' WHERE id = $1", cid)


def _sweeper(settings: Settings, pool: asyncpg.Pool, kafka: Any) -> Sweeper:
    return Sweeper(
        settings=settings,
        pool=pool,
        producer=kafka,
        dead_letter=DeadLetter(settings=settings, producer=kafka),
    )


def _directory(settings: Settings, pool: asyncpg.Pool, revoker: Revoker) -> Directory:
    return Directory(settings=settings, pool=pool, session=None, defaults={Channel.RCS: revoker})


async def _windows(pool: asyncpg.Pool, cid: str) -> list[tuple[int, bool, bool]]:
    """(recipient, window marked expired, revoke recorded) per attempt."""
    rows = await pool.fetch(
        "SELECT recipient_id, window_expired_at IS NOT NULL AS expired,"
        " revoked_at IS NOT NULL AS revoked FROM attempts WHERE campaign_id = $1"
        " ORDER BY recipient_id",
        cid,
    )
    return [(r["recipient_id"], r["expired"], r["revoked"]) for r in rows]


async def _lapse_leases(pool: asyncpg.Pool, cid: str) -> None:
    await pool.execute(
        "UPDATE attempts SET window_leased_until = now() - interval '1 second'"
        " WHERE campaign_id = $1",
        cid,
    )


def _failures(events: list[StatusEvent]) -> list[tuple[int, RecipientStatus, str | None, bool]]:
    return sorted((e.recipient_id, e.status, e.error_code, e.fallback) for e in events)


WINDOW_FAILED = [
    (1, RecipientStatus.FAILED, WINDOW_EXPIRED, True),
    (2, RecipientStatus.FAILED, WINDOW_EXPIRED, True),
]


async def test_revoke_runs_with_no_transaction_open(settings: Settings) -> None:
    """While the provider is asked, the status fold can lock the attempt rows (a FOR UPDATE
    NOWAIT succeeds) and the sweeper holds no transaction open."""
    cid = "rev-notx"
    await ensure_topics(settings)
    async with db.pool(settings.database_url) as pool, producer(settings) as kafka:
        await _campaign(pool, cid)
        seen_idle: list[int] = []

        async def check(message_id: str) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "SELECT 1 FROM attempts WHERE campaign_id = $1 FOR UPDATE NOWAIT", cid
                )
                seen_idle.append(
                    await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                    )
                )

        revoker = Revoker(True, check)
        recording = Recording(kafka)
        sweeper = _sweeper(settings, pool, recording)
        assert await sweeper.expire_windows(_directory(settings, pool, revoker)) == 2
        assert len(revoker.calls) == 2
        assert seen_idle == [0, 0]
        assert _failures(recording.events()) == WINDOW_FAILED
        assert await _windows(pool, cid) == [(1, True, True), (2, True, True)]
        # Claimed once: nothing is asked or published again.
        assert await sweeper.expire_windows(_directory(settings, pool, revoker)) == 0
        assert len(revoker.calls) == 2 and len(recording.events()) == 2


async def test_a_lost_revoke_publishes_no_failure(settings: Settings) -> None:
    """RBM answered 404: the message was delivered first, and its callback says so."""
    cid = "rev-lost"
    await ensure_topics(settings)
    async with db.pool(settings.database_url) as pool, producer(settings) as kafka:
        await _campaign(pool, cid)
        revoker = Revoker(False)
        recording = Recording(kafka)
        sweeper = _sweeper(settings, pool, recording)
        assert await sweeper.expire_windows(_directory(settings, pool, revoker)) == 2
        assert recording.values == []
        assert await _windows(pool, cid) == [(1, True, False), (2, True, False)]
        assert await sweeper.expire_windows(_directory(settings, pool, revoker)) == 0
        assert len(revoker.calls) == 2


async def test_a_won_revoke_survives_a_failed_publish(settings: Settings) -> None:
    """The revoke won, then Kafka failed: the failure is still owed, and a later round
    publishes it without asking RBM again (which would answer 404, as for a delivery)."""
    cid = "rev-kafka"
    await ensure_topics(settings)
    async with db.pool(settings.database_url) as pool, producer(settings) as kafka:
        await _campaign(pool, cid)
        won = Revoker(True)
        with pytest.raises(OSError):
            await _sweeper(settings, pool, Broken()).expire_windows(_directory(settings, pool, won))
        assert len(won.calls) == 2
        assert await _windows(pool, cid) == [(1, False, True), (2, False, True)]
        repeat = Revoker(False)  # what RBM answers a second revoke of one message
        recording = Recording(kafka)
        sweeper = _sweeper(settings, pool, recording)
        # Leased by the failed round until the lease lapses.
        assert await sweeper.expire_windows(_directory(settings, pool, repeat)) == 0
        await _lapse_leases(pool, cid)
        assert await sweeper.expire_windows(_directory(settings, pool, repeat)) == 2
        assert repeat.calls == []
        assert _failures(recording.events()) == WINDOW_FAILED
        assert await _windows(pool, cid) == [(1, True, True), (2, True, True)]


async def test_a_failed_revoke_is_tried_again_once_its_lease_lapses(settings: Settings) -> None:
    """A revoke whose outcome is unknown (5xx, timeout) fails no round and publishes nothing:
    the attempt stays leased, then a later round revokes it again."""
    cid = "rev-error"
    await ensure_topics(settings)
    async with db.pool(settings.database_url) as pool, producer(settings) as kafka:
        await _campaign(pool, cid)
        down = Revoker(RevokeError(ErrorClass.RETRYABLE, "503", "unavailable"))
        recording = Recording(kafka)
        sweeper = _sweeper(settings, pool, recording)
        assert await sweeper.expire_windows(_directory(settings, pool, down)) == 2
        assert recording.values == []
        assert await _windows(pool, cid) == [(1, False, False), (2, False, False)]
        assert await sweeper.expire_windows(_directory(settings, pool, down)) == 0
        assert len(down.calls) == 2
        await _lapse_leases(pool, cid)
        up = Revoker(True)
        assert await sweeper.expire_windows(_directory(settings, pool, up)) == 2
        assert len(up.calls) == 2
        assert _failures(recording.events()) == WINDOW_FAILED


async def test_two_sweepers_revoke_and_publish_each_window_once(settings: Settings) -> None:
    cid = "rev-two"
    await ensure_topics(settings)
    async with db.pool(settings.database_url) as pool, producer(settings) as kafka:
        await _campaign(pool, cid)
        revoker = Revoker(True, delay_s=0.2)
        recording = Recording(kafka)
        sweepers = [_sweeper(settings, pool, recording) for _ in range(3)]
        claimed: list[int] = []

        async def sweep(sweeper: Sweeper) -> None:
            claimed.append(await sweeper.expire_windows(_directory(settings, pool, revoker)))

        async with anyio.create_task_group() as tg:
            for sweeper in sweepers:
                tg.start_soon(sweep, sweeper)
        assert sum(claimed) == 2
        assert sorted(revoker.calls) == [f"{cid}.1.1", f"{cid}.2.1"]
        assert _failures(recording.events()) == WINDOW_FAILED
