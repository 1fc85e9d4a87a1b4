"""Google RCS Business Messaging: agent message sends, revocation, Pub/Sub push events.

RBM takes herald's message id as its `messageId` and ignores a messageId it has seen, so a
retry after a lost answer cannot send twice; the provider message id is herald's own. A user
without RCS is a synchronous 404: fall back at once. There is no failed delivery event: only
DELIVERED/READ, or a TTL revocation when the message had a time to live.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import aiohttp
import orjson
from yarl import URL

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus, StatusEvent, parse_message_id
from herald.providers._http import CallbackError as CallbackError
from herald.providers._http import StatusBatch as StatusBatch
from herald.providers._http import (
    bearer_authorization,
    client_timeout,
    exchange,
    json_object,
    parse_retry_after_s,
    redacted,
    short_text,
)
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.settings import Secret

SOURCE: Final = "rbm"
TRAFFIC_TYPE: Final = "PROMOTION"

EVENT_DELIVERED: Final = "DELIVERED"
EVENT_READ: Final = "READ"
EVENT_TTL_REVOKED: Final = "TTL_EXPIRATION_REVOKED"
EVENT_TTL_REVOKE_FAILED: Final = "TTL_EXPIRATION_REVOKE_FAILED"


class RevokeError(RuntimeError):
    """A revocation whose outcome is unknown or refused (not 200, not 404)."""

    def __init__(self, error_class: ErrorClass, code: str, description: str) -> None:
        super().__init__(f"revoke failed: {code}")
        self.error_class = error_class
        self.code = code
        self.description = description


class RbmProvider:
    name = "rbm"
    channel = Channel.RCS

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        agent_id: str,
        token: Secret,
        timeout_s: float,
        connect_timeout_s: float | None = None,
        ttl_s: int | None = None,
    ) -> None:
        self._session = session
        self._base = URL(base_url.rstrip("/")) / "v1" / "phones"
        self._agent_id = agent_id
        self._ttl_s = ttl_s
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Authorization": bearer_authorization(token.value),
        }
        self._token = token
        self._timeout = client_timeout(timeout_s, connect_timeout_s)

    def __repr__(self) -> str:
        return f"RbmProvider(base_url={str(self._base)!r}, agent_id={self._agent_id!r})"

    def message_url(self, to: str, message_id: str) -> URL:
        """The create URL of one agent message (herald's id as RBM's messageId)."""
        return (self._base / to / "agentMessages").with_query(
            messageId=message_id, agentId=self._agent_id
        )

    def revoke_url(self, to: str, message_id: str) -> URL:
        return (self._base / to / "agentMessages" / message_id).with_query(agentId=self._agent_id)

    async def send(self, message: OutboundMessage) -> SendResult:
        answer = await exchange(
            self._session,
            "POST",
            self.message_url(message.to, message.message_id),
            data=orjson.dumps(request_body(message, ttl_s=self._ttl_s)),
            headers=self._headers,
            budget=self._timeout,
        )
        if isinstance(answer, SendResult):
            return answer
        result = result_from_response(
            answer.status, answer.body, answer.retry_after, message.message_id
        )
        return redacted(result, self._token.value)

    async def revoke(self, message_id: str, to: str) -> bool:
        """True when RBM withdrew the message; False when it was delivered first (404).

        Raises RevokeError for any other answer or a transport failure: the caller cannot tell
        whether the message is withdrawn and should wait for DELIVERED or try again.
        """
        answer = await exchange(
            self._session,
            "DELETE",
            self.revoke_url(to, message_id),
            headers=self._headers,
            budget=self._timeout,
        )
        if isinstance(answer, SendResult):
            raise RevokeError(
                answer.error_class or ErrorClass.AMBIGUOUS,
                answer.error_code or "transport",
                answer.error_description or "",
            )
        if 200 <= answer.status < 300:
            return True
        if answer.status == 404:
            return False
        failed = redacted(
            result_from_response(answer.status, answer.body, answer.retry_after, message_id),
            self._token.value,
        )
        raise RevokeError(
            failed.error_class or ErrorClass.RETRYABLE,
            failed.error_code or str(answer.status),
            failed.error_description or "",
        )

    async def close(self) -> None:
        # The session belongs to the caller.
        return None


def request_body(message: OutboundMessage, *, ttl_s: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contentMessage": {"text": message.body},
        "messageTrafficType": TRAFFIC_TYPE,
    }
    if ttl_s is not None:
        # Lets RBM revoke the message itself and report TTL_EXPIRATION_REVOKED: a fallback.
        body["ttl"] = f"{ttl_s}s"
    return body


def result_from_response(
    status: int, body: bytes, retry_after: str | None, message_id: str
) -> SendResult:
    """Classify one HTTP answer from agentMessages.create."""
    if 200 <= status < 300 or status == 409:
        # 409 ALREADY_EXISTS: this messageId was taken before, so the message is RBM's already.
        return SendResult(accepted=True, provider_message_id=message_id)
    error = json_object(body).get("error")
    error = error if isinstance(error, dict) else {}
    google_status = error.get("status")
    error_class = classify_status(status)
    return SendResult(
        accepted=False,
        error_class=error_class,
        error_code=(
            google_status if isinstance(google_status, str) and google_status else str(status)
        ),
        error_description=short_text(error.get("message"), f"HTTP {status}"),
        retry_after_s=(
            parse_retry_after_s(retry_after) if error_class is ErrorClass.RATE_LIMITED else None
        ),
    )


def classify_status(status: int) -> ErrorClass:
    if status == 404:
        # No RCS on that number (or its carrier): the next channel now.
        return ErrorClass.UNREACHABLE
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status >= 500:
        return ErrorClass.RETRYABLE
    # 400 unsupported content, 401/403 credentials or an unlaunched agent, anything else.
    return ErrorClass.PERMANENT


def signature(client_token: str, data: bytes) -> str:
    """X-Goog-Signature: base64 HMAC-SHA512 of the decoded Pub/Sub message data."""
    mac = hmac.new(client_token.encode(), data, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode("ascii")


def verify_signature(
    client_token: str, payload: Mapping[str, Any], header_value: str | None
) -> bool:
    if not header_value or not client_token:
        return False
    try:
        data = _message_data(payload)
    except CallbackError:
        return False
    expected = signature(client_token, data)
    return hmac.compare_digest(expected.encode(), header_value.strip().encode())


def registration_response(payload: object, client_token: str | None = None) -> str | None:
    """The secret to echo for the webhook setup handshake, or None if payload is not one.

    Given a client_token, the handshake must also name it (compared in constant time).
    """
    if not isinstance(payload, dict):
        return None
    token = payload.get("clientToken")
    secret = payload.get("secret")
    if not isinstance(token, str) or not isinstance(secret, str) or not secret:
        return None
    if client_token is not None and not hmac.compare_digest(token.encode(), client_token.encode()):
        return None
    return secret


def parse_webhook(payload: object, received_at_ms: int) -> StatusBatch:
    """The status events in one Pub/Sub push.

    DELIVERED/READ and TTL_EXPIRATION_REVOKED (a FAILED that allows fallback) become events;
    typing, subscribe, inbound messages and TTL_EXPIRATION_REVOKE_FAILED (the message may
    still be delivered) yield nothing. A status event naming no herald message is skipped and
    counted. Raises CallbackError when the push body or its data cannot be read.
    """
    event = _data_object(_message_data(payload))
    event_type = event.get("eventType")
    if event_type is None:
        return StatusBatch()  # an inbound message or suggestion reply, not a status
    if not isinstance(event_type, str):
        raise CallbackError("eventType must be a string")
    mapped = _EVENTS.get(event_type)
    if mapped is None:
        return StatusBatch()
    status, fallback = mapped
    raw_id = event.get("messageId")
    try:
        campaign_id, recipient_id, attempt = parse_message_id(str(raw_id or ""))
    except ValueError:
        return StatusBatch(skipped=1)
    return StatusBatch(
        [
            StatusEvent(
                campaign_id=campaign_id,
                recipient_id=recipient_id,
                attempt=attempt,
                channel=Channel.RCS.value,
                status=status,
                occurred_at_ms=_rfc3339_ms(event.get("sendTime")) or received_at_ms,
                source=SOURCE,
                provider_message_id=str(raw_id),
                error_code=event_type if status is RecipientStatus.FAILED else None,
                error_description=(
                    "expired before delivery" if status is RecipientStatus.FAILED else None
                ),
                accepted=True,
                fallback=fallback,
            )
        ]
    )


_EVENTS: Final[Mapping[str, tuple[RecipientStatus, bool]]] = {
    EVENT_DELIVERED: (RecipientStatus.DELIVERED, False),
    EVENT_READ: (RecipientStatus.READ, False),
    EVENT_TTL_REVOKED: (RecipientStatus.FAILED, True),
}


def _data_object(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CallbackError("message.data is not JSON") from exc
    if not isinstance(value, dict):
        raise CallbackError("message.data must hold a JSON object")
    return value


def _message_data(payload: object) -> bytes:
    message = payload.get("message") if isinstance(payload, Mapping) else None
    data = message.get("data") if isinstance(message, Mapping) else None
    if not isinstance(data, str):
        raise CallbackError("not a Pub/Sub push: message.data is missing")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CallbackError("message.data is not base64") from exc


def _rfc3339_ms(value: object) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        # Python 3.11 reads "Z" and up to six fraction digits; RBM may send nine.
        head, dot, tail = value.partition(".")
        if dot:
            digits = "".join(ch for ch in tail if ch.isdigit())
            zone = tail[len(digits) :]
            value = f"{head}.{digits[:6]}{zone}"
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return round(parsed.timestamp() * 1000)
