"""RBM adapter: request URL and body, classification, revocation, Pub/Sub events, signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any, cast

import aiohttp
import orjson
import pytest

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus, from_wire, is_unresolved, to_wire
from herald.providers.base import ErrorClass, OutboundMessage
from herald.providers.rbm import (
    MESSAGE_ID_NAMESPACE,
    CallbackError,
    RbmProvider,
    RevokeError,
    is_uuid,
    parse_webhook,
    rbm_message_id,
    registration_response,
    request_body,
    result_from_response,
    verify_signature,
)
from herald.settings import Secret

TOKEN = "ya29.rbm-access-token"
CLIENT_TOKEN = "rbm-client-token"
AGENT = "herald_agent@rbm.goog"
MID = "camp-1.7.1"
RBM_MID = rbm_message_id(MID)


def message(to: str = "+15551234500", body: str = "Hello") -> OutboundMessage:
    return OutboundMessage(
        message_id=MID, channel=Channel.RCS, to=to, sender=AGENT, body=body, callback_url=""
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


def provider(session: FakeSession, ttl_s: int | None = None) -> RbmProvider:
    return RbmProvider(
        session=cast(aiohttp.ClientSession, session),
        base_url="https://rbm.example/",
        agent_id=AGENT,
        token=Secret(TOKEN),
        timeout_s=5.0,
        ttl_s=ttl_s,
    )


def test_request_body() -> None:
    assert request_body(message(body="Hi ✓")) == {
        "contentMessage": {"text": "Hi ✓"},
        "messageTrafficType": "PROMOTION",
    }
    assert request_body(message(), ttl_s=600)["ttl"] == "600s"


# Pinned: a changed namespace or derivation would resend every in-flight attempt under a new
# messageId (RBM would deliver it twice) and orphan its events.
@pytest.mark.parametrize(
    ("herald_id", "expected"),
    [
        ("camp-1.7.1", "ca02c09e-1b37-52f8-8ecf-ef050b45be0b"),
        ("c.1.1", "951035d1-5ccd-5614-bb62-ede80d6c6095"),
        (
            "0b8f6a2c-1d4e-4f0a-9c3b-2a1d5e6f7a8b.2147483647.32",
            "2241a9c1-049b-57d6-beb7-054e88c60b2d",
        ),
    ],
)
def test_rbm_message_id_table(herald_id: str, expected: str) -> None:
    derived = rbm_message_id(herald_id)
    assert derived == expected
    assert uuid.UUID(derived).version == 5 and uuid.UUID(derived).variant == uuid.RFC_4122
    assert derived == str(uuid.uuid5(MESSAGE_ID_NAMESPACE, herald_id))
    assert is_uuid(derived)


def test_rbm_message_id_is_per_attempt_and_stable() -> None:
    ids = {rbm_message_id(f"camp-{c}.{r}.{a}") for c in (1, 2) for r in (7, 70) for a in (1, 2)}
    assert len(ids) == 8
    assert rbm_message_id("camp-1.7.1") == rbm_message_id("camp-1.7.1")
    with pytest.raises(ValueError):
        rbm_message_id("")


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("123e4567-e89b-12d3-a456-426614174000", True),
        ("123E4567-E89B-12D3-A456-426614174000", True),
        ("123e4567e89b12d3a456426614174000", False),
        ("{123e4567-e89b-12d3-a456-426614174000}", False),
        ("camp-1.7.1", False),
        ("", False),
    ],
)
def test_is_uuid(value: str, valid: bool) -> None:
    assert is_uuid(value) is valid


async def test_send_uses_a_uuid_per_attempt_as_message_id() -> None:
    session = FakeSession(FakeResponse(200, b'{"name":"phones/+15551234500/agentMessages/x"}'))
    result = await provider(session).send(message())
    assert result.accepted
    assert result.provider_message_id == RBM_MID
    (call,) = session.calls
    assert call["method"] == "POST"
    assert call["url"] == (
        "https://rbm.example/v1/phones/+15551234500/agentMessages"
        f"?messageId={RBM_MID}&agentId=herald_agent@rbm.goog"
    )
    assert call["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert call["allow_redirects"] is False
    assert orjson.loads(call["data"]) == {
        "contentMessage": {"text": "Hello"},
        "messageTrafficType": "PROMOTION",
    }


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "error_class", "code", "retry_after_s"),
    [
        (404, b'{"error":{"code":404,"status":"NOT_FOUND","message":"gone"}}', None,
         ErrorClass.UNREACHABLE, "NOT_FOUND", None),
        (429, b'{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}', "3",
         ErrorClass.RATE_LIMITED, "RESOURCE_EXHAUSTED", 3.0),
        (429, b"", None, ErrorClass.RATE_LIMITED, "429", None),
        (400, b'{"error":{"code":400,"status":"INVALID_ARGUMENT"}}', None,
         ErrorClass.PERMANENT, "INVALID_ARGUMENT", None),
        (403, b'{"error":{"code":403,"status":"PERMISSION_DENIED"}}', None,
         ErrorClass.PERMANENT, "PERMISSION_DENIED", None),
        # A 401 left after a token refresh: the credential's fault, held by the breaker.
        (401, b'{"error":{"code":401,"status":"UNAUTHENTICATED"}}', None,
         ErrorClass.UNAUTHORIZED, "UNAUTHENTICATED", None),
        (500, b'{"error":{"code":500,"status":"INTERNAL"}}', "1",
         ErrorClass.RETRYABLE, "INTERNAL", None),
        (503, b"<html>", None, ErrorClass.RETRYABLE, "503", None),
    ],
)  # fmt: skip
def test_result_from_response_errors(
    status: int,
    body: bytes,
    retry_after: str | None,
    error_class: ErrorClass,
    code: str,
    retry_after_s: float | None,
) -> None:
    result = result_from_response(status, body, retry_after, RBM_MID)
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code == code
    assert result.error_description
    assert result.retry_after_s == retry_after_s
    # Known either way: a late event for the attempt still resolves.
    assert result.provider_message_id == RBM_MID


@pytest.mark.parametrize("status", [200, 409])
def test_result_from_response_accepted(status: int) -> None:
    # 409 ALREADY_EXISTS: the messageId was taken by an earlier try; the message is RBM's.
    result = result_from_response(status, b"", None, RBM_MID)
    assert result.accepted
    assert result.provider_message_id == RBM_MID


def test_error_message_is_used_and_token_masked() -> None:
    assert (
        result_from_response(404, b'{"error":{"message":"gone"}}', None, MID).error_description
        == "gone"
    )


async def test_send_masks_echoed_token() -> None:
    body = orjson.dumps({"error": {"code": 401, "message": f"bad {TOKEN}"}})
    result = await provider(FakeSession(FakeResponse(401, body))).send(message())
    assert TOKEN not in (result.error_description or "")
    assert TOKEN not in repr(provider(FakeSession(FakeResponse(200))))


@pytest.mark.parametrize(
    ("exc", "error_class", "code"),
    [
        (aiohttp.ConnectionTimeoutError("connect"), ErrorClass.RETRYABLE, "connect_timeout"),
        (aiohttp.SocketTimeoutError("read"), ErrorClass.AMBIGUOUS, "timeout"),
        (aiohttp.ServerDisconnectedError(), ErrorClass.AMBIGUOUS, "connection_lost"),
    ],
)
async def test_send_classifies_transport_failures(
    exc: BaseException, error_class: ErrorClass, code: str
) -> None:
    result = await provider(FakeSession(exc)).send(message())
    assert (result.error_class, result.error_code) == (error_class, code)
    assert result.provider_message_id == RBM_MID


@pytest.mark.parametrize(("status", "revoked"), [(200, True), (404, False)])
async def test_revoke(status: int, revoked: bool) -> None:
    session = FakeSession(FakeResponse(status, b"{}"))
    assert await provider(session).revoke(MID, "+15551234500") is revoked
    (call,) = session.calls
    assert call["method"] == "DELETE"
    assert call["url"] == (
        f"https://rbm.example/v1/phones/+15551234500/agentMessages/{RBM_MID}"
        "?agentId=herald_agent@rbm.goog"
    )
    assert call["headers"]["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("outcome", "error_class"),
    [
        (FakeResponse(500), ErrorClass.RETRYABLE),
        (FakeResponse(403), ErrorClass.PERMANENT),
        (aiohttp.SocketTimeoutError("read"), ErrorClass.AMBIGUOUS),
    ],
)
async def test_revoke_other_answers_raise(
    outcome: FakeResponse | BaseException, error_class: ErrorClass
) -> None:
    with pytest.raises(RevokeError) as info:
        await provider(FakeSession(outcome)).revoke(MID, "+15551234500")
    assert info.value.error_class is error_class


# -- signatures ---------------------------------------------------------------------------

EVENT = b'{"senderPhoneNumber":"+15551234500","eventType":"DELIVERED","messageId":"camp-1.7.1"}'
# openssl dgst -sha512 -hmac rbm-client-token -binary | base64, over EVENT
EVENT_SIGNATURE = (
    "OGfM0fRuCO+RElZIUkT/ZiuokVK06dBIQ2x+G00yjh2E3yXtOEOqjPXPiO5RMPtnE1to3Vq80daLCDXpBMwHxw=="
)


def push(data: bytes | str) -> dict[str, Any]:
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    return {
        "message": {
            "data": encoded,
            "messageId": "2070443601311540",
            "publishTime": "2021-02-26T17:00:00.000Z",
        },
        "subscription": "projects/rbm-herald/subscriptions/rbm-agent-subscription",
    }


def reference_signature(token: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(token.encode(), data, hashlib.sha512).digest()).decode()


def test_signature_known_vector() -> None:
    assert reference_signature(CLIENT_TOKEN, EVENT) == EVENT_SIGNATURE
    assert verify_signature(CLIENT_TOKEN, push(EVENT), EVENT_SIGNATURE)


@pytest.mark.parametrize(
    ("token", "payload", "header"),
    [
        ("other", push(EVENT), EVENT_SIGNATURE),
        ("", push(EVENT), EVENT_SIGNATURE),
        (CLIENT_TOKEN, push(EVENT.replace(b"DELIVERED", b"READ")), EVENT_SIGNATURE),
        (CLIENT_TOKEN, push(EVENT), None),
        (CLIENT_TOKEN, push(EVENT), ""),
        (CLIENT_TOKEN, push(EVENT), EVENT_SIGNATURE.lower()),
        (CLIENT_TOKEN, push("***"), EVENT_SIGNATURE),
        (CLIENT_TOKEN, {"message": {}}, EVENT_SIGNATURE),
        (CLIENT_TOKEN, {}, EVENT_SIGNATURE),
    ],
)
def test_verify_signature_rejects(token: str, payload: dict[str, Any], header: str | None) -> None:
    assert not verify_signature(token, payload, header)


@pytest.mark.parametrize(
    ("payload", "client_token", "expected"),
    [
        ({"clientToken": CLIENT_TOKEN, "secret": "s3cret"}, None, "s3cret"),
        ({"clientToken": CLIENT_TOKEN, "secret": "s3cret"}, CLIENT_TOKEN, "s3cret"),
        ({"clientToken": "other", "secret": "s3cret"}, CLIENT_TOKEN, None),
        ({"clientToken": CLIENT_TOKEN}, None, None),
        ({"clientToken": CLIENT_TOKEN, "secret": ""}, None, None),
        ({"secret": "s3cret"}, None, None),
        (push(EVENT), None, None),
        ("x", None, None),
    ],
)
def test_registration_response(
    payload: object, client_token: str | None, expected: str | None
) -> None:
    assert registration_response(payload, client_token) == expected


# -- events -------------------------------------------------------------------------------


def event(**fields: Any) -> dict[str, Any]:
    return push(orjson.dumps(fields))


@pytest.mark.parametrize(
    ("event_type", "status"),
    [("DELIVERED", RecipientStatus.DELIVERED), ("READ", RecipientStatus.READ)],
)
def test_parse_webhook_user_events(event_type: str, status: RecipientStatus) -> None:
    (parsed,) = parse_webhook(
        event(
            senderPhoneNumber="+15551234500",
            eventType=event_type,
            eventId="MxS1",
            messageId="camp-1.7.3",
            sendTime="2024-05-01T10:00:00.123456789Z",
            agentId=AGENT,
        ),
        7,
    )
    assert (parsed.campaign_id, parsed.recipient_id, parsed.attempt) == ("camp-1", 7, 3)
    assert parsed.status is status
    assert parsed.accepted
    assert not parsed.fallback
    assert parsed.channel == "rcs"
    assert parsed.source == "rbm"
    assert parsed.provider_message_id == "camp-1.7.3"
    assert parsed.occurred_at_ms == 1_714_557_600_123
    assert parsed.error_code is None


def test_parse_webhook_ttl_revoked_is_a_fallback_failure() -> None:
    (parsed,) = parse_webhook(
        event(phoneNumber="+15551234500", eventType="TTL_EXPIRATION_REVOKED", messageId=MID), 7
    )
    assert parsed.status is RecipientStatus.FAILED
    assert parsed.accepted
    assert parsed.fallback
    assert parsed.error_code == "TTL_EXPIRATION_REVOKED"
    assert parsed.occurred_at_ms == 7


@pytest.mark.parametrize(
    "fields",
    [
        {"eventType": "IS_TYPING", "senderPhoneNumber": "+1555"},
        {"eventType": "SUBSCRIBE", "senderPhoneNumber": "+1555"},
        {"eventType": "UNSUBSCRIBE", "senderPhoneNumber": "+1555"},
        {"eventType": "TTL_EXPIRATION_REVOKE_FAILED", "messageId": MID},
        {"senderPhoneNumber": "+1555", "messageId": "user-msg-1", "text": "hi"},
    ],
)
def test_parse_webhook_events_without_status(fields: dict[str, Any]) -> None:
    batch = parse_webhook(event(**fields), 0)
    assert batch == []
    assert batch.skipped == 0


@pytest.mark.parametrize("message_id", [None, "", "someone-else", "c.0.1"])
def test_parse_webhook_skips_foreign_message_ids(message_id: str | None) -> None:
    fields: dict[str, Any] = {"eventType": "DELIVERED"}
    if message_id is not None:
        fields["messageId"] = message_id
    batch = parse_webhook(event(**fields), 0)
    assert batch == []
    assert batch.skipped == 1


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {},
        {"clientToken": "x", "secret": "y"},
        {"message": {"data": 5}},
        push("not base64!"),
        push(b"not json"),
        push(b"[1, 2]"),
        push(orjson.dumps({"eventType": 5})),
    ],
)
def test_parse_webhook_malformed(payload: object) -> None:
    with pytest.raises(CallbackError):
        parse_webhook(payload, 0)


@pytest.mark.parametrize(
    ("event_type", "status", "fallback"),
    [
        ("DELIVERED", RecipientStatus.DELIVERED, False),
        ("READ", RecipientStatus.READ, False),
        ("TTL_EXPIRATION_REVOKED", RecipientStatus.FAILED, True),
    ],
)
def test_parse_webhook_uuid_events_name_only_the_provider_message_id(
    event_type: str, status: RecipientStatus, fallback: bool
) -> None:
    # RBM echoes only its messageId; the status consumer resolves it to the attempt whose
    # provider_message_id it is (the worker recorded it from the send's result).
    (parsed,) = parse_webhook(
        event(eventType=event_type, messageId=RBM_MID.upper(), sendTime="2024-05-01T10:00:00Z"),
        7,
    )
    assert (parsed.campaign_id, parsed.recipient_id, parsed.attempt) == ("", 0, 0)
    assert parsed.provider_message_id == RBM_MID
    assert (parsed.status, parsed.fallback, parsed.accepted) == (status, fallback, True)
    assert parsed.channel == "rcs"
    assert is_unresolved(parsed)
    assert from_wire(to_wire(parsed)) == parsed
