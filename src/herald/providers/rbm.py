"""Google RCS Business Messaging: agent message sends, revocation, Pub/Sub push events.

RBM's `messageId` must be a UUID: herald sends `rbm_message_id(herald id)`, a UUIDv5 of its
`campaign.recipient.attempt` id, so every resend of one attempt carries the same messageId and
RBM ignores the repeat (a retry after a lost answer cannot send twice). The UUID is the
provider message id the worker records on the attempt; RBM's events carry only it, so they
become unresolved status events the status consumer maps back to the attempt by that column.
A user without RCS is a synchronous 404: fall back at once. There is no failed delivery event:
only DELIVERED/READ, or a TTL revocation when the message had a time to live.

Auth is an OAuth 2.0 access token (providers/tokens.py). A 401 gets one token refresh and one
repeat; a 401 after that is the credential's fault, never the recipient's: it is answered as
retryable trouble with code UNAUTHENTICATED, which feeds the provider's circuit breaker.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

import aiohttp
import orjson
from yarl import URL

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus, StatusEvent, parse_message_id
from herald.providers._http import (
    Answer,
    bearer_authorization,
    client_timeout,
    exchange,
    failure,
    json_object,
    parse_retry_after_s,
    redacted,
    short_text,
)
from herald.providers._http import CallbackError as CallbackError
from herald.providers._http import StatusBatch as StatusBatch
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.providers.tokens import StaticToken, TokenError, TokenSource
from herald.settings import Secret

log = logging.getLogger(__name__)

SOURCE: Final = "rbm"
# The namespace of herald's RBM messageIds. Fixed forever: changing it would give in-flight
# attempts new messageIds (RBM would send them twice, and their events would not resolve).
MESSAGE_ID_NAMESPACE: Final = uuid.UUID("4f49e1f1-d4cd-498f-bee8-4ce7bc989426")
# Error code of a credential RBM refused even after a token refresh, and its class: provider
# trouble (it feeds the circuit breaker, which holds the account's work), never the recipient's.
UNAUTHENTICATED: Final = "UNAUTHENTICATED"
CREDENTIAL_REFUSED: Final = ErrorClass.UNAUTHORIZED
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


def rbm_message_id(herald_message_id: str) -> str:
    """RBM's messageId for one herald attempt: a UUID (RFC 4122, version 5), the same for
    every resend of the attempt and different for every other attempt."""
    if not herald_message_id:
        raise ValueError("empty message id")
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, herald_message_id))


def is_uuid(value: str) -> bool:
    """Whether value is a UUID in its canonical 8-4-4-4-12 text form."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


