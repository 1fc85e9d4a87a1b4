"""The in-memory ports of herald.fakes on their own (the attempt log is also held to
PostgreSQL by tests/integration/test_attempt_log_contract.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus, StatusEvent
from herald.fakes import (
    ACCEPTED,
    MemoryAccounts,
    MemoryAttemptLog,
    MemorySink,
    MemoryTransport,
    ScriptedProvider,
)
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.store.accounts import AccountSettings

REFUSED = SendResult(accepted=False, error_class=ErrorClass.PERMANENT, error_code="21211")


def _message(to: str) -> OutboundMessage:
    return OutboundMessage(
        message_id="c.1.1", channel=Channel.SMS, to=to, sender="s", body="b", callback_url="u"
    )


def _event(rid: int, status: RecipientStatus) -> StatusEvent:
    return StatusEvent(
        campaign_id="c",
        recipient_id=rid,
        attempt=1,
        channel="sms",
        status=status,
        occurred_at_ms=0,
        source="worker",
    )


async def test_accounts_answer_their_own_settings_or_the_default_and_pause_once() -> None:
    own = AccountSettings(rate_per_s=50.0, quiet_hours=(22, 7))
    accounts = MemoryAccounts(settings_by_account={"a": own})
    assert await accounts.settings("a") == own
    assert await accounts.settings("b") == AccountSettings(rate_per_s=None, quiet_hours=None)
    assert await accounts.pause_for_budget("a", "c1", "error_budget: x") is True
    assert await accounts.pause_for_budget("a", "c1", "error_budget: y") is False
    assert await accounts.pause_for_budget("a", "c2", "error_budget: z") is True
    assert accounts.paused == {"c1": "error_budget: x", "c2": "error_budget: z"}


async def test_a_scripted_provider_answers_by_message_and_keeps_what_it_was_given() -> None:
    provider = ScriptedProvider(
        "sms-1", Channel.SMS, lambda m: REFUSED if m.to.endswith("9") else ACCEPTED
    )
    assert await provider.send(_message("+14155550101")) == ACCEPTED
    assert await provider.send(_message("+14155550109")) == REFUSED
    assert [m.to for m in provider.sent] == ["+14155550101", "+14155550109"]
    quiet = ScriptedProvider("sms-2", Channel.SMS, REFUSED, keep=False)
    assert await quiet.send(_message("+14155550101")) == REFUSED
    assert quiet.sent == []


async def test_a_transport_routes_a_campaigns_choice_by_provider_name() -> None:
    first = ScriptedProvider("twilio-us", Channel.SMS)
    second = ScriptedProvider("twilio-eu", Channel.SMS)
    email = ScriptedProvider("smtp", Channel.EMAIL)
    transport = MemoryTransport(
        {Channel.SMS: [first, second], Channel.EMAIL: [email]}, rates={"twilio-eu": 5.0}
    )
    providers = await transport.for_account("any")
    assert providers[Channel.SMS] == [first, second]
    routed = transport.chosen(providers, {Channel.SMS: "twilio-eu", Channel.EMAIL: "gone"})
    # A choice that names no provider of the channel leaves its usual order.
    assert routed == {Channel.SMS: [second], Channel.EMAIL: [email]}
    assert transport.rates == {"twilio-eu": 5.0}


async def test_a_sink_keeps_each_publish_and_skips_empty_ones() -> None:
    sink = MemorySink()
    await sink.publish("c", [_event(1, RecipientStatus.SENT), _event(2, RecipientStatus.FAILED)])
    await sink.publish("c", [])
    await sink.publish("c", [_event(1, RecipientStatus.DELIVERED)])
    assert len(sink.published) == 2
    assert [e.status for e in sink.events] == [
        RecipientStatus.SENT,
        RecipientStatus.FAILED,
        RecipientStatus.DELIVERED,
    ]
    assert {rid: e.status for rid, e in sink.last().items()} == {
        1: RecipientStatus.DELIVERED,
        2: RecipientStatus.FAILED,
    }


async def test_an_attempt_log_holds_quiet_hours_and_follows_later_attempts() -> None:
    log = MemoryAttemptLog()
    assert await log.insert_pending("c", [1, 2], [1, 2], "rcs", "rbm") == {1, 2}
    # Only a later attempt moves its recipient to its channel.
    assert log.following == {("c", 2): "rcs"}
    until = datetime(2026, 1, 1, 8, tzinfo=UTC)
    await log.hold("c", [(3, 2, until)])
    assert log.held == {("c", 3): (2, until)}
