"""Twilio adapter: signatures, callback parsing, and answer/error classification."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

import aiohttp
import pytest

from herald.domain.status import RecipientStatus
from herald.providers.base import ErrorClass
from herald.providers.twilio import (
    CallbackError,
    basic_authorization,
    ignored_reason,
    parse_callback,
    parse_retry_after_s,
    result_from_exception,
    result_from_response,
    signature,
    signature_algorithm,
    signed_url_forms,
    verify_signature,
)

TOKEN = "herald-dev-token"
CALLBACK_URL = "https://example.com/callbacks/twilio?m=camp-1.7.1"
CALLBACK_PARAMS = {
    "To": "+15005550100",
    "MessageStatus": "delivered",
    "AccountSid": "AC123",
    "MessageSid": "SM0123",
    "ApiVersion": "2010-04-01",
}


def reference_signature(url: str, params: Mapping[str, str], token: str) -> str:
    """Written from the spec, separately from the module under test."""
    parts = [url]
    for key in sorted(params):
        parts.append(key)
        parts.append(params[key])
    mac = hmac.new(token.encode("utf-8"), "".join(parts).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


# Literal vectors computed outside Python (openssl dgst -sha1 -hmac ... | base64); the second is
# the example from Twilio's webhook security documentation.
@pytest.mark.parametrize(
    ("url", "params", "token", "expected"),
    [
        (CALLBACK_URL, CALLBACK_PARAMS, TOKEN, "rsTqzbDzOQw8834rVjVJCvZ3wtM="),
        (
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            {
                "Digits": "1234",
                "To": "+18005551212",
                "From": "+12349013030",
                "Caller": "+12349013030",
                "CallSid": "CA1234567890ABCDE",
            },
            "12345",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
        ),
    ],
)
def test_signature_known_vectors(
    url: str, params: dict[str, str], token: str, expected: str
) -> None:
    assert signature(url, params, token) == expected
    assert reference_signature(url, params, token) == expected


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("https://h.example/cb", {}),
        ("https://h.example/cb", {"b": "2", "a": "1", "c": "3"}),
        # Keys sort by code point: upper case before lower case.
        ("https://h.example/cb", {"body": "x", "Body": "y", "ZED": "z"}),
        # Concatenation order matters even when the joined text would look alike.
        ("https://h.example/cb", {"ab": "", "a": "b"}),
        ("https://h.example/cb?x=1&y=2", {"Body": "héllo ✓ 😀", "To": "+4915112345678"}),
    ],
)
def test_signature_matches_reference(url: str, params: dict[str, str]) -> None:
    expected = reference_signature(url, params, TOKEN)
    assert signature(url, params, TOKEN) == expected
    # Insertion order of the mapping is irrelevant.
    assert signature(url, dict(reversed(list(params.items()))), TOKEN) == expected


def test_verify_signature_accepts_the_right_signature() -> None:
    header = reference_signature(CALLBACK_URL, CALLBACK_PARAMS, TOKEN)
    assert verify_signature(CALLBACK_URL, CALLBACK_PARAMS, TOKEN, header)


@pytest.mark.parametrize(
    ("url", "params", "token", "header"),
    [
        (CALLBACK_URL, {**CALLBACK_PARAMS, "MessageStatus": "failed"}, TOKEN, None),
        (CALLBACK_URL, {**CALLBACK_PARAMS, "Extra": "1"}, TOKEN, None),
        (CALLBACK_URL, CALLBACK_PARAMS, "wrong-token", None),
        (CALLBACK_URL.replace("7.1", "7.2"), CALLBACK_PARAMS, TOKEN, None),
        (CALLBACK_URL, CALLBACK_PARAMS, TOKEN, ""),
        (CALLBACK_URL, CALLBACK_PARAMS, TOKEN, "not-base64-ü"),
    ],
)
def test_verify_signature_rejects(
    url: str, params: dict[str, str], token: str, header: str | None
) -> None:
    # The header always comes from the genuine request; the check runs on altered inputs.
    genuine = reference_signature(CALLBACK_URL, CALLBACK_PARAMS, TOKEN)
    assert not verify_signature(url, params, token, genuine if header is None else header)


def test_verify_signature_without_header() -> None:
    assert not verify_signature(CALLBACK_URL, CALLBACK_PARAMS, TOKEN, None)


def callback(status: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": "SMabc",
        "SmsSid": "SMabc",
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": "AC123",
        "From": "+15005550006",
        "To": "+15005550100",
        "ApiVersion": "2010-04-01",
        **extra,
    }


@pytest.mark.parametrize(
    ("status", "expected", "accepted"),
    [
        ("sent", RecipientStatus.SENT, True),
        ("delivered", RecipientStatus.DELIVERED, True),
        ("read", RecipientStatus.READ, True),
        ("undelivered", RecipientStatus.FAILED, True),
        ("failed", RecipientStatus.FAILED, False),
    ],
)
def test_parse_callback_folds(status: str, expected: RecipientStatus, accepted: bool) -> None:
    event = parse_callback(callback(status, NewField="ignored"), "camp-1.7.2", 1_700_000_000_123)
    assert event is not None
    assert event.campaign_id == "camp-1"
    assert event.recipient_id == 7
    assert event.attempt == 2
    assert event.status is expected
    assert event.accepted is accepted
    assert event.channel == "sms"
    assert event.source == "twilio"
    assert event.provider_message_id == "SMabc"
    assert event.occurred_at_ms == 1_700_000_000_123
    assert event.error_code is None
    assert event.error_description is None


@pytest.mark.parametrize("status", ["queued", "accepted", "sending", "scheduled"])
def test_parse_callback_interim_states_fold_nothing(status: str) -> None:
    assert parse_callback(callback(status), "camp-1.7.1", 0) is None


@pytest.mark.parametrize(
    ("code", "description"),
    [
        ("30003", "handset unreachable"),
        ("30005", "unknown number"),
        ("30006", "landline or unreachable carrier"),
        ("30007", "carrier filtered"),
        ("30008", "unknown error"),
        ("30036", None),
    ],
)
def test_parse_callback_error_codes(code: str, description: str | None) -> None:
    event = parse_callback(callback("undelivered", ErrorCode=code), "camp-1.7.1", 0)
    assert event is not None
    assert event.status is RecipientStatus.FAILED
    assert event.error_code == code
    assert event.error_description == description


def test_parse_callback_empty_error_code_is_none() -> None:
    event = parse_callback(callback("delivered", ErrorCode=""), "camp-1.7.1", 0)
    assert event is not None
    assert event.error_code is None


@pytest.mark.parametrize("message_id", ["", "camp", "camp.1", "camp.x.1", ".1.1", "c.0.1", "c.1.0"])
def test_parse_callback_bad_message_id(message_id: str) -> None:
    with pytest.raises(CallbackError) as info:
        parse_callback(callback("delivered"), message_id, 0)
    assert info.value.reason == "malformed message id"
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("status", ["receiving", "received"])
def test_parse_callback_inbound_states_fold_nothing(status: str) -> None:
    assert parse_callback(callback(status), "camp-1.7.1", 0) is None
    assert ignored_reason(callback(status)) is None


def test_parse_callback_partially_delivered_is_sent() -> None:
    event = parse_callback(callback("partially_delivered"), "camp-1.7.1", 0)
    assert event is not None
    assert event.status is RecipientStatus.SENT
    assert event.accepted


@pytest.mark.parametrize(
    ("status", "reason"),
    [("", "no MessageStatus"), ("bogus", "unknown MessageStatus 'bogus'")],
)
def test_parse_callback_unknown_status_is_ignored_with_a_reason(status: str, reason: str) -> None:
    # Never a refusal: a 4xx makes Twilio retry the callback.
    assert parse_callback(callback(status), "camp-1.7.1", 0) is None
    assert ignored_reason(callback(status)) == reason


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/callbacks/twilio?m=camp-1.7.1",
        "https://example.com:443/callbacks/twilio?m=camp-1.7.1",
        "http://127.0.0.1:8081/callbacks/twilio?m=camp-1.7.1",
    ],
)
def test_verify_signature_accepts_both_url_forms(url: str) -> None:
    without, with_port = signed_url_forms(url)
    for signed in (without, with_port):
        header = reference_signature(signed, CALLBACK_PARAMS, TOKEN)
        assert verify_signature(url, CALLBACK_PARAMS, TOKEN, header)


def test_signed_url_forms() -> None:
    assert signed_url_forms("https://h.example/c?m=1") == (
        "https://h.example/c?m=1",
        "https://h.example:443/c?m=1",
    )
    assert signed_url_forms("http://h.example:8081/c") == (
        "http://h.example/c",
        "http://h.example:8081/c",
    )


def test_verify_signature_shared_key_sha256() -> None:
    payload = CALLBACK_URL + "".join(k + CALLBACK_PARAMS[k] for k in sorted(CALLBACK_PARAMS))
    digest = hmac.new(b"shared-key", payload.encode(), hashlib.sha256).digest()
    header = base64.b64encode(digest).decode()
    settings = "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"
    algorithm = signature_algorithm(settings)
    assert algorithm == "HMAC_SHA256"
    assert verify_signature(
        CALLBACK_URL, CALLBACK_PARAMS, "shared-key", header, algorithm=algorithm
    )
    assert not verify_signature(CALLBACK_URL, CALLBACK_PARAMS, "shared-key", header)
    assert not verify_signature(
        CALLBACK_URL, CALLBACK_PARAMS, "shared-key", header, algorithm="HMAC_MD5"
    )
    assert signature_algorithm(None) == signature_algorithm("key=x") == "HMAC_SHA1"


def error_body(code: int, status: int = 400, message: str = "nope") -> bytes:
    more = f"https://www.twilio.com/docs/errors/{code}"
    return (
        f'{{"code":{code},"message":"{message}","more_info":"{more}","status":{status}}}'.encode()
    )


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "error_class", "code", "retry_after_s"),
    [
        (400, error_body(21610), None, ErrorClass.OPTED_OUT, "21610", None),
        (400, error_body(21211), None, ErrorClass.PERMANENT, "21211", None),
        (400, error_body(21614), None, ErrorClass.PERMANENT, "21614", None),
        (400, error_body(21408), None, ErrorClass.PERMANENT, "21408", None),
        (401, error_body(20003, 401), None, ErrorClass.UNAUTHORIZED, "20003", None),
        (400, error_body(21611), "2", ErrorClass.RATE_LIMITED, "21611", 2.0),
        (404, b"<html>not found</html>", None, ErrorClass.PERMANENT, "404", None),
        (429, error_body(20429, 429), "3", ErrorClass.RATE_LIMITED, "20429", 3.0),
        (429, b"", None, ErrorClass.RATE_LIMITED, "429", None),
        (429, b"", "Wed, 21 Oct 2015 07:28:00 GMT", ErrorClass.RATE_LIMITED, "429", None),
        (500, error_body(20500, 500), None, ErrorClass.RETRYABLE, "20500", None),
        (503, b"", "5", ErrorClass.RETRYABLE, "503", None),
        (302, b"", None, ErrorClass.PERMANENT, "302", None),
    ],
)
def test_result_from_response_errors(
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
    assert result.error_description
    assert result.retry_after_s == retry_after_s


def test_result_from_response_accepted() -> None:
    result = result_from_response(201, b'{"sid":"SM0123","status":"queued"}', None)
    assert result.accepted
    assert result.provider_message_id == "SM0123"
    assert result.error_class is None


def test_result_from_response_accepted_without_readable_body() -> None:
    result = result_from_response(201, b"", None)
    assert result.accepted
    assert result.provider_message_id is None


def test_result_from_response_uses_twilio_message() -> None:
    result = result_from_response(400, error_body(21211, message="The To number is bad"), None)
    assert result.error_description == "The To number is bad"


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), ErrorClass.RETRYABLE),
        (aiohttp.SocketTimeoutError("read"), ErrorClass.AMBIGUOUS),
        (TimeoutError(), ErrorClass.AMBIGUOUS),
        (aiohttp.ServerDisconnectedError(), ErrorClass.AMBIGUOUS),
        (aiohttp.ClientOSError(104, "reset"), ErrorClass.AMBIGUOUS),
        (aiohttp.ClientPayloadError("truncated"), ErrorClass.AMBIGUOUS),
        (aiohttp.InvalidURL("nope"), ErrorClass.PERMANENT),
    ],
)
def test_result_from_exception(exc: BaseException, error_class: ErrorClass) -> None:
    result = result_from_exception(exc)
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-1", None),
        ("inf", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after_s(value: str | None, expected: float | None) -> None:
    assert parse_retry_after_s(value) == expected


def test_basic_authorization() -> None:
    expected = "Basic " + base64.b64encode(b"AC123:s3cr\xc3\xa9t").decode()
    assert basic_authorization("AC123", "s3cr\u00e9t") == expected
    with pytest.raises(ValueError):
        basic_authorization("AC:123", "x")
