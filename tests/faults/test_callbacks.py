"""Provider callbacks that misbehave: each one replayed five times at once, callbacks out of
order (the final status before `sent`), and callbacks that arrive before the worker has
recorded the send they report on (Viber names only its own message token)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import asyncpg
from prometheus_client import REGISTRY

from herald.domain.channels import SendingMode
from herald.settings import Settings
from herald.store import db
from tests.faults import invariants
from tests.faults.ledger import Ledger
from tests.faults.proxy import Replayer, delayed
from tests.faults.scenario import Campaign, campaign, pipeline, scalar
from tests.faults.sizes import Scale

REPLAYS = 5
# Every channel the simulator serves: WhatsApp, RCS and SMS in one chain, and Viber, whose
# callbacks name only Viber's token and so go through the parked-callback path.
MODES = (SendingMode.WHATSAPP_RCS_SMS, SendingMode.VIBER)


def folded_unchanged() -> float:
    """Callback events the status consumer folded without effect (duplicates, late ones)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name == "herald_callbacks_folded":
            total += sum(
                s.value
                for s in metric.samples
                if s.name.endswith("_total") and s.labels.get("outcome") == "unchanged"
            )
    return total


async def _campaigns(settings: Settings, pool: asyncpg.Pool, scale: Scale) -> list[Campaign]:
    return [
        await campaign(settings, pool, recipients=scale.recipients // len(MODES), mode=mode)
        for mode in MODES
    ]


async def _check(
    ledger: Ledger, settings: Settings, scale: Scale, made: list[Campaign], crashes: list[str]
) -> None:
    expect = invariants.Expect(
        campaign_ids=[c.id for c in made],
        paths={c.id: c.mode for c in made},
        simulator_url=settings.simulator_url,
    )
    await invariants.check(ledger, settings, expect, scale.settle_timeout_s, lambda: crashes)


async def test_duplicate_callbacks(fault_settings: Settings, scale: Scale, ledger: Ledger) -> None:
    """Duplicate callbacks, each replayed x5 at once"""
    ingress = f"http://127.0.0.1:{fault_settings.ingress_port}"
    async with Replayer(ingress, times=REPLAYS) as replayer:
        settings = fault_settings.with_overrides(public_ingress_url=replayer.url)
        before = folded_unchanged()
        async with db.pool(settings.database_url) as pool, pipeline(settings) as roles:
            made = await _campaigns(settings, pool, scale)
            await _check(ledger, settings, scale, made, roles.crashes)
        ledger.record(
            f"fault landed: every callback posted {REPLAYS} times",
            replayer.received > 0 and replayer.forwarded == REPLAYS * replayer.received,
            f"{replayer.received} callbacks, {replayer.forwarded} posted; "
            f"{folded_unchanged() - before:g} folded without effect",
        )
    ledger.verify()


async def test_out_of_order_callbacks(
    fault_settings: Settings, scale: Scale, ledger: Ledger
) -> None:
    """Out-of-order callbacks (every final status before sent)"""
    settings = fault_settings.with_overrides(simulator_out_of_order_ratio=1.0)
    before = folded_unchanged()
    async with db.pool(settings.database_url) as pool, pipeline(settings) as roles:
        made = await _campaigns(settings, pool, scale)
        await _check(ledger, settings, scale, made, roles.crashes)
    late = folded_unchanged() - before
    ledger.record(
        "fault landed: late callbacks folded without effect",
        late > 0,
        f"{late:g} callback events changed nothing",
    )
    ledger.verify()


@asynccontextmanager
async def _most_parked(pool: asyncpg.Pool) -> AsyncIterator[list[int]]:
    """The largest number of parked callbacks seen while the block runs."""
    seen = [0]

    async def watch() -> None:
        while True:
            parked = await scalar(pool, "SELECT count(*) FROM parked_status_events")
            seen[0] = max(seen[0], parked)
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        try:
            yield seen
        finally:
            tg.cancel_scope.cancel()


async def test_callbacks_before_send_recorded(
    fault_settings: Settings, scale: Scale, ledger: Ledger
) -> None:
    """Callbacks that arrive before the send was recorded"""
    # Viber's answers reach the worker a second late, long after the simulator has posted
    # the message's callbacks: they name a message token no attempt row holds yet.
    async with delayed(fault_settings.simulator_url, delay_s=1.0) as slow:
        settings = fault_settings.with_overrides(viber_base_url=slow.url)
        async with (
            db.pool(settings.database_url) as pool,
            pipeline(settings) as roles,
            _most_parked(pool) as parked,
        ):
            c = await campaign(settings, pool, recipients=scale.recipients, mode=SendingMode.VIBER)
            await _check(ledger, settings, scale, [c], roles.crashes)
    ledger.record(
        "fault landed: callbacks parked before their send was recorded",
        parked[0] > 0,
        f"up to {parked[0]} callbacks parked at once",
    )
    ledger.verify()
