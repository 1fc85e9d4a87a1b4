"""Fallback decisions as tables: the chain walk, what a failure means for the recipient, and
when the fold hands a recipient over to the next channel."""

from __future__ import annotations

from typing import Any

import pytest

from herald.demo import campaign_event
from herald.domain.channels import Channel, SendingMode
from herald.domain.compose import Message, RecipientRow, Skip, compose
from herald.domain.dispatch import classify
from herald.domain.events import parse_campaign_confirmed
from herald.domain.status import (
    RecipientState,
    RecipientStatus,
    StatusEvent,
    fold,
    for_recipient,
)
from herald.domain.work import (
    BatchItem,
    FallbackItem,
    batch_to_wire,
    fallback_to_wire,
    parse_work,
)
from herald.providers.base import ErrorClass, SendResult
from herald.status import _hands_over

W, R, S, V, E = Channel.WHATSAPP, Channel.RCS, Channel.SMS, Channel.VIBER, Channel.EMAIL
ALL = frozenset(Channel)


def event(mode: SendingMode) -> Any:
    raw = campaign_event(campaign_id="c", account_id="a", mode=mode, tags=["t"])
    return parse_campaign_confirmed(raw)


def row(phone: str | None = "+14155550123", opted_out: frozenset[Channel] = frozenset()) -> Any:
    return RecipientRow(
        id=1,
        phone=phone,
        email="ada@example.com",
        contact_id="ct",
        fields={"first_name": "Ada"},
        opted_out=opted_out,
        viber_user_id="01234567890A=",
    )


@pytest.mark.parametrize(
    ("mode", "available", "opted_out", "start", "expected"),
    [
        (SendingMode.WHATSAPP_RCS_SMS, ALL, frozenset(), 1, (W, 1)),
        (SendingMode.WHATSAPP_RCS_SMS, ALL, frozenset(), 2, (R, 2)),
        (SendingMode.WHATSAPP_RCS_SMS, ALL, frozenset(), 3, (S, 3)),
        (SendingMode.WHATSAPP_RCS_SMS, ALL, frozenset({W}), 1, (R, 2)),  # one channel only
        (SendingMode.WHATSAPP_RCS_SMS, ALL, frozenset({W, R}), 1, (S, 3)),
        (SendingMode.WHATSAPP_RCS_SMS, {S}, frozenset(), 1, (S, 3)),
        (SendingMode.WHATSAPP_RCS_SMS, ALL, frozenset({W, R, S}), 1, "opted_out"),
        (SendingMode.WHATSAPP_RCS_SMS, ALL, frozenset(), 4, "no_channel_left"),
        (SendingMode.WHATSAPP_SMS, ALL, frozenset(), 2, (S, 2)),
        (SendingMode.RCS_SMS, ALL, frozenset({R}), 1, (S, 2)),
        (SendingMode.WHATSAPP_RCS, ALL, frozenset(), 2, (R, 2)),
        (SendingMode.VIBER, ALL, frozenset(), 1, (V, 1)),
        (SendingMode.EMAIL, ALL, frozenset(), 1, (E, 1)),
        (SendingMode.WHATSAPP, {S}, frozenset(), 1, "no_provider"),
    ],
)
def test_chain_walk(
    mode: SendingMode,
    available: frozenset[Channel],
    opted_out: frozenset[Channel],
    start: int,
    expected: object,
) -> None:
    decision = compose(
        event=event(mode),
        recipient=row(opted_out=opted_out),
        available=available,
        default_sms_sender="+1500",
        start_attempt=start,
    )
    if isinstance(expected, str):
        assert isinstance(decision, Skip)
        assert decision.reason == expected
    else:
        assert isinstance(decision, Message)
        assert (decision.channel, decision.attempt) == expected


def test_whatsapp_components_are_rendered() -> None:
    decision = compose(
        event=event(SendingMode.WHATSAPP), recipient=row(), available=ALL, default_sms_sender="x"
    )
    assert isinstance(decision, Message)
    assert decision.template_name == "spring_sale"
    assert decision.template_components[0]["parameters"][0]["text"] == "Ada"


def test_invalid_phone_skips_every_phone_channel() -> None:
    decision = compose(
        event=event(SendingMode.WHATSAPP_RCS_SMS),
        recipient=row(phone="12345"),
        available=ALL,
        default_sms_sender="x",
    )
    assert isinstance(decision, Skip)
    assert decision.reason == "invalid_phone"


