"""A broker that stops answering (connections open, nothing comes back), through a TCP proxy
that freezes: the scheduler's tick survives its publish timing out and a paced campaign goes
on after the thaw; a worker sent SIGTERM while the broker hangs stops within the drain plus
the final flush budget, not after the producer's request timeout on top."""

from __future__ import annotations

import logging
import signal
import time

import anyio
import pytest

from herald.bus import producer
from herald.settings import Settings
from herald.store import db
from tests.faults import invariants
from tests.faults.hang import HungBroker
from tests.faults.ledger import Ledger
from tests.faults.scenario import attempts, campaign, children, pipeline, scalar, until
from tests.faults.sizes import Scale
from tests.pipeline import publish_event

BATCHES = 10
BATCH_DELAY_MS = 500  # one batch due every half second: a paced campaign
# Short enough that the freeze outlasts several publishes, as 60 s of a hung broker
# outlasted the producer's 30 s request timeout.
REQUEST_TIMEOUT_MS = 1_500
HANG_S = 5.0

_UNPUBLISHED = "SELECT count(*) FROM batches WHERE campaign_id = $1 AND published_at IS NULL"


def _tick_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.__dict__.get("error", "")
        for r in caplog.records
        if r.__dict__.get("event") == "round_failed" and r.__dict__.get("loop") == "scheduler tick"
    ]


async def test_broker_hung_mid_paced_campaign(
    fault_settings: Settings,
    scale: Scale,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Broker hung mid paced campaign (TCP proxy freeze)"""
    monkeypatch.setattr(producer, "REQUEST_TIMEOUT_MS", REQUEST_TIMEOUT_MS)
    caplog.set_level(logging.WARNING, logger="herald.loops")
    async with HungBroker() as broker:
        settings = fault_settings.with_overrides(kafka_bootstrap=broker.bootstrap)
        async with db.pool(settings.database_url) as pool, pipeline(settings) as roles_up:
            c = await campaign(
                settings,
                pool,
                recipients=scale.recipients,
                batch_size=-(-scale.recipients // BATCHES),
                publish=False,
            )
            c.event["batch_delay_ms"] = BATCH_DELAY_MS
            await publish_event(settings, c.event)

            async def sending() -> bool:
                return await attempts(pool, c.id) > 0

            await until(sending, timeout_s=60, what="the first sends")
            broker.freeze()
            await anyio.sleep(HANG_S)
            unpublished = await scalar(pool, _UNPUBLISHED, c.id)
            failures = _tick_failures(caplog)
            broker.thaw()
            ledger.record(
                "fault landed: the scheduler's publishes timed out mid-campaign",
                unpublished > 0 and bool(failures),
                f"{unpublished} of {BATCHES} batches unpublished after {HANG_S:g} s hung; "
                f"tick failures: {', '.join(failures) or 'none'}",
            )
            expect = invariants.Expect(
                campaign_ids=[c.id], paths={c.id: c.mode}, simulator_url=settings.simulator_url
            )
            await invariants.check(
                ledger, settings, expect, scale.settle_timeout_s, lambda: roles_up.crashes
            )
            ledger.record(
                "every batch published after the thaw",
                await scalar(pool, _UNPUBLISHED, c.id) == 0,
            )
    ledger.verify()


# Short windows, so the test shows the sum and not the defaults' 20 + 10 s.
DRAIN_S = 3.0
FLUSH_S = 2.0
# Interpreter exit after the roles stopped, on a busy machine.
EXIT_MARGIN_S = 2.5


async def test_worker_sigterm_while_the_broker_hangs(
    fault_settings: Settings, scale: Scale, ledger: Ledger
) -> None:
    """Worker stopped (SIGTERM) while the broker hangs"""
    in_process = frozenset({"scheduler", "status", "ingress", "simulator"})
    async with HungBroker() as broker:
        settings = fault_settings.with_overrides(
            kafka_bootstrap=broker.bootstrap,
            drain_timeout_s=DRAIN_S,
            shutdown_flush_timeout_s=FLUSH_S,
        )
        async with (
            children(settings) as kids,
            db.pool(settings.database_url) as pool,
            pipeline(settings, in_process) as roles_up,
        ):
            worker = kids.start("worker")
            # Slow sends: the worker is mid-batch, with status events to publish, at the stop.
            c = await campaign(settings, pool, recipients=scale.recipients, rate_per_s=30.0)

            async def sending() -> bool:
                return await attempts(pool, c.id) >= 10

            await until(sending, timeout_s=90, what="the worker's first sends")
            broker.freeze()
            # Long enough for the worker's publishes to be stuck waiting on the broker.
            await anyio.sleep(1.0)
            assert worker.pid is not None
            started = time.monotonic()
            kids.kill(worker, signal.SIGTERM)
            with anyio.fail_after(DRAIN_S + FLUSH_S + 40):
                while worker.alive():
                    await anyio.sleep(0.05)
            stopped_s = time.monotonic() - started
            broker.thaw()
            budget_s = DRAIN_S + FLUSH_S + EXIT_MARGIN_S
            ledger.record(
                "stopped within drain + flush",
                stopped_s <= budget_s,
                f"exited {stopped_s:.1f} s after SIGTERM; budget {budget_s:g} s "
                f"(drain {DRAIN_S:g} + flush {FLUSH_S:g} + exit {EXIT_MARGIN_S:g})",
            )
            ledger.record("exited cleanly", worker.stop() == 0)
            # What the stop abandoned is redelivered: a new worker finishes the campaign.
            kids.start("worker")
            expect = invariants.Expect(
                campaign_ids=[c.id], paths={c.id: c.mode}, simulator_url=settings.simulator_url
            )
            await invariants.check(
                ledger,
                settings,
                expect,
                scale.settle_timeout_s,
                lambda: roles_up.crashes + kids.died(),
            )
    ledger.verify()
