"""The delivery pass driven wholly through its in-memory ports (herald.fakes): the chain
within one pass, a restart that sends nothing twice, the one resend of a lost answer, a
pause, quiet hours and the error budget, with no PostgreSQL, Kafka or HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from herald.delivery import Delivery
from herald.demo import campaign_event
from herald.domain.channels import Channel, SendingMode
from herald.domain.compose import RecipientRow
from herald.domain.events import CampaignConfirmed, parse_campaign_confirmed
from herald.domain.quiet import timezone_for
from herald.domain.status import RecipientStatus
from herald.fakes import (
    ACCEPTED,
    Answer,
    MemoryAccounts,
    MemoryAttemptLog,
    MemorySink,
    MemoryTransport,
    ScriptedProvider,
)
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.settings import Settings
from herald.store.accounts import AccountSettings

UNREACHABLE = SendResult(accepted=False, error_class=ErrorClass.UNREACHABLE, error_code="131026")
LOST = SendResult(accepted=False, error_class=ErrorClass.AMBIGUOUS, error_code="timeout")
REFUSED = SendResult(accepted=False, error_class=ErrorClass.PERMANENT, error_code="21211")


def _event(mode: SendingMode = SendingMode.WHATSAPP_RCS_SMS) -> CampaignConfirmed:
    raw = campaign_event(campaign_id=str(uuid.uuid4()), account_id="acct", mode=mode, tags=["vip"])
    return parse_campaign_confirmed(raw)


def _rows(count: int) -> list[RecipientRow]:
    return [
        RecipientRow(
            id=n,
            phone=f"+1415555{n:04d}",
            email=None,
            contact_id=None,
            fields={"first_name": "Ada"},
        )
        for n in range(1, count + 1)
    ]


class Core:
    """A Delivery over fakes: one scripted provider per channel of the chain."""

    def __init__(
        self,
        tmp_path: Path,
        answers: Mapping[Channel, Answer] | None = None,
        accounts: MemoryAccounts | None = None,
        **values: object,
    ) -> None:
        answers = answers or {}
        self.providers = {
            channel: ScriptedProvider(f"{channel.value}-1", channel, answers.get(channel, ACCEPTED))
            for channel in (Channel.WHATSAPP, Channel.RCS, Channel.SMS)
        }
        self.attempts = MemoryAttemptLog()
        self.accounts = accounts or MemoryAccounts()
        self.sink = MemorySink()
        self.delivery = Delivery(
            settings=Settings.development(data_dir=tmp_path, **values),
            attempts=self.attempts,
            accounts=self.accounts,
            transport=MemoryTransport({c: [p] for c, p in self.providers.items()}),
            sink=self.sink,
        )

    def sent(self, channel: Channel) -> list[str]:
        return [m.to for m in self.providers[channel].sent]


async def test_a_recipient_unreachable_on_a_channel_moves_on_within_the_pass(
    tmp_path: Path,
) -> None:
    rows = _rows(4)
    unreachable = {rows[0].phone, rows[1].phone}

    def whatsapp(message: OutboundMessage) -> SendResult:
        return UNREACHABLE if message.to in unreachable else ACCEPTED

    core = Core(tmp_path, {Channel.WHATSAPP: whatsapp})
    event = _event()
    delivered = await core.delivery.deliver(event, rows)
    assert len(core.sent(Channel.WHATSAPP)) == 4
    assert sorted(core.sent(Channel.RCS)) == sorted(unreachable)
    assert core.sent(Channel.SMS) == []
    # Every event reached the sink, in one publish, and the pass returns the same events.
    assert len(core.sink.published) == 1
    assert core.sink.events == delivered.events
    last = core.sink.last()
    assert {rid: e.channel for rid, e in last.items()} == {
        1: "rcs",
        2: "rcs",
        3: "whatsapp",
        4: "whatsapp",
    }
    assert all(e.status is RecipientStatus.SENT for e in last.values())
    # The second attempt names its channel on the recipient (follow_chain).
    assert core.attempts.following == {(event.campaign_id, 1): "rcs", (event.campaign_id, 2): "rcs"}
    outcomes = {key[1:]: row.outcome for key, row in core.attempts.rows.items()}
    assert outcomes == {
        (1, 1): "unreachable",
        (2, 1): "unreachable",
        (1, 2): "accepted",
        (2, 2): "accepted",
        (3, 1): "accepted",
        (4, 1): "accepted",
    }


async def test_a_pass_again_over_the_same_recipients_sends_nothing_twice(tmp_path: Path) -> None:
    core = Core(tmp_path)
    event, rows = _event(), _rows(3)
    first = await core.delivery.deliver(event, rows)
    again = await core.delivery.deliver(event, rows)
    assert len(core.sent(Channel.WHATSAPP)) == 3
    # The recorded outcome is published again instead.
    assert [(e.recipient_id, e.status, e.accepted) for e in again.events] == [
        (e.recipient_id, e.status, e.accepted) for e in first.events
    ]


async def test_a_lost_answer_is_sent_once_more_at_most(tmp_path: Path) -> None:
    core = Core(tmp_path, {Channel.WHATSAPP: LOST})
    event, rows = _event(SendingMode.WHATSAPP), _rows(1)
    for _ in range(3):
        delivered = await core.delivery.deliver(event, rows)
        (only,) = delivered.events
        # A lost answer may have been taken: sent, never failed.
        assert only.status is RecipientStatus.SENT
    assert len(core.sent(Channel.WHATSAPP)) == 2


async def test_a_closed_gate_holds_every_send_and_leaves_no_attempt_row(tmp_path: Path) -> None:
    core = Core(tmp_path)

    async def closed() -> bool:
        return False

    event, rows = _event(), _rows(5)
    delivered = await core.delivery.deliver(event, rows, gate=closed)
    assert delivered.held == {r.id for r in rows}
    assert delivered.events == [] and core.sink.published == []
    assert core.attempts.rows == {}
    assert core.sent(Channel.WHATSAPP) == []


async def test_quiet_hours_hold_recipients_in_the_attempt_log(tmp_path: Path) -> None:
    event, rows = _event(), _rows(2)
    # Quiet from this hour in the recipients' time zone to the hour before it, a day later.
    zone = timezone_for(rows[0].phone)
    assert zone is not None
    hour = datetime.now(UTC).astimezone(ZoneInfo(zone)).hour
    quiet = AccountSettings(rate_per_s=None, quiet_hours=(hour, (hour - 1) % 24))
    core = Core(tmp_path, accounts=MemoryAccounts(default=quiet))
    delivered = await core.delivery.deliver(event, rows)
    assert delivered.events == []
    assert set(core.attempts.held) == {(event.campaign_id, 1), (event.campaign_id, 2)}
    assert core.sent(Channel.WHATSAPP) == []


async def test_a_spent_error_budget_pauses_the_campaign_once(tmp_path: Path) -> None:
    core = Core(
        tmp_path,
        {Channel.WHATSAPP: REFUSED},
        error_budget_window=10,
        error_budget_max_failure_ratio=0.5,
    )
    event = _event(SendingMode.WHATSAPP)
    delivered = await core.delivery.deliver(event, _rows(30))
    assert list(core.accounts.paused) == [event.campaign_id]
    assert "error_budget" in core.accounts.paused[event.campaign_id]
    assert {e.status for e in delivered.events} == {RecipientStatus.FAILED}


@pytest.mark.parametrize("rate_per_s", [None, 250.0])
async def test_the_account_rate_comes_from_the_accounts_port(
    tmp_path: Path, rate_per_s: float | None
) -> None:
    accounts = MemoryAccounts(
        settings_by_account={"acct": AccountSettings(rate_per_s=rate_per_s, quiet_hours=None)}
    )
    core = Core(tmp_path, accounts=accounts, default_rate_per_s=40.0)
    assert await core.delivery.rate_of("acct") == (rate_per_s or 40.0)
    assert await core.delivery.rate_of("other") == 40.0