@pytest.mark.parametrize(
    ("result", "outcome", "status", "fallback"),
    [
        (SendResult(accepted=True, provider_message_id="x"), "accepted", "sent", False),
        (
            SendResult(accepted=False, error_class=ErrorClass.UNREACHABLE),
            "unreachable",
            "failed",
            True,
        ),
        (SendResult(accepted=False, error_class=ErrorClass.OPTED_OUT), "rejected", "failed", False),
        (SendResult(accepted=False, error_class=ErrorClass.PERMANENT), "rejected", "failed", False),
        (
            SendResult(accepted=False, error_class=ErrorClass.AMBIGUOUS),
            "ambiguous",
            "sent",
            False,
        ),
        (SendResult(accepted=False, error_class=ErrorClass.RETRYABLE), "rejected", "failed", False),
    ],
)
def test_classify(result: SendResult, outcome: str, status: str, fallback: bool) -> None:
    verdict = classify(result)
    assert (verdict.outcome, verdict.status.value, verdict.fallback) == (outcome, status, fallback)


def ev(
    status: RecipientStatus,
    attempt: int,
    *,
    fallback: bool = False,
    source: str = "whatsapp",
    accepted: bool = True,
) -> StatusEvent:
    return StatusEvent(
        campaign_id="c",
        recipient_id=1,
        attempt=attempt,
        channel="whatsapp",
        status=status,
        occurred_at_ms=0,
        source=source,
        accepted=accepted,
        fallback=fallback,
    )


F, D = RecipientStatus.FAILED, RecipientStatus.DELIVERED
QUEUED = RecipientState(status=RecipientStatus.QUEUED, accepted=False)


@pytest.mark.parametrize(
    ("events", "chain_length", "status"),
    [
        ([ev(F, 1, fallback=True)], 3, RecipientStatus.QUEUED),  # handed over, not failed
        ([ev(F, 3, fallback=True)], 3, F),  # the last channel: the recipient failed
        ([ev(F, 1)], 3, F),  # a failure that must not fall back
        ([ev(F, 1, fallback=True), ev(D, 2)], 3, D),
        ([ev(D, 2), ev(F, 1, fallback=True)], 3, D),
        ([ev(F, 1, fallback=True), ev(F, 2, fallback=True), ev(F, 3)], 3, F),
        ([ev(F, 2, fallback=True), ev(D, 1)], 3, D),  # a late delivery on the first channel
    ],
)
def test_recipient_view_of_failures(
    events: list[StatusEvent], chain_length: int, status: RecipientStatus
) -> None:
    after = fold(QUEUED, [for_recipient(e, chain_length) for e in events])
    assert after.status is status
    assert after.accepted


@pytest.mark.parametrize(
    ("before", "events", "attempt", "length", "hands_over"),
    [
        (RecipientStatus.SENT, [ev(F, 1, fallback=True)], 1, 3, True),
        (RecipientStatus.SENT, [ev(F, 1, fallback=True, source="worker")], 1, 3, False),
        (RecipientStatus.SENT, [ev(F, 1)], 1, 3, False),  # template error: never
        (RecipientStatus.SENT, [ev(F, 3, fallback=True)], 3, 3, False),  # nothing after it
        (RecipientStatus.FAILED, [ev(F, 1, fallback=True)], 1, 3, False),  # a duplicate
        (RecipientStatus.SENT, [ev(D, 1), ev(F, 1, fallback=True)], 1, 3, False),
    ],
)
def test_hands_over(
    before: RecipientStatus,
    events: list[StatusEvent],
    attempt: int,
    length: int,
    hands_over: bool,
) -> None:
    state = RecipientState(status=before, accepted=True)
    after = fold(state, events)
    assert _hands_over(state, after, events, attempt, length) is hands_over


def test_work_items_round_trip() -> None:
    batch = BatchItem(campaign_id="c", account_id="a", batch_no=2, first_id=11, last_id=20)
    assert parse_work(batch_to_wire(batch)) == batch
    fallback = FallbackItem(campaign_id="c", account_id="a", recipients=((3, 2), (9, 3)))
    assert parse_work(fallback_to_wire(fallback)) == fallback


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {"v": 2},
        {"v": 1, "kind": "batch", "campaign_id": "c", "account_id": "a"},
        {"v": 1, "campaign_id": "c", "account_id": "a", "batch_no": 1, "first_id": 5, "last_id": 4},
        {"v": 1, "kind": "fallback", "campaign_id": "c", "account_id": "a", "recipients": []},
        {"v": 1, "kind": "fallback", "campaign_id": "c", "account_id": "a", "recipients": [[0, 1]]},
        {"v": 1, "kind": "fallback", "campaign_id": "c", "account_id": "a", "recipients": [["x"]]},
        {"v": 1, "kind": "teleport", "campaign_id": "c", "account_id": "a"},
    ],
)
def test_bad_work_items(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_work(raw)
