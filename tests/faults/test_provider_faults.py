"""Providers misbehaving: a 5xx storm, a 429 storm with Retry-After, and a provider that takes
a message and then never answers (a timed-out, ambiguous send).

The simulator draws each fault from herald's message id, and the campaign ids here are
fixed (each test has its own database), so every run meets the same faults.
"""

from __future__ import annotations

from typing import Any

import pytest

from herald.domain.channels import SendingMode
from herald.settings import Settings
from herald.store import db
from tests.faults import invariants
from tests.faults.ledger import Ledger
from tests.faults.scenario import campaign, pipeline
from tests.faults.sizes import Scale


async def _run(
    settings: Settings,
    scale: Scale,
    ledger: Ledger,
    *,
    mode: SendingMode,
    campaign_id: str,
    fault: str,
    recipients: int,
    batch_size: int = 100,
    gave_up_allowed: bool = False,
    quiet_s: float = invariants.QUIET_S,
) -> dict[str, Any]:
    """One campaign through every role in-process; the simulator's counters at the end."""

    async with db.pool(settings.database_url) as pool, pipeline(settings) as roles_up:
        c = await campaign(
            settings,
            pool,
            recipients=recipients,
            mode=mode,
            campaign_id=campaign_id,
            batch_size=batch_size,
        )
        expect = invariants.Expect(
            campaign_ids=[c.id],
            paths={c.id: mode},
            gave_up_allowed=gave_up_allowed,
            simulator_url=settings.simulator_url,
            quiet_s=quiet_s,
        )
        await invariants.check(
            ledger, settings, expect, scale.settle_timeout_s, lambda: roles_up.crashes
        )
        stats = await invariants.simulator_stats(settings.simulator_url)
    seen = sum(stats[fault].values())
    ledger.record(f"fault landed: provider {fault} > 0", seen > 0, f"{seen} {fault}")
    return stats


async def test_5xx_storm(fault_settings: Settings, scale: Scale, ledger: Ledger) -> None:
    """Provider 5xx storm (half of all sends answered 500)"""
    # RCS then SMS: a 5xx must never hand a recipient over to the next channel; bounded
    # retries may end a recipient failed (counted), never lost or sent on two channels.
    await _run(
        fault_settings.with_overrides(simulator_error_5xx_ratio=0.5),
        scale,
        ledger,
        mode=SendingMode.RCS_SMS,
        campaign_id="fault-5xx-storm",
        fault="rejected",
        recipients=scale.storm_recipients,
        gave_up_allowed=True,
    )
    ledger.verify()


async def test_429_storm(fault_settings: Settings, scale: Scale, ledger: Ledger) -> None:
    """Provider 429 storm with Retry-After (half of all sends)"""
    await _run(
        fault_settings.with_overrides(simulator_rate_429_ratio=0.5),
        scale,
        ledger,
        mode=SendingMode.SMS,
        campaign_id="fault-429-storm",
        fault="rejected",
        # With this campaign id, recipients 19 and 29 (deliverable numbers) draw five 429s
        # in a row: more than herald's tries, so a 429 must not use one up.
        recipients=scale.storm_recipients,
    )
    ledger.verify()


@pytest.mark.parametrize(
    "mode",
    [
        SendingMode.SMS,
        SendingMode.WHATSAPP_SMS,
    ],
    ids=lambda m: m.value,
)
async def test_accepted_then_timeout(
    fault_settings: Settings, scale: Scale, ledger: Ledger, mode: SendingMode
) -> None:
    """Provider accepts, then times out (a fifth of all sends)"""
    await _run(
        fault_settings.with_overrides(simulator_timeout_ratio=0.2, send_timeout_s=1.0),
        scale,
        ledger,
        mode=mode,
        campaign_id=f"fault-timeout-{mode.value.lower()}",
        fault="timeouts",
        # With these campaign ids, 7 of the first 60 WhatsApp sends time out to numbers
        # that are not on WhatsApp (recipients 7, 8 and 10 in the first batch among them).
        recipients=scale.storm_recipients,
        # Small batches: fallback work for the first batch queues behind the others on the
        # account's partition, as it does behind the rest of any big campaign.
        batch_size=10,
        # A timed-out send is final (failed) before its callbacks say delivered, up to 3 s
        # later for a slow number.
        quiet_s=3.5,
    )
    ledger.verify()