class RbmProvider:
    name = "rbm"
    channel = Channel.RCS

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        agent_id: str,
        token: Secret | None = None,
        auth: TokenSource | None = None,
        timeout_s: float,
        connect_timeout_s: float | None = None,
        ttl_s: int | None = None,
    ) -> None:
        if auth is None:
            if token is None:
                raise ValueError("RbmProvider needs a token or a token source")
            auth = StaticToken(token)
        self._session = session
        self._base = URL(base_url.rstrip("/")) / "v1" / "phones"
        self._agent_id = agent_id
        self._ttl_s = ttl_s
        self._auth = auth
        self._timeout = client_timeout(timeout_s, connect_timeout_s)

    def __repr__(self) -> str:
        return f"RbmProvider(base_url={str(self._base)!r}, agent_id={self._agent_id!r})"

    def message_url(self, to: str, message_id: str) -> URL:
        """The create URL of one agent message (RBM's messageId for herald's id)."""
        return (self._base / to / "agentMessages").with_query(
            messageId=rbm_message_id(message_id), agentId=self._agent_id
        )

    def revoke_url(self, to: str, message_id: str) -> URL:
        return (self._base / to / "agentMessages" / rbm_message_id(message_id)).with_query(
            agentId=self._agent_id
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        rbm_id = rbm_message_id(message.message_id)
        answer = await self._call(
            "POST",
            self.message_url(message.to, message.message_id),
            orjson.dumps(request_body(message, ttl_s=self._ttl_s)),
        )
        if isinstance(answer, SendResult):
            # Whatever happened, this attempt's messageId is known: recorded on the attempt,
            # a late event for a send whose answer was lost still finds its recipient.
            return replace(answer, provider_message_id=rbm_id)
        result = result_from_response(answer.status, answer.body, answer.retry_after, rbm_id)
        return redacted(result, *self._auth.secrets())

    async def revoke(self, message_id: str, to: str) -> bool:
        """True when RBM withdrew the message; False when it was delivered first (404).

        message_id is herald's id of the attempt (the messageId sent is derived from it).
        Raises RevokeError for any other answer or a transport failure: the caller cannot tell
        whether the message is withdrawn and should wait for DELIVERED or try again.
        """
        answer = await self._call("DELETE", self.revoke_url(to, message_id), None)
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
        rbm_id = rbm_message_id(message_id)
        failed = redacted(
            result_from_response(answer.status, answer.body, answer.retry_after, rbm_id),
            *self._auth.secrets(),
        )
        raise RevokeError(
            failed.error_class or ErrorClass.RETRYABLE,
            failed.error_code or str(answer.status),
            failed.error_description or "",
        )

    async def close(self) -> None:
        # The session belongs to the caller.
        return None

    async def _call(self, method: str, url: URL, data: bytes | None) -> Answer | SendResult:
        """One authorised request; after a 401, one token refresh and one repeat (RBM
        ignores a repeated messageId, and a 401 was never processed)."""
        try:
            token = await self._auth.token()
            answer = await self._exchange(method, url, data, token)
            if isinstance(answer, Answer) and answer.status == 401:
                fresh = await self._auth.refresh(token)
                if fresh != token:
                    answer = await self._exchange(method, url, data, fresh)
        except TokenError as exc:
            return failure(CREDENTIAL_REFUSED, UNAUTHENTICATED, exc.description)
        if isinstance(answer, Answer) and answer.status == 401:
            log.warning(
                "RBM refused the agent's credential after a token refresh; sends to %s are "
                "held by its circuit breaker",
                self._agent_id,
                extra={"event": "provider_unauthenticated", "provider": self.name},
            )
        return answer

    async def _exchange(
        self, method: str, url: URL, data: bytes | None, token: str
    ) -> Answer | SendResult:
        headers = {
            "Accept": "application/json",
            "Authorization": bearer_authorization(token),
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        return await exchange(
            self._session, method, url, data=data, headers=headers, budget=self._timeout
        )


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
        provider_message_id=message_id,
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
    if status == 401:
        # A 401 that outlived a token refresh is the credential's fault (expired, revoked
        # key), never the recipient's: provider trouble, so the breaker holds the work.
        return CREDENTIAL_REFUSED
    if status >= 500:
        return ErrorClass.RETRYABLE
    # 400 unsupported content, 403 an unlaunched agent or a non-tester, anything else.
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
    still be delivered) yield nothing. The messageId is RBM's UUID: the event names only it,
    and the status consumer finds the attempt whose provider message id it is. A herald id
    (sent before messageIds were UUIDs) still resolves directly. A status event with any
    other messageId is skipped and counted. Raises CallbackError when the push body or its
    data cannot be read.
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
    raw = raw_id.strip() if isinstance(raw_id, str) else ""
    if is_uuid(raw):
        campaign_id, recipient_id, attempt = "", 0, 0
        raw = raw.lower()
    else:
        try:
            campaign_id, recipient_id, attempt = parse_message_id(raw)
        except ValueError:
            return StatusBatch(skipped=1)
    failed = status is RecipientStatus.FAILED
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
                provider_message_id=raw,
                error_code=event_type if failed else None,
                error_description="expired before delivery" if failed else None,
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
