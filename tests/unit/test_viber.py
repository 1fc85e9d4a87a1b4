"""Viber adapter: request body, in-200 status classification, callbacks, signatures."""

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
from herald.providers.base import ErrorClass, OutboundMessage
from herald.providers.viber import (
    CallbackError,
    ViberProvider,
    parse_callback,
    request_body,
    result_from_response,
    verify_signature,
)
from herald.settings import Secret

TOKEN = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9"
MID = "camp-1.7.1"


def message(to: str = "01234567890A=", sender: str = "") -> OutboundMessage:
    return OutboundMessage(
        message_id=MID, channel=Channel.VIBER, to=to, sender=sender, body="Hi", callback_url=""
    )


class FakeResponse:
    def __init__(self, status: int, body: bytes = b"", headers: Mapping[str, str] = {}) -> None:
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
    def __init__(self, outcome: FakeResponse | BaseException) -> None:
        self.outcome = outcome
        self.calls: list[dict[str, Any]] = []

    def request(self, method: str, url: object, **kwargs: Any) -> FakeRequest:
        self.calls.append({"method": method, "url": str(url), **kwargs})
        return FakeRequest(self.outcome)


def provider(session: FakeSession) -> ViberProvider:
    return ViberProvider(
        session=cast(aiohttp.ClientSession, session),
        base_url="https://chatapi.example/",
        auth_token=Secret(TOKEN),
        sender_name="Herald",
        timeout_s=5.0,
    )


def test_request_body() -> None:
    assert request_body(message(), sender_name="Shop") == {
        "receiver": "01234567890A=",
        "type": "text",
        "text": "Hi",
        "sender": {"name": "Shop"},
        "tracking_data": MID,
    }


@pytest.mark.parametrize(("sender", "expected"), [("", "Herald"), ("Shop", "Shop")])
async def test_send_posts_with_auth_token_header(sender: str, expected: str) -> None:
    answer = b'{"status":0,"status_message":"ok","message_token":5741311803571721087}'
    session = FakeSession(FakeResponse(200, answer))
    result = await provider(session).send(message(sender=sender))
    assert result.accepted
    assert result.provider_message_id == "5741311803571721087"
    (call,) = session.calls
    assert call["method"] == "POST"
    assert call["url"] == "https://chatapi.example/pa/send_message"
    assert call["headers"]["X-Viber-Auth-Token"] == TOKEN
    assert "Authorization" not in call["headers"]
    assert orjson.loads(call["data"]) == request_body(message(), sender_name=expected)


def viber_answer(status: int, message: str = "nope") -> bytes:
    return orjson.dumps({"status": status, "status_message": message, "chat_hostname": "SN-1"})


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (5, ErrorClass.UNREACHABLE),
        (6, ErrorClass.UNREACHABLE),
        (11, ErrorClass.UNREACHABLE),
        (12, ErrorClass.RATE_LIMITED),
        (2, ErrorClass.PERMANENT),
        (3, ErrorClass.PERMANENT),
        (4, ErrorClass.PERMANENT),
        (7, ErrorClass.PERMANENT),
        (9, ErrorClass.PERMANENT),
        (10, ErrorClass.PERMANENT),
        (13, ErrorClass.PERMANENT),
        (14, ErrorClass.PERMANENT),
        (1, ErrorClass.RETRYABLE),
        (8, ErrorClass.RETRYABLE),
        (99, ErrorClass.RETRYABLE),
    ],
)
def test_result_from_response_status_inside_200(status: int, error_class: ErrorClass) -> None:
    result = result_from_response(200, viber_answer(status, "receiverNotRegistered"), "4")
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code == str(status)
    assert result.error_description == "receiverNotRegistered"
    assert result.retry_after_s == (4.0 if error_class is ErrorClass.RATE_LIMITED else None)


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "error_class", "code", "retry_after_s"),
    [
        (429, b"", "2", ErrorClass.RATE_LIMITED, "429", 2.0),
        (500, b"", None, ErrorClass.RETRYABLE, "500", None),
        (503, b"<html>", "2", ErrorClass.RETRYABLE, "503", None),
        (401, b"", None, ErrorClass.PERMANENT, "401", None),
        (404, b"", None, ErrorClass.PERMANENT, "404", None),
        (200, b"", None, ErrorClass.AMBIGUOUS, "no_status", None),
        (200, b'{"status":"0"}', None, ErrorClass.AMBIGUOUS, "no_status", None),
    ],
)
def test_result_from_response_http_errors(
    status: int,
    body: bytes,
    retry_after: str | None,
    error_class: ErrorClass,
    code: str,
    retry_after_s: float | None,
) -> None:
    result = result_from_response(status, body, retry_after)
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code == code
    assert result.retry_after_s == retry_after_s


@pytest.mark.parametrize(
    ("body", "provider_id"),
    [
        (b'{"status":0,"message_token":491266184665523145}', "491266184665523145"),
        (b'{"status":0,"message_token":"12"}', "12"),
        (b'{"status":0}', None),
    ],
)
def test_result_from_response_accepted(body: bytes, provider_id: str | None) -> None:
    result = result_from_response(200, body, None)
    assert result.accepted
    assert result.provider_message_id == provider_id


