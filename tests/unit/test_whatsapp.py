"""WhatsApp Cloud API adapter: request body, answer/error classification, webhooks, signatures."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from types import TracebackType
from typing import Any, cast

import aiohttp
import orjson
import pytest

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus
from herald.providers.base import ErrorClass, OutboundMessage, WhatsAppTemplate
from herald.providers.whatsapp import (
    CallbackError,
    WhatsAppProvider,
    graph_version,
    parse_webhook,
    request_body,
    result_from_response,
    verify_challenge,
    verify_signature,
)
from herald.settings import Secret

TOKEN = "EAAG-access-token-value"
APP_SECRET = "meta-app-secret"
COMPONENTS: tuple[Mapping[str, Any], ...] = (
    {"type": "body", "parameters": [{"type": "text", "text": "Ada"}]},
    {
        "type": "button",
        "sub_type": "url",
        "index": "0",
        "parameters": [{"type": "text", "text": "abc"}],
    },
)


def message(
    to: str = "+15551234500", template: WhatsAppTemplate | None = None, mid: str = "camp-1.7.1"
) -> OutboundMessage:
    return OutboundMessage(
        message_id=mid,
        channel=Channel.WHATSAPP,
        to=to,
        sender="",
        body="",
        callback_url="",
        template=template
        or WhatsAppTemplate(name="spring_sale", language="en_US", components=COMPONENTS),
    )


class FakeResponse:
    def __init__(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.status = status
        self.headers = dict(headers)
        self._body = body

    async def read(self) -> bytes:
        return self._body


class FakeRequest:
    def __init__(self, outcome: FakeResponse | BaseException) -> None:
        self._outcome = outcome

    async def __aenter__(self) -> FakeResponse:
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class FakeSession:
    """Records requests and answers each with one canned response or exception."""

    def __init__(self, outcome: FakeResponse | BaseException) -> None:
        self.outcome = outcome
        self.calls: list[dict[str, Any]] = []

    def request(self, method: str, url: object, **kwargs: Any) -> FakeRequest:
        self.calls.append({"method": method, "url": str(url), **kwargs})
        return FakeRequest(self.outcome)


def provider(session: FakeSession) -> WhatsAppProvider:
    return WhatsAppProvider(
        session=cast(aiohttp.ClientSession, session),
        base_url="https://graph.example/",
        phone_number_id="106540352242922",
        access_token=Secret(TOKEN),
        timeout_s=5.0,
    )


def test_request_body_matches_the_cloud_api_template_shape() -> None:
    assert request_body(message("+1 (555) 123-4500")) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15551234500",
        "type": "template",
        "template": {
            "name": "spring_sale",
            "language": {"code": "en_US", "policy": "deterministic"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Ada"}]},
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "abc"}],
                },
            ],
        },
        "biz_opaque_callback_data": "camp-1.7.1",
    }


def test_request_body_without_components_omits_them() -> None:
    body = request_body(message(template=WhatsAppTemplate(name="hello", language="de")))
    assert body["template"] == {
        "name": "hello",
        "language": {"code": "de", "policy": "deterministic"},
    }


async def test_send_posts_the_body_with_bearer_token() -> None:
    answer = b'{"messaging_product":"whatsapp","contacts":[],"messages":[{"id":"wamid.ABC"}]}'
    session = FakeSession(FakeResponse(200, answer, {}))
    result = await provider(session).send(message())
    assert result.accepted
    assert result.provider_message_id == "wamid.ABC"
    (call,) = session.calls
    assert call["method"] == "POST"
    assert call["url"] == "https://graph.example/v25.0/106540352242922/messages"
    assert call["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert call["headers"]["Content-Type"] == "application/json"
    assert call["allow_redirects"] is False
    assert orjson.loads(call["data"]) == request_body(message())


async def test_send_without_template_is_permanent_and_sends_nothing() -> None:
    session = FakeSession(FakeResponse(200, b"", {}))
    plain = OutboundMessage(
        message_id="camp-1.7.1",
        channel=Channel.WHATSAPP,
        to="+15551234500",
        sender="",
        body="hi",
        callback_url="",
    )
    result = await provider(session).send(plain)
    assert result.error_class is ErrorClass.PERMANENT
    assert result.error_code == "no_template"
    assert session.calls == []


async def test_send_masks_a_token_echoed_in_the_error() -> None:
    body = orjson.dumps({"error": {"code": 190, "message": f"bad token {TOKEN}"}})
    result = await provider(FakeSession(FakeResponse(401, body, {}))).send(message())
    assert result.error_class is ErrorClass.UNAUTHORIZED
    assert TOKEN not in (result.error_description or "")
    assert TOKEN not in repr(provider(FakeSession(FakeResponse(200, b"", {}))))


@pytest.mark.parametrize(
    ("exc", "error_class", "code"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), ErrorClass.RETRYABLE, "connect_timeout"),
        (aiohttp.SocketTimeoutError("read"), ErrorClass.AMBIGUOUS, "timeout"),
        (TimeoutError(), ErrorClass.AMBIGUOUS, "timeout"),
        (aiohttp.ServerDisconnectedError(), ErrorClass.AMBIGUOUS, "connection_lost"),
        (aiohttp.InvalidURL("nope"), ErrorClass.PERMANENT, "invalid_url"),
    ],
)
async def test_send_classifies_transport_failures(
    exc: BaseException, error_class: ErrorClass, code: str
) -> None:
    result = await provider(FakeSession(exc)).send(message())
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code == code


def meta_error(code: int, message: str = "(#x) nope") -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": "details"},
                "fbtrace_id": "Az",
            }
        }
    )


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (429, 130429, ErrorClass.RATE_LIMITED),
        (400, 131056, ErrorClass.RATE_LIMITED),
        (400, 131048, ErrorClass.RATE_LIMITED),
        (400, 80007, ErrorClass.RATE_LIMITED),
        (400, 131026, ErrorClass.UNREACHABLE),
        (400, 131047, ErrorClass.UNREACHABLE),
        (400, 131049, ErrorClass.UNREACHABLE),
        (400, 131050, ErrorClass.OPTED_OUT),
        (400, 132000, ErrorClass.PERMANENT),
        (400, 132001, ErrorClass.PERMANENT),
        (400, 132005, ErrorClass.PERMANENT),
        (400, 132007, ErrorClass.PERMANENT),
        (400, 132012, ErrorClass.PERMANENT),
        (400, 132015, ErrorClass.PERMANENT),
        (400, 132016, ErrorClass.PERMANENT),
        (400, 100, ErrorClass.PERMANENT),
        (400, 131008, ErrorClass.PERMANENT),
        (400, 131009, ErrorClass.PERMANENT),
        (500, 131000, ErrorClass.RETRYABLE),
        (500, 1, ErrorClass.RETRYABLE),
        (503, 2, ErrorClass.RETRYABLE),
        (401, 190, ErrorClass.UNAUTHORIZED),
        # The code wins over the HTTP status.
        (500, 132001, ErrorClass.PERMANENT),
        (400, 999999, ErrorClass.PERMANENT),
    ],
)
def test_result_from_response_error_codes(status: int, code: int, error_class: ErrorClass) -> None:
    result = result_from_response(status, meta_error(code), "7")
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code == str(code)
    assert result.error_description == "(#x) nope"
    assert result.retry_after_s == (7.0 if error_class is ErrorClass.RATE_LIMITED else None)
    assert result.provider_message_id is None


@pytest.mark.parametrize(
    ("status", "body", "error_class", "code"),
    [
        (429, b"", ErrorClass.RATE_LIMITED, "429"),
        (500, b"<html>", ErrorClass.RETRYABLE, "500"),
        (502, b"", ErrorClass.RETRYABLE, "502"),
        (401, b"", ErrorClass.UNAUTHORIZED, "401"),
        (404, b'{"error":"x"}', ErrorClass.PERMANENT, "404"),
        (400, b'{"error":{"code":"131026"}}', ErrorClass.PERMANENT, "400"),
    ],
)
def test_result_from_response_without_a_meta_code(
    status: int, body: bytes, error_class: ErrorClass, code: str
) -> None:
    result = result_from_response(status, body, None)
    assert result.error_class is error_class
    assert result.error_code == code
    assert result.error_description == f"HTTP {status}"


def test_result_from_response_description_falls_back_to_details() -> None:
    body = orjson.dumps({"error": {"code": 131026, "error_data": {"details": "not on WhatsApp"}}})
    assert result_from_response(400, body, None).error_description == "not on WhatsApp"


@pytest.mark.parametrize(
    ("body", "wamid"),
    [
        (b'{"messages":[{"id":"wamid.X","message_status":"accepted"}]}', "wamid.X"),
        (b'{"messages":[]}', None),
        (b"", None),
        (b"not json", None),
    ],
)
def test_result_from_response_accepted(body: bytes, wamid: str | None) -> None:
    result = result_from_response(200, body, None)
    assert result.accepted
    assert result.error_class is None
    assert result.provider_message_id == wamid


# -- signatures ---------------------------------------------------------------------------

WEBHOOK_BODY = b'{"object":"whatsapp_business_account","entry":[]}'
# openssl dgst -sha256 -hmac meta-app-secret over WEBHOOK_BODY
WEBHOOK_SIGNATURE = "sha256=ee9f05f989bc0aa2693d85691a477f8b8403933cde7959a1c5c6be7ea85e8d3d"


def reference_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_signature_known_vector() -> None:
    assert reference_signature(APP_SECRET, WEBHOOK_BODY) == WEBHOOK_SIGNATURE
    assert verify_signature(APP_SECRET, WEBHOOK_BODY, WEBHOOK_SIGNATURE)
    assert verify_signature(
        APP_SECRET, WEBHOOK_BODY, WEBHOOK_SIGNATURE.upper().replace("SHA", "sha")
    )


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        (APP_SECRET, WEBHOOK_BODY + b" ", WEBHOOK_SIGNATURE),
        (APP_SECRET, WEBHOOK_BODY.replace(b"[]", b"[{}]"), WEBHOOK_SIGNATURE),
        ("other-secret", WEBHOOK_BODY, WEBHOOK_SIGNATURE),
        ("", WEBHOOK_BODY, WEBHOOK_SIGNATURE),
        (APP_SECRET, WEBHOOK_BODY, None),
        (APP_SECRET, WEBHOOK_BODY, ""),
        (APP_SECRET, WEBHOOK_BODY, WEBHOOK_SIGNATURE.removeprefix("sha256=")),
        (APP_SECRET, WEBHOOK_BODY, WEBHOOK_SIGNATURE.replace("sha256=", "sha1=")),
        (APP_SECRET, WEBHOOK_BODY, "sha256="),
        (APP_SECRET, WEBHOOK_BODY, WEBHOOK_SIGNATURE[:-1] + "0"),
        (APP_SECRET, WEBHOOK_BODY, "sha256=ü"),
    ],
)
def test_verify_signature_rejects(secret: str, body: bytes, header: str | None) -> None:
    assert not verify_signature(secret, body, header)


@pytest.mark.parametrize(
    ("params", "token", "expected"),
    [
        (
            {"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "1158201444"},
            "vt",
            "1158201444",
        ),
        ({"hub.mode": "subscribe", "hub.verify_token": "no", "hub.challenge": "1"}, "vt", None),
        ({"hub.mode": "unsubscribe", "hub.verify_token": "vt", "hub.challenge": "1"}, "vt", None),
        ({"hub.mode": "subscribe", "hub.verify_token": "vt"}, "vt", None),
        ({"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}, "", None),
        ({}, "vt", None),
    ],
)
def test_verify_challenge(params: dict[str, str], token: str, expected: str | None) -> None:
    assert verify_challenge(params, token) == expected


# -- webhooks -----------------------------------------------------------------------------


def status(kind: str, mid: str | None = "camp-1.7.2", **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": "wamid.HBgL1",
        "status": kind,
        "timestamp": "1750857384",
        "recipient_id": "15551234500",
        **extra,
    }
    if mid is not None:
        raw["biz_opaque_callback_data"] = mid
    return raw


def webhook(*statuses: dict[str, Any], entries: int = 1) -> dict[str, Any]:
    change = {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": "1065"},
            "statuses": list(statuses),
        },
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [change]} for _ in range(entries)],
    }


def failure(code: int) -> dict[str, Any]:
    return status("failed", errors=[{"code": code, "title": f"title {code}", "message": "m"}])


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("sent", RecipientStatus.SENT),
        ("delivered", RecipientStatus.DELIVERED),
        ("read", RecipientStatus.READ),
        ("READ", RecipientStatus.READ),
    ],
)
def test_parse_webhook_statuses(kind: str, expected: RecipientStatus) -> None:
    (event,) = parse_webhook(webhook(status(kind)), 99)
    assert (event.campaign_id, event.recipient_id, event.attempt) == ("camp-1", 7, 2)
    assert event.status is expected
    assert event.accepted
    assert not event.fallback
    assert event.channel == "whatsapp"
    assert event.source == "whatsapp"
    assert event.provider_message_id == "wamid.HBgL1"
    assert event.occurred_at_ms == 1_750_857_384_000
    assert event.error_code is None


@pytest.mark.parametrize(
    ("code", "fallback"),
    [
        (131026, True),
        (131047, True),
        (131049, True),
        (131050, False),
        (132000, False),
        (132001, False),
        (132015, False),
        (131000, False),
    ],
)
def test_parse_webhook_failures(code: int, fallback: bool) -> None:
    (event,) = parse_webhook(webhook(failure(code)), 0)
    assert event.status is RecipientStatus.FAILED
    assert event.accepted
    assert event.fallback is fallback
    assert event.error_code == str(code)
    assert event.error_description == f"title {code}"


def test_parse_webhook_failure_without_errors() -> None:
    (event,) = parse_webhook(webhook(status("failed")), 0)
    assert event.status is RecipientStatus.FAILED
    assert event.error_code is None
    assert not event.fallback


def test_parse_webhook_reads_every_entry_and_status() -> None:
    batch = parse_webhook(
        webhook(status("sent"), status("delivered", "camp-2.1.1"), failure(131026), entries=2), 5
    )
    assert len(batch) == 6
    assert batch.skipped == 0
    assert [e.campaign_id for e in batch[:3]] == ["camp-1", "camp-2", "camp-1"]


def test_parse_webhook_skips_and_counts_statuses_that_are_not_herald_s() -> None:
    batch = parse_webhook(
        webhook(
            status("delivered", None),
            status("delivered", "someone-else"),
            status("deleted"),
            status("read"),
        ),
        0,
    )
    assert [e.status for e in batch] == [RecipientStatus.READ]
    assert batch.skipped == 3


def test_parse_webhook_timestamp_falls_back_to_receipt_time() -> None:
    (event,) = parse_webhook(webhook(status("sent", timestamp="soon")), 42)
    assert event.occurred_at_ms == 42


def test_parse_webhook_ignores_other_fields_and_inbound_messages() -> None:
    payload = webhook()
    payload["entry"][0]["changes"].append({"field": "account_update", "value": {"x": 1}})
    payload["entry"][0]["changes"][0]["value"].pop("statuses")
    payload["entry"][0]["changes"][0]["value"]["messages"] = [{"from": "1555", "type": "text"}]
    batch = parse_webhook(payload, 0)
    assert batch == []
    assert batch.skipped == 0


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "x",
        {"object": "page", "entry": []},
        {"object": "whatsapp_business_account"},
        {"object": "whatsapp_business_account", "entry": [{"id": "1"}]},
        {"object": "whatsapp_business_account", "entry": ["x"]},
        {"object": "whatsapp_business_account", "entry": [{"changes": ["x"]}]},
        webhook({"status": "sent"}),
        webhook({"id": "wamid.1"}),
        webhook("x"),  # type: ignore[arg-type]
        {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {"statuses": {}}}]}],
        },
    ],
)
def test_parse_webhook_malformed(payload: object) -> None:
    with pytest.raises(CallbackError) as info:
        parse_webhook(payload, 0)
    assert info.value.reason
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("setting", "segment"),
    [("v25.0", "v25.0"), ("25.0", "v25.0"), (" v24.0/ ", "v24.0"), ("", "v25.0")],
)
def test_graph_version_comes_from_the_setting(setting: str, segment: str) -> None:
    assert graph_version(setting) == segment
