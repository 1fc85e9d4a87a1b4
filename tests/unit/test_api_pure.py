"""Pure pieces of the API: search terms, cursors, error mapping, template rules and the
campaign.confirmed event a draft becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from herald.api import pagination
from herald.api.campaign_spec import CampaignIn, build_event, estimate_cost, message_units
from herald.api.errors import ApiError, ErrorCode, field_of, validation_error
from herald.api.fields import like_pattern, search_query
from herald.api.recipients import counted_total
from herald.api.templates import check_template, send_components
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.domain.status import RecipientStatus

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("jane", "'jane':*"),
        ("Jane Doe", "'jane':* & 'doe':*"),
        ("jane@example.com", "'jane':* & 'example':* & 'com':*"),
        ("+1 (415) 555-2671", "'14155552671':*"),
        # National numbers: the index holds the digits without the country code too.
        ("4152495200", "'4152495200':*"),
        ("(415) 249-5200", "'4152495200':*"),
        ("07700 900123", "('07700900123':* | '7700900123':*)"),
        ("+44 07700", "'4407700':*"),
        ("' OR 1=1 --", "'or':* & '1':* & '1':*"),
        ("x' & !y | z:*", "'x':* & 'y':* & 'z':*"),
        ("%", None),
        ("", None),
        (None, None),
    ],
)
def test_search_query(text: str | None, query: str | None) -> None:
    assert search_query(text) == query


def test_like_pattern_escapes_wildcards() -> None:
    assert like_pattern("50%_off\\") == "%50\\%\\_off\\\\%"
    assert like_pattern("") is None


def test_cursor_round_trip_and_kind() -> None:
    cursor = pagination.encode("contacts", ["2026-03-08T12:00:00+00:00", "abc"])
    assert pagination.decode("contacts", cursor, 2) == ["2026-03-08T12:00:00+00:00", "abc"]
    for kind, size, text in [("lists", 2, cursor), ("contacts", 1, cursor), ("x", 1, "%%%")]:
        with pytest.raises(ApiError) as caught:
            pagination.decode(kind, text, size)
        assert caught.value.code is ErrorCode.INVALID_CURSOR


def test_split_pages() -> None:
    rows = [{"id": i} for i in range(3)]
    items, cursor = pagination.split(rows, 2, "k", lambda r: (r["id"],))
    assert items == rows[:2] and pagination.decode("k", cursor, 1) == [1]
    assert pagination.split(rows, 3, "k", lambda r: (r["id"],)) == (rows, None)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            {"type": "json_invalid", "loc": ("body", 3), "msg": "x"},
            (ErrorCode.MALFORMED_REQUEST, None),
        ),
        (
            {"type": "missing", "loc": ("body", "name"), "msg": "Field required"},
            (ErrorCode.VALIDATION_FAILED, "name"),
        ),
        (
            {"type": "invalid_phone", "loc": ("body", "phone"), "msg": "bad"},
            (ErrorCode.INVALID_PHONE, "phone"),
        ),
        (
            {"type": "extra_forbidden", "loc": ("body", "x"), "msg": "y"},
            (ErrorCode.VALIDATION_FAILED, "x"),
        ),
        (
            {"type": "int_parsing", "loc": ("query", "limit"), "msg": "n"},
            (ErrorCode.VALIDATION_FAILED, "limit"),
        ),
    ],
)
def test_validation_error_mapping(
    error: dict[str, Any], expected: tuple[ErrorCode, str | None]
) -> None:
    code, _, field = validation_error([error])
    assert (code, field) == expected


def test_field_of_nested() -> None:
    assert field_of(("body", "content", "sms", "body")) == "content.sms.body"


def test_error_catalogue_is_stable_and_unique() -> None:
    numbers = [c.number for c in ErrorCode]
    assert len(numbers) == len(set(numbers))
    assert all(
        c.status in {400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 429, 500, 503}
        for c in ErrorCode
    )
    assert ErrorCode.CAMPAIGN_NOT_FOUND.number == 1601  # seed 003's number for the same meaning


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ({"channel": "sms", "body": None}, "body"),
        ({"channel": "email", "body": "x"}, "subject"),
        ({"channel": "sms", "body": "x", "subject": "s"}, "subject"),
        ({"channel": "whatsapp", "components": []}, "components"),
        (
            {"channel": "whatsapp", "components": [{"type": "body", "text": "{{1}} {{3}}"}]},
            "components.0.text",
        ),
        (
            {"channel": "whatsapp", "components": [{"type": "banner", "text": "x"}]},
            "components.0.type",
        ),
        ({"channel": "whatsapp", "components": [{"type": "body"}]}, "components.0.text"),
    ],
)
def test_template_rules(template: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_template(template)
    assert caught.value.field == field


def test_whatsapp_send_components() -> None:
    components = [
        {"type": "HEADER", "text": "Sale {{1}}"},
        {"type": "BODY", "text": "Hi {{2}} and {{1}}"},
        {"type": "FOOTER", "text": "bye"},
    ]
    assert check_template({"channel": "whatsapp", "components": components}) == ["1", "2"]
    assert send_components(components) == [
        {"type": "header", "parameters": [{"type": "text", "text": "{{1}}"}]},
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "{{1}}"}, {"type": "text", "text": "{{2}}"}],
        },
    ]


def _spec(**kw: Any) -> CampaignIn:
    return CampaignIn.model_validate({"name": "n", "tags": ["t"], **kw})


def test_orbit_shape_becomes_an_sms_event() -> None:
    spec = _spec(channel="sms", body="Hi {{first_name}}", sender="Herald", segment_id="seg-1")
    event = build_event(spec=spec, campaign_id="c1", account_id="a1", templates={}, now=NOW)
    parsed = parse_campaign_confirmed(event)
    assert parsed.sending_mode is SendingMode.SMS
    assert parsed.content.sms is not None and parsed.content.sms.sender == "Herald"
    assert parsed.audience.segment_id == "seg-1" and parsed.audience.tags == ("t",)


def test_template_fills_the_first_channel_only() -> None:
    templates = {
        "t1": {
            "channel": "whatsapp",
            "approval_status": "approved",
            "name": "promo",
            "language": "es",
            "components": [{"type": "body", "text": "Hola {{1}}"}],
        }
    }
    spec = _spec(sending_mode="WHATSAPP_SMS", template_id="t1", content={"sms": {"body": "Hi"}})
    event = build_event(spec=spec, campaign_id="c", account_id="a", templates=templates, now=NOW)
    assert event["content"]["whatsapp"]["template_name"] == "promo"
    assert event["content"]["sms"] == {"body": "Hi"}
    with pytest.raises(ApiError) as caught:
        build_event(
            spec=_spec(sending_mode="WHATSAPP_SMS", template_id="t1"),
            campaign_id="c",
            account_id="a",
            templates=templates,
            now=NOW,
        )
    assert caught.value.field == "content.sms.body"


def test_schedule_must_be_in_the_future() -> None:
    spec = _spec(channel="sms", body="x", scheduled_at=(NOW - timedelta(seconds=1)).isoformat())
    with pytest.raises(ApiError) as caught:
        build_event(spec=spec, campaign_id="c", account_id="a", templates={}, now=NOW)
    assert caught.value.code is ErrorCode.SCHEDULE_IN_PAST


def test_cost_counts_sms_segments() -> None:
    long_body = "x" * 161
    assert message_units(_spec(channel="sms", body=long_body), {}) == 2
    assert message_units(_spec(channel="sms", body="中" * 71), {}) == 2
    assert message_units(_spec(channel="email", body="x" * 500), {}) == 1
    assert estimate_cost(1000, 2, Decimal("0.0079")) == Decimal("15.800000")


_COUNTERS = {
    "total_recipients": 100,
    "delivered": 40,
    "read": 15,
    "failed": 10,
    "skipped": 5,
    "cancelled": 3,
    "final": 58,
}


@pytest.mark.parametrize(
    ("counters", "status", "total"),
    [
        (_COUNTERS, RecipientStatus.DELIVERED, 25),
        (_COUNTERS, RecipientStatus.READ, 15),
        (_COUNTERS, RecipientStatus.FAILED, 10),
        (_COUNTERS, RecipientStatus.SKIPPED, 5),
        (_COUNTERS, RecipientStatus.CANCELLED, 3),
        # Open recipients: queued and sent need a count.
        (_COUNTERS, RecipientStatus.QUEUED, None),
        (_COUNTERS, RecipientStatus.SENT, None),
        ({**_COUNTERS, "final": 100}, RecipientStatus.SENT, 0),
        # A draft: nothing counted, no rows.
        (dict.fromkeys(_COUNTERS), RecipientStatus.QUEUED, 0),
        (dict.fromkeys(_COUNTERS), RecipientStatus.FAILED, 0),
    ],
)
def test_filtered_recipient_totals_from_counters(
    counters: dict[str, Any], status: RecipientStatus, total: int | None
) -> None:
    assert counted_total(counters, status) == total
