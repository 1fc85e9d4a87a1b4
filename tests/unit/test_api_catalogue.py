"""The error catalogue (every code has one stable number, seed 003's where it matches) and the
sender rules per channel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.requests import Request

from herald.api.contacts import ConsentChannel
from herald.api.errors import ErrorCode, default_field, error_body, validation_error
from herald.domain.channels import Channel
from herald.domain.senders import sender_problem

SRC = Path(__file__).resolve().parents[2] / "src" / "herald"

# Seed 003's numbers herald reuses, for the meaning it gives them.
SEED_003 = {
    1522: "schedule_in_past",
    1601: "campaign_not_found",
    1603: "sender_required",
    1604: "sender_invalid",
    1605: "audience_required",
    1606: "audience_invalid",
    1607: "content_required",
    1608: "template_invalid",
    1609: "schedule_invalid",
    1611: "campaign_state_conflict",
    1612: "campaign_not_deletable",
    1613: "audience_channel_mismatch",
    1616: "template_channel_mismatch",
    1617: "audience_not_reachable",
}


def test_numbers_and_codes_are_unique() -> None:
    numbers = [c.number for c in ErrorCode]
    codes = [c.code for c in ErrorCode]
    assert len(set(numbers)) == len(numbers)
    assert len(set(codes)) == len(codes)
    assert all(1000 <= n <= 9999 for n in numbers)


def test_seed_003_numbers_keep_their_meaning() -> None:
    by_number = {c.number: c.code for c in ErrorCode}
    for number, code in SEED_003.items():
        assert by_number[number] == code


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text()) for p in SRC.rglob("*.py")]


def test_every_code_raised_anywhere_has_a_number() -> None:
    named = set()
    for path, text in _sources():
        for name in re.findall(r"ErrorCode\.([A-Z][A-Z0-9_]+)", text):
            assert name in ErrorCode.__members__, f"{path}: ErrorCode.{name}"
            named.add(name)
        # Pydantic errors of these kinds become the catalogue code of the same name.
        for kind in re.findall(r"PydanticCustomError\(\s*\"([a-z_]+)\"", text):
            assert kind.upper() in ErrorCode.__members__, f"{path}: {kind}"
    assert len(named) > 30  # the grep found the raises


def _request(path_params: dict[str, str] | None = None) -> Request:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "state": {}}
    if path_params is not None:
        scope["path_params"] = path_params
    return Request(scope)


def test_every_error_body_carries_code_number_and_a_field() -> None:
    for code in ErrorCode:
        body = error_body(_request({"campaign_id": "x"}), code, "m", None)
        detail = body["error"]
        assert set(detail) == {"code", "number", "message", "field"}
        assert (detail["code"], detail["number"]) == (code.code, code.number)
        if code in (ErrorCode.INTERNAL, ErrorCode.UNAVAILABLE):
            assert detail["field"] is None
        else:
            assert detail["field"], code


@pytest.mark.parametrize(
    ("code", "params", "field"),
    [
        (ErrorCode.CAMPAIGN_NOT_FOUND, {"campaign_id": "x"}, "campaign_id"),
        (ErrorCode.CONTACT_NOT_FOUND, {"list_id": "l", "contact_id": "c"}, "contact_id"),
        (ErrorCode.NOT_FOUND, {}, "path"),
        (ErrorCode.UNAUTHORIZED, {}, "X-API-Key"),
        (ErrorCode.RATE_LIMITED, {}, "X-API-Key"),
        (ErrorCode.UNSUPPORTED_MEDIA_TYPE, {}, "Content-Type"),
        (ErrorCode.MALFORMED_REQUEST, {}, "body"),
        (ErrorCode.INTERNAL, {}, None),
    ],
)
def test_default_fields(code: ErrorCode, params: dict[str, str], field: str | None) -> None:
    assert default_field(_request(params), code) == field


def test_a_bad_schedule_is_1609_and_a_missing_body_names_body() -> None:
    code, _, field = validation_error(
        [{"type": "datetime_from_date_parsing", "loc": ("body", "scheduled_at"), "msg": "bad"}]
    )
    assert (code, field) == (ErrorCode.SCHEDULE_INVALID, "scheduled_at")
    code, _, field = validation_error([{"type": "missing", "loc": ("body",), "msg": "missing"}])
    assert (code, field) == (ErrorCode.VALIDATION_FAILED, "body")


@pytest.mark.parametrize(
    ("channel", "sender", "ok"),
    [
        (Channel.SMS, "Herald", True),
        (Channel.SMS, "Shop 24", True),
        (Channel.SMS, "A", True),
        (Channel.SMS, "ABCDEFGHIJK", True),  # 11
        (Channel.SMS, "ABCDEFGHIJKL", False),  # 12
        (Channel.SMS, "12345678901", False),  # digits only: not alphanumeric, not E.164
        (Channel.SMS, "+15005550006", True),
        (Channel.SMS, "+0155", False),
        (Channel.SMS, "12345", True),  # short code
        (Channel.SMS, "12", False),
        (Channel.SMS, "!!!! not a sender !!!!", False),
        (Channel.SMS, "Herald!", False),
        (Channel.SMS, "Hérald", False),
        (Channel.RCS, "agent-1", True),
        (Channel.RCS, "my_agent.x@rbm.goog", True),
        (Channel.RCS, "agent 1", False),
        (Channel.RCS, "-agent", False),
        (Channel.VIBER, "H", True),
        (Channel.VIBER, "Herald Shop – deals 🎉", True),
        (Channel.VIBER, "x" * 28, True),
        (Channel.VIBER, "x" * 29, False),
        (Channel.VIBER, "bad\nname", False),
        (Channel.EMAIL, "news@herald.example", True),
        (Channel.EMAIL, "Herald <news@herald.example>", True),
        (Channel.EMAIL, "nobody", False),
        (Channel.EMAIL, "Herald <nobody>", False),
        (Channel.EMAIL, "a@b.example\r\nBcc: x@y.example", False),
        (Channel.WHATSAPP, "anything", True),
    ],
)
def test_sender_rules(channel: Channel, sender: str, ok: bool) -> None:
    problem = sender_problem(channel, sender)
    assert (problem is None) is ok, problem


def test_consent_covers_every_channel_and_voice() -> None:
    assert {c.value for c in ConsentChannel} == {c.value for c in Channel} | {"voice"}
