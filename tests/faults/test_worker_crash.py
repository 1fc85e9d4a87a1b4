"""A worker killed with SIGKILL mid-campaign, and one stopped with SIGTERM: afterwards every
recipient reaches exactly one final state, counters equal a recount, and no recipient is sent
twice beyond the ambiguous-send allowance (sends in flight at the kill)."""

from __future__ import annotations

import os
import signal
import time
import uuid

import aiohttp
import anyio
import asyncpg
import pytest

from herald.delivery import micro_batching
from herald.demo import FIRST_PHONE, campaign_event
from herald.domain.channels import SendingMode
from herald.domain.work import shares_for
from herald.process import ChildRole
from herald.settings import Settings
from herald.store import accounts, campaigns, contacts, db
from herald.worker import CHUNKS_IN_FLIGHT
from tests.pipeline import publish_event, running, wait_completed

RECIPIENTS = 3_000
RATE_PER_S = 400.0
IN_PROCESS = frozenset({"scheduler", "status", "ingress", "simulator"})


@pytest.fixture
def crash_settings(settings: Settings) -> Settings:
    # A dead member's partitions move after the session timeout: keep it short here.
    return settings.with_overrides(kafka_session_timeout_ms=6_000, worker_concurrency=32)


async def _campaign(settings: Settings, pool: asyncpg.Pool) -> str:
    account_id = f"acct-{uuid.uuid4().hex[:8]}"
    campaign_id = str(uuid.uuid4())
    await accounts.ensure(pool, account_id, "crash", RATE_PER_S)
    await contacts.insert_synthetic(
        pool, account_id=account_id, count=RECIPIENTS, first_phone=FIRST_PHONE + 7, tag="crash"
    )
    event = campaign_event(
        campaign_id=campaign_id, account_id=account_id, mode=SendingMode.SMS, tags=["crash"]
    )
    event["batch_size"] = 1_000
    await publish_event(settings, event)
    return campaign_id


async def _simulator_duplicates(settings: Settings) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{settings.simulator_url}/_simulator/stats") as response,
    ):
        stats = await response.json()
    return sum(stats["duplicates"].values())


async def _attempts(pool: asyncpg.Pool, campaign_id: str) -> int:
    n: int = await pool.fetchval(
        "SELECT count(*) FROM attempts WHERE campaign_id = $1", campaign_id
    )
    return n


async def _until(pool: asyncpg.Pool, campaign_id: str, at_least: int) -> None:
    with anyio.fail_after(90):
        while await _attempts(pool, campaign_id) < at_least:
            await anyio.sleep(0.05)


async def _check_exact(pool: asyncpg.Pool, campaign_id: str) -> campaigns.Counters:
    counters = await wait_completed(pool, campaign_id, timeout_s=180)
    recount = await campaigns.recount(pool, campaign_id)
    assert counters.final == counters.total == RECIPIENTS
    for name in ("sent", "delivered", "failed", "skipped", "final"):
        assert recount[name] == getattr(counters, name), name
    # One attempt row per sendable recipient: nobody lost, nobody sent on a second row.
    assert await _attempts(pool, campaign_id) == RECIPIENTS - counters.skipped
    return counters


async def test_sigkill_mid_campaign(crash_settings: Settings) -> None:
    settings = crash_settings
    async with db.pool(settings.database_url) as pool, running(settings, IN_PROCESS):
        campaign_id = await _campaign(settings, pool)
        first = ChildRole(settings, ["worker"])
        first.start()
        try:
            await _until(pool, campaign_id, 800)
            assert first.pid is not None
            os.kill(first.pid, signal.SIGKILL)
        finally:
            first.stop()
        before = await _attempts(pool, campaign_id)
        assert before < RECIPIENTS
        second = ChildRole(settings, ["worker"])
        second.start()
        try:
            await _check_exact(pool, campaign_id)
        finally:
            second.stop()
        repeated = await pool.fetchval(
            "SELECT count(*) FROM attempts WHERE campaign_id = $1 AND sends > 1", campaign_id
        )
        # Attempts whose answer the kill lost are sent once more: at most the rows written
        # ahead of their sends by the passes in flight (each batch's chunks), for each batch
        # being sent (one for each of the account's sub-keys).
        shares = shares_for(settings.dispatch_subkeys, settings.topic_partitions)
        size, in_flight = micro_batching(settings.worker_concurrency)
        assert repeated <= CHUNKS_IN_FLIGHT * in_flight * size * shares
        # What reached the provider twice is bounded by the sends in flight at the kill.
        duplicates = await _simulator_duplicates(settings)
        assert duplicates <= settings.worker_concurrency


async def test_sigterm_drains_and_commits(crash_settings: Settings) -> None:
    settings = crash_settings
    async with db.pool(settings.database_url) as pool, running(settings, IN_PROCESS):
        campaign_id = await _campaign(settings, pool)
        first = ChildRole(settings, ["worker"])
        first.start()
        await _until(pool, campaign_id, 800)
        assert first.pid is not None
        started = time.monotonic()
        os.kill(first.pid, signal.SIGTERM)
        with anyio.fail_after(settings.drain_timeout_s + 10):
            while first.alive():
                await anyio.sleep(0.05)
        assert time.monotonic() - started < settings.drain_timeout_s
        assert first.stop() == 0
        # Drained: every attempt written has its provider answer recorded.
        pending = await pool.fetchval(
            "SELECT count(*) FROM attempts WHERE campaign_id = $1 AND outcome = 'pending'",
            campaign_id,
        )
        assert pending == 0
        second = ChildRole(settings, ["worker"])
        second.start()
        try:
            await _check_exact(pool, campaign_id)
        finally:
            second.stop()
        repeated = await pool.fetchval(
            "SELECT count(*) FROM attempts WHERE campaign_id = $1 AND sends > 1", campaign_id
        )
        assert repeated == 0
