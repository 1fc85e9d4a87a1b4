"""Viber channel identities: compose addresses the contact's Viber user id (or passes Viber
over), callbacks parse into identity observations, and their wire form round-trips."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from herald.demo import campaign_event
from herald.domain import identities
from herald.domain.channels import Channel, SendingMode
from herald.domain.compose import Message, RecipientRow, Skip, compose
from herald.domain.events import CampaignConfirmed, parse_campaign_confirmed
from herald.domain.identities import IdentityEvent
from herald.providers.viber import CallbackError, parse_callback, parse_identity

USER = "01234567890A="
CONTACT = "7b0a1c7e-6f0e-4b8e-9d55-1f7f2f4a9c11"
AT = 1_700_000_000_000


def event(mode: SendingMode) -> CampaignConfirmed:
    raw = campaign_event(campaign_id="c", account_id="a", mode=mode, tags=["t"])
    return parse_campaign_confirmed(raw)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _ViberThenSms(CampaignConfirmed):
    """No sending mode puts Viber before another channel yet; compose walks any chain."""

    @property
    def channels(self) -> tuple[Channel, ...]:
        return (Channel.VIBER, Channel.SMS)


def viber_then_sms() -> CampaignConfirmed:
    viber, sms = event(SendingMode.VIBER), event(SendingMode.SMS)
    content = dataclasses.replace(viber.content, sms=sms.content.sms)
    fields = {f.name: getattr(viber, f.name) for f in dataclasses.fields(viber)}
    return _ViberThenSms(**{**fields, "content": content})


def row(*, viber_user_id: str | None = USER, contact_id: str | None = CONTACT) -> RecipientRow:
    return RecipientRow(
        id=1,
        phone="+14155550123",
        email=None,
        contact_id=contact_id,
        fields={"first_name": "Ada"},
        viber_user_id=viber_user_id,
    )


def test_viber_is_addressed_to_the_user_id_not_the_phone() -> None:
    decision = compose(
        event=event(SendingMode.VIBER),
        recipient=row(),
        available=set(Channel),
        default_sms_sender="+1500",
    )
    assert isinstance(decision, Message)
    assert (decision.channel, decision.attempt, decision.to) == (Channel.VIBER, 1, USER)
    assert decision.sender == "Herald"
    assert decision.body == "Hi Ada, 20% off."


@pytest.mark.parametrize(
    "recipient",
    [
        row(viber_user_id=None),  # a contact no Viber user was linked to
        row(viber_user_id=None, contact_id=None),  # a raw destination: never on Viber
        row(viber_user_id=""),
    ],
)
def test_without_a_viber_identity_viber_is_passed_over(recipient: RecipientRow) -> None:
    alone = compose(
        event=event(SendingMode.VIBER),
        recipient=recipient,
        available=set(Channel),
        default_sms_sender="+1500",
    )
    assert alone == Skip(reason="no_viber_identity", description="recipient has no Viber user id")
    # In a chain the next channel is tried, as for no_provider and opted_out.
    moved = compose(
        event=viber_then_sms(),
        recipient=recipient,
        available=set(Channel),
        default_sms_sender="+1500",
    )
    assert isinstance(moved, Message)
    assert (moved.channel, moved.attempt, moved.to) == (Channel.SMS, 2, "+14155550123")


def test_a_phone_number_is_not_needed_on_viber() -> None:
    recipient = dataclasses.replace(row(), phone=None)
    decision = compose(
        event=event(SendingMode.VIBER),
        recipient=recipient,
        available=set(Channel),
        default_sms_sender="+1500",
    )
    assert isinstance(decision, Message) and decision.to == USER


def user(**extra: Any) -> dict[str, Any]:
    return {"id": USER, "name": "John McClane", "country": "UK", "language": "en", **extra}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {
                "event": "conversation_started",
                "timestamp": AT,
                "message_token": 1,
                "type": "open",
                "context": CONTACT,
                "user": user(),
                "subscribed": False,
            },
            IdentityEvent(
                channel="viber", address=USER, linked=True, occurred_at_ms=AT, contact_ref=CONTACT
            ),
        ),
        (  # a context is canonicalised
            {
                "event": "conversation_started",
                "timestamp": AT,
                "context": CONTACT.upper(),
                "user": user(),
            },
            IdentityEvent(
                channel="viber", address=USER, linked=True, occurred_at_ms=AT, contact_ref=CONTACT
            ),
        ),
        # Without a contact reference there is nothing to link the user to.
        ({"event": "conversation_started", "timestamp": AT, "user": user()}, None),
        (
            {
                "event": "conversation_started",
                "timestamp": AT,
                "context": "promo-2026",
                "user": user(),
            },
            None,
        ),
        ({"event": "subscribed", "timestamp": AT, "user": user()}, None),
        (
            {"event": "subscribed", "timestamp": AT, "user": user(), "context": CONTACT},
            IdentityEvent(
                channel="viber", address=USER, linked=True, occurred_at_ms=AT, contact_ref=CONTACT
            ),
        ),
        (
            {"event": "unsubscribed", "timestamp": AT, "user_id": USER},
            IdentityEvent(channel="viber", address=USER, linked=False, occurred_at_ms=AT),
        ),
        ({"event": "delivered", "timestamp": AT, "message_token": 5, "user_id": USER}, None),
        ({"event": "message", "timestamp": AT, "sender": user()}, None),
        ({"event": "webhook", "timestamp": AT}, None),
    ],
)
def test_identity_callbacks(payload: dict[str, Any], expected: IdentityEvent | None) -> None:
    assert parse_identity(payload, 1) == expected
    # Identity callbacks are not status events.
    if payload["event"] != "delivered":
        assert parse_callback(payload, 1) is None


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"event": "unsubscribed", "timestamp": AT},
        {"event": "unsubscribed", "timestamp": AT, "user_id": 7},
        {"event": "conversation_started", "timestamp": AT, "context": CONTACT},
        {"event": "subscribed", "timestamp": AT, "user": {"id": ""}},
        {"event": "subscribed", "timestamp": AT, "user": {"id": "x" * 201}},
    ],
)
def test_identity_callbacks_without_the_user_are_refused(payload: object) -> None:
    with pytest.raises(CallbackError):
        parse_identity(payload, 1)


def test_timestamp_defaults_to_receipt() -> None:
    got = parse_identity({"event": "unsubscribed", "user_id": USER}, 42)
    assert got is not None and got.occurred_at_ms == 42


@pytest.mark.parametrize(
    "event",
    [
        IdentityEvent(
            channel="viber", address=USER, linked=True, occurred_at_ms=AT, contact_ref=CONTACT
        ),
        IdentityEvent(channel="viber", address=USER, linked=False, occurred_at_ms=AT),
    ],
)
def test_wire_round_trip(event: IdentityEvent) -> None:
    wire = identities.to_wire(event)
    assert identities.is_identity(wire)
    assert identities.from_wire(wire) == event


@pytest.mark.parametrize(
    "raw",
    [
        {"k": "identity", "ch": "viber", "u": USER, "l": True, "t": AT},  # link without ref
        {"k": "identity", "ch": "viber", "u": USER, "l": True, "ref": "nope"},
        {"k": "identity", "ch": "", "u": USER, "l": False},
        {"k": "identity", "ch": "viber", "u": "", "l": False},
        {"k": "identity", "ch": "viber", "u": USER, "l": "yes"},
        {"k": "status", "ch": "viber", "u": USER, "l": False},
    ],
)
def test_bad_wire_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        identities.from_wire(raw)


def test_status_events_are_not_identities() -> None:
    assert not identities.is_identity({"c": "", "r": 0, "a": 0, "s": "delivered", "pm": "1"})
    assert not identities.is_identity([])
