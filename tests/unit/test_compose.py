"""Per-recipient decisions: what to send, or why to skip, as a table."""

from __future__ import annotations

from typing import Any

import pytest

from herald.demo import campaign_event
from herald.domain.channels import Channel, SendingMode
from herald.domain.compose import Message, RecipientRow, Skip, compose, first_channel
from herald.domain.events import parse_campaign_confirmed
from herald.domain.templates import MissingVariable, placeholders, recipient_variables, render


def event(mode: SendingMode = SendingMode.SMS, **extra: Any) -> Any:
    raw = campaign_event(campaign_id="c", account_id="a", mode=mode, tags=["t"])
    raw.update(extra)
    return parse_campaign_confirmed(raw)


def row(phone: str | None = "+14155550123", first_name: str | None = "Ada", **kw: Any) -> Any:
    return RecipientRow(
        id=1,
        phone=phone,
        email=None,
        contact_id=kw.get("contact_id", "ct-1"),
        fields={"first_name": first_name, "phone": phone},
    )


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        (row(), "Hi Ada, 20% off today."),
        (
            row(phone=None),
            Skip(reason="invalid_phone", description="recipient has no phone number"),
        ),
        (row(phone="12345"), "invalid_phone"),
        (row(phone="+1415"), "invalid_phone"),
        (row(first_name=None), "missing_variable"),
        (row(first_name=""), "missing_variable"),
    ],
)
def test_compose_sms(recipient: RecipientRow, expected: object) -> None:
    decision = compose(
        event=event(), recipient=recipient, available={Channel.SMS}, default_sms_sender="+1500"
    )
    if isinstance(expected, Skip):
        assert decision == expected
    elif isinstance(decision, Skip):
        assert decision.reason == expected
    else:
        assert isinstance(decision, Message)
        assert decision.body == expected
        assert decision.to == "+14155550123"
        assert decision.attempt == 1


def test_recipient_variables_override_contact_fields() -> None:
    e = event(recipient_variables={"ct-1": {"first_name": "Grace"}})
    decision = compose(event=e, recipient=row(), available={Channel.SMS}, default_sms_sender="x")
    assert isinstance(decision, Message)
    assert decision.body.startswith("Hi Grace")


def test_chain_picks_first_available_channel() -> None:
    e = event(SendingMode.WHATSAPP_RCS_SMS)
    assert first_channel(e, {Channel.SMS}) == (3, Channel.SMS)
    assert first_channel(e, {Channel.RCS, Channel.SMS}) == (2, Channel.RCS)
    assert first_channel(e, set()) is None


def test_no_channel_is_a_skip_with_reason() -> None:
    decision = compose(
        event=event(SendingMode.WHATSAPP),
        recipient=row(),
        available={Channel.SMS},
        default_sms_sender="x",
    )
    assert isinstance(decision, Skip)
    assert decision.reason == "no_provider"


@pytest.mark.parametrize(
    ("template", "variables", "expected"),
    [
        ("Hi {{name}}", {"name": "Ada"}, "Hi Ada"),
        ("Hi {{ name }}!", {"name": "Ada"}, "Hi Ada!"),
        ("{{1}} and {{2}}", {"1": "a", "2": 3}, "a and 3"),
        ("no placeholders", {}, "no placeholders"),
        ("{{a}}{{a}}", {"a": "x"}, "xx"),
        ("{not one}", {}, "{not one}"),
    ],
)
def test_render(template: str, variables: dict[str, object], expected: str) -> None:
    assert render(template, variables) == expected


def test_render_missing() -> None:
    with pytest.raises(MissingVariable) as caught:
        render("Hi {{first_name}} {{last}}", {"last": "x"})
    assert caught.value.name == "first_name"


def test_placeholders_in_order() -> None:
    assert placeholders("{{b}} {{a}} {{b}}") == ("b", "a")


def test_variable_mappings() -> None:
    values = recipient_variables(
        contact_fields={"first_name": "Ada"}, variable_mappings={"1": "first_name"}, overrides={}
    )
    assert values["1"] == "Ada"


def test_a_recipients_variant_chooses_its_content() -> None:
    sms = campaign_event(campaign_id="c", account_id="a", mode=SendingMode.SMS, tags=[])
    body = sms["content"]["sms"]
    e = event(
        variants=[
            {"name": "A", "weight": 50, "content": {"sms": {**body, "body": "A {{first_name}}"}}},
            {"name": "B", "weight": 50, "content": {"sms": {**body, "body": "B {{first_name}}"}}},
        ]
    )
    bodies = []
    for variant in (None, 0, 1):
        recipient = RecipientRow(
            id=1,
            phone="+14155550123",
            email=None,
            contact_id=None,
            fields={"first_name": "Ada"},
            variant=variant,
        )
        decision = compose(
            event=e, recipient=recipient, available={Channel.SMS}, default_sms_sender="x"
        )
        assert isinstance(decision, Message)
        bodies.append(decision.body)
    # Without a variant: the event's own content.
    assert bodies == ["Hi Ada, 20% off today.", "A Ada", "B Ada"]


@pytest.mark.parametrize(
    ("transliterate", "expected"),
    [
        (False, "“Hi” José — Łucja’s 20% off…"),
        (True, '"Hi" José - Lucja\'s 20% off...'),
    ],
)
def test_the_sms_body_is_transliterated_only_when_asked(transliterate: bool, expected: str) -> None:
    raw = campaign_event(campaign_id="c", account_id="a", mode=SendingMode.SMS, tags=["t"])
    raw["content"]["sms"] = {
        "body": "“Hi” {{first_name}} — Łucja’s 20% off…",
        "transliterate": transliterate,
    }
    decision = compose(
        event=parse_campaign_confirmed(raw),
        recipient=row(first_name="José"),
        available={Channel.SMS},
        default_sms_sender="+1500",
    )
    assert isinstance(decision, Message)
    assert decision.body == expected


def test_transliteration_covers_the_contacts_fields_and_no_other_channel() -> None:
    raw = campaign_event(campaign_id="c", account_id="a", mode=SendingMode.RCS_SMS, tags=["t"])
    raw["content"]["sms"] = {"body": "Hi {{first_name}}", "transliterate": True}
    raw["content"]["rcs"] = {"agent_id": "herald", "text": "Hi {{first_name}}"}
    e = parse_campaign_confirmed(raw)
    sms = compose(
        event=e,
        recipient=row(first_name="Zoë Ó’Brien"),
        available={Channel.SMS},
        default_sms_sender="x",
    )
    rcs = compose(
        event=e,
        recipient=row(first_name="Zoë Ó’Brien"),
        available={Channel.RCS},
        default_sms_sender="x",
    )
    assert isinstance(sms, Message) and sms.body == "Hi Zoe O'Brien"  # ë is not GSM-7, ö would be
    assert isinstance(rcs, Message) and rcs.body == "Hi Zoë Ó’Brien"
