"""Delivery against the real PostgreSQL with a recording provider: a pause that lands while
sends wait on the account's limiter (or between tries) holds them; an account's changed rate
and quiet hours reach a running Delivery without a restart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import asyncpg
import pytest

from herald.delivery import Delivery
from herald.demo import campaign_event
from herald.domain.channels import Channel, SendingMode
from herald.domain.compose import RecipientRow
from herald.domain.events import CampaignConfirmed, parse_campaign_confirmed
from herald.fakes import MemorySink
from herald.ports import PgAccounts, PgAttemptLog
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.providers.directory import Directory
from herald.settings import Settings
from herald.store import accounts, campaigns, db, recipients

PHONES = [f"+1415555{n:04d}" for n in range(101, 105)]


@dataclass
class Recording:
    """An SMS provider that records each request. The first request pauses the campaign
    (through `paused`) once every other send has passed the gate before its limiter wait, and
    is answered `first_answer`."""

    first_answer: SendResult
    paused: anyio.Event = field(default_factory=anyio.Event)
    sent: list[str] = field(default_factory=list)
    gate_calls: int = 0
    name: str = "recording"
    channel: Channel = Channel.SMS

    async def gate(self) -> bool:
        self.gate_calls += 1
        return not self.paused.is_set()

    async def send(self, message: OutboundMessage) -> SendResult:
        self.sent.append(message.to)
        if len(self.sent) == 1:
            # Each send checks the gate on its way in, and the first once more before its
            # request: the others now wait on the limiter (1/s).
            while self.gate_calls < len(PHONES) + 1:
                await anyio.sleep(0.01)
            self.paused.set()
            return self.first_answer
        return SendResult(accepted=True, provider_message_id=f"m{len(self.sent)}")

    async def close(self) -> None:
        return None


@pytest.fixture
async def pool(pg_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with db.pool(pg_url, max_size=4) as opened:
        yield opened


async def _campaign(pool: asyncpg.Pool, account: str, rate_per_s: float) -> CampaignConfirmed:
    await accounts.ensure(pool, account, account, rate_per_s)
    raw = campaign_event(
        campaign_id=str(uuid.uuid4()), account_id=account, mode=SendingMode.SMS, tags=[]
    )
    raw["audience"] = {"destinations": PHONES}
    raw["content"]["sms"]["body"] = "20% off today."  # raw destinations have no names
    event = parse_campaign_confirmed(raw)
    async with pool.acquire() as conn, conn.transaction():
        assert await campaigns.insert(conn, event, raw)
        assert await campaigns.expand(conn, event) == len(PHONES)
    return event


def _delivery(
    pool: asyncpg.Pool, tmp_path: Path, provider: Recording, **values: object
) -> Delivery:
    settings = Settings.development(data_dir=tmp_path, **values)
    directory = Directory(
        settings=settings, pool=pool, session=None, defaults={Channel.SMS: provider}
    )
    return Delivery(
        settings=settings,
        attempts=PgAttemptLog(pool),
        accounts=PgAccounts(pool),
        transport=directory,
        sink=MemorySink(),
    )


async def _rows(pool: asyncpg.Pool, event: CampaignConfirmed) -> list[RecipientRow]:
    return await recipients.queued_chunk(pool, event.campaign_id, 0, 10**9, 100)


@pytest.mark.parametrize(
    "first_answer",
    [
        # The others wait on the limiter (1/s) when the pause lands.
        SendResult(accepted=True, provider_message_id="m1"),
        # The first is answered "retry": its next try, after the backoff, is held too.
        SendResult(accepted=False, error_class=ErrorClass.RETRYABLE, error_code="503"),
    ],
    ids=["waiting_on_the_limiter", "between_tries"],
)
async def test_a_pause_holds_sends_waiting_to_go(
    pool: asyncpg.Pool, tmp_path: Path, first_answer: SendResult
) -> None:
    event = await _campaign(pool, "acct-pause", rate_per_s=1.0)
    rows = await _rows(pool, event)
    provider = Recording(first_answer=first_answer)
    delivery = _delivery(pool, tmp_path, provider)
    with anyio.fail_after(30):
        delivered = await delivery.deliver(event, rows, gate=provider.gate)
    # Every send passed the gate before its limiter wait; only the first reached the provider.
    assert len(provider.sent) == 1
    first = rows[[r.phone for r in rows].index(provider.sent[0])].id
    if first_answer.accepted:
        assert delivered.held == {r.id for r in rows} - {first}
        assert [e.recipient_id for e in delivered.events] == [first]
    else:
        assert delivered.held == {r.id for r in rows}
        assert delivered.events == []
    # Held sends leave no attempt row: they go out on resume as if never started.
    attempted = await pool.fetch(
        "SELECT recipient_id FROM attempts WHERE campaign_id = $1", event.campaign_id
    )
    assert {r["recipient_id"] for r in attempted} == {r.id for r in rows} - delivered.held


async def test_a_changed_rate_and_quiet_hours_reach_a_running_delivery(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await accounts.ensure(pool, "acct-rate", "acct-rate", 20.0)
    provider = Recording(first_answer=SendResult(accepted=True))
    delivery = _delivery(pool, tmp_path, provider, account_settings_ttl_s=0.05)
    limiter = await delivery.limiter_for("acct-rate", Channel.SMS)
    assert limiter.state.configured_per_s == 20.0
    assert (await delivery.account_settings("acct-rate")).quiet_hours is None

    changed = accounts.AccountSettings(rate_per_s=300.0, quiet_hours=(22, 7))
    assert await accounts.update_settings(pool, "acct-rate", changed) == changed
    with anyio.fail_after(10):
        while (await delivery.limiter_for("acct-rate", Channel.SMS)).state.configured_per_s != (
            300.0
        ):
            await anyio.sleep(0.05)
    # The same limiter, its rate changed in place; quiet hours follow the same cache.
    assert await delivery.limiter_for("acct-rate", Channel.SMS) is limiter
    assert limiter.state.current_per_s == 300.0
    assert (await delivery.account_settings("acct-rate")).quiet_hours == (22, 7)
    assert await delivery.rate_of("acct-rate") == 300.0