async def test_send_masks_echoed_token() -> None:
    result = await provider(FakeSession(FakeResponse(200, viber_answer(2, f"bad {TOKEN}")))).send(
        message()
    )
    assert result.error_class is ErrorClass.PERMANENT
    assert TOKEN not in (result.error_description or "")
    assert TOKEN not in repr(provider(FakeSession(FakeResponse(200))))


@pytest.mark.parametrize(
    ("exc", "error_class", "code"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), ErrorClass.RETRYABLE, "connect_timeout"),
        (aiohttp.SocketTimeoutError("read"), ErrorClass.AMBIGUOUS, "timeout"),
        (aiohttp.ClientOSError(104, "reset"), ErrorClass.AMBIGUOUS, "connection_lost"),
    ],
)
async def test_send_classifies_transport_failures(
    exc: BaseException, error_class: ErrorClass, code: str
) -> None:
    result = await provider(FakeSession(exc)).send(message())
    assert (result.error_class, result.error_code) == (error_class, code)


# -- signatures ---------------------------------------------------------------------------

CALLBACK = (
    b'{"event":"delivered","timestamp":1457764197627,'
    b'"message_token":491266184665523145,"user_id":"+15551234500"}'
)
CALLBACK_KEY = "viber-auth-token"
# openssl dgst -sha256 -hmac viber-auth-token over CALLBACK
CALLBACK_SIGNATURE = "ec39cc62d5cf97198087d287a8fe3d6520651de3dcfb249f2e05f643e70e47b2"


def test_signature_known_vector() -> None:
    reference = hmac.new(CALLBACK_KEY.encode(), CALLBACK, hashlib.sha256).hexdigest()
    assert reference == CALLBACK_SIGNATURE
    assert verify_signature(CALLBACK_KEY, CALLBACK, CALLBACK_SIGNATURE)
    assert verify_signature(CALLBACK_KEY, CALLBACK, CALLBACK_SIGNATURE.upper())


@pytest.mark.parametrize(
    ("key", "body", "header"),
    [
        ("other", CALLBACK, CALLBACK_SIGNATURE),
        ("", CALLBACK, CALLBACK_SIGNATURE),
        (CALLBACK_KEY, CALLBACK.replace(b"delivered", b"seen"), CALLBACK_SIGNATURE),
        (CALLBACK_KEY, CALLBACK + b"\n", CALLBACK_SIGNATURE),
        (CALLBACK_KEY, CALLBACK, None),
        (CALLBACK_KEY, CALLBACK, ""),
        (CALLBACK_KEY, CALLBACK, "sha256=" + CALLBACK_SIGNATURE),
        (CALLBACK_KEY, CALLBACK, CALLBACK_SIGNATURE[:-2]),
    ],
)
def test_verify_signature_rejects(key: str, body: bytes, header: str | None) -> None:
    assert not verify_signature(key, body, header)


# -- callbacks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "status", "fallback"),
    [
        ("delivered", RecipientStatus.DELIVERED, False),
        ("seen", RecipientStatus.READ, False),
        ("failed", RecipientStatus.FAILED, True),
    ],
)
def test_parse_callback_is_unresolved(event: str, status: RecipientStatus, fallback: bool) -> None:
    parsed = parse_callback(
        {
            "event": event,
            "timestamp": 1457764197627,
            "message_token": 491266184665523145,
            "user_id": "01234567890A=",
            "desc": "failure description",
        },
        5,
    )
    assert parsed is not None
    assert (parsed.campaign_id, parsed.recipient_id, parsed.attempt) == ("", 0, 0)
    assert parsed.provider_message_id == "491266184665523145"
    assert parsed.status is status
    assert parsed.accepted
    assert parsed.fallback is fallback
    assert parsed.channel == "viber"
    assert parsed.source == "viber"
    assert parsed.occurred_at_ms == 1457764197627
    if status is RecipientStatus.FAILED:
        assert parsed.error_description == "failure description"
    else:
        assert parsed.error_code is None
        assert parsed.error_description is None


def test_parse_callback_uses_receipt_time_without_timestamp() -> None:
    parsed = parse_callback({"event": "seen", "message_token": "42"}, 77)
    assert parsed is not None
    assert parsed.occurred_at_ms == 77
    assert parsed.provider_message_id == "42"


@pytest.mark.parametrize(
    "event",
    ["subscribed", "unsubscribed", "conversation_started", "webhook", "message", "client_status"],
)
def test_parse_callback_other_events(event: str) -> None:
    assert parse_callback({"event": event, "timestamp": 1}, 0) is None


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        {},
        {"event": 5},
        {"event": "delivered"},
        {"event": "delivered", "message_token": 0},
        {"event": "delivered", "message_token": "abc"},
        {"event": "seen", "message_token": True},
    ],
)
def test_parse_callback_malformed(payload: object) -> None:
    with pytest.raises(CallbackError):
        parse_callback(payload, 0)
