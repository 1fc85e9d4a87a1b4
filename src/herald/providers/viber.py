"""Viber bots: sends, delivery callbacks, identity callbacks, callback signatures.

Requests follow Viber's REST bot API (`/pa/send_message`, X-Viber-Auth-Token). The receiver is
a Viber user id, never a phone number: a contact's user id is learned from the callbacks of a
user who opened the bot through the account's deep link (domain/identities.py) or set through
the contacts API. Errors come back inside an HTTP 200 as a non-zero `status`. Delivery
callbacks carry Viber's message_token but not herald's id, so they parse into *unresolved*
events that the status consumer resolves through the attempts table.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import orjson

from herald.domain.channels import Channel
from herald.domain.identities import MAX_ADDRESS_CHARS, IdentityEvent, contact_ref
from herald.domain.status import RecipientStatus, StatusEvent
from herald.providers._http import CallbackError as CallbackError
from herald.providers._http import (
    client_timeout,
    epoch_ms,
    exchange,
    failure,
    json_object,
    parse_retry_after_s,
    redacted,
    short_text,
)
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.settings import Secret

SOURCE: Final = "viber"
SEND_PATH: Final = "/pa/send_message"
AUTH_HEADER: Final = "X-Viber-Auth-Token"
SIGNATURE_HEADER: Final = "X-Viber-Content-Signature"

STATUS_OK: Final = 0
STATUS_NOT_REGISTERED: Final = 5
STATUS_NOT_SUBSCRIBED: Final = 6
STATUS_TOO_MANY_REQUESTS: Final = 12

_UNREACHABLE: Final = frozenset({5, 6, 11})  # not a Viber user, not subscribed, no device
_RATE_LIMITED: Final = frozenset({STATUS_TOO_MANY_REQUESTS})
# Token, data, account and API-version problems: fixing them takes a person.
_PERMANENT: Final = frozenset({2, 3, 4, 7, 9, 10, 13, 14})

# Callback event → (herald status, may the next channel be tried).
_EVENTS: Final[Mapping[str, tuple[RecipientStatus, bool]]] = {
    "delivered": (RecipientStatus.DELIVERED, False),
    "seen": (RecipientStatus.READ, False),
    "failed": (RecipientStatus.FAILED, True),
}


class ViberProvider:
    name = "viber"
    channel = Channel.VIBER

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        auth_token: Secret,
        sender_name: str,
        timeout_s: float,
        connect_timeout_s: float | None = None,
    ) -> None:
        self._session = session
        self._url = f"{base_url.rstrip('/')}{SEND_PATH}"
        self._sender_name = sender_name
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            AUTH_HEADER: auth_token.value,
        }
        self._token = auth_token
        self._timeout = client_timeout(timeout_s, connect_timeout_s)

    def __repr__(self) -> str:
        return f"ViberProvider(url={self._url!r}, sender_name={self._sender_name!r})"

    async def send(self, message: OutboundMessage) -> SendResult:
        body = request_body(message, sender_name=message.sender or self._sender_name)
        answer = await exchange(
            self._session,
            "POST",
            self._url,
            data=orjson.dumps(body),
            headers=self._headers,
            budget=self._timeout,
        )
        if isinstance(answer, SendResult):
            return answer
        result = result_from_response(answer.status, answer.body, answer.retry_after)
        return redacted(result, self._token.value)

    async def close(self) -> None:
        # The session belongs to the caller.
        return None


def request_body(message: OutboundMessage, *, sender_name: str) -> dict[str, Any]:
    """send_message's body; message.to is the contact's Viber user id (compose put it there)."""
    return {
        "receiver": message.to,
        "type": "text",
        "text": message.body,
        "sender": {"name": sender_name},
        "tracking_data": message.message_id,
    }


def result_from_response(status: int, body: bytes, retry_after: str | None) -> SendResult:
    """Classify one answer from send_message: the JSON `status`, or the HTTP status."""
    if status == 429:
        return failure(
            ErrorClass.RATE_LIMITED,
            "429",
            "HTTP 429",
            retry_after_s=parse_retry_after_s(retry_after),
        )
    if not 200 <= status < 300:
        error_class = ErrorClass.RETRYABLE if status >= 500 else ErrorClass.PERMANENT
        return failure(error_class, str(status), f"HTTP {status}")
    data = json_object(body)
    code = data.get("status")
    if type(code) is not int:
        # A 2xx without a readable status: Viber may well have taken the message.
        return failure(ErrorClass.AMBIGUOUS, "no_status", "answer without a status")
    if code == STATUS_OK:
        token = data.get("message_token")
        token_ok = type(token) is int or (isinstance(token, str) and token)
        return SendResult(accepted=True, provider_message_id=str(token) if token_ok else None)
    error_class = classify_status(code)
    return failure(
        error_class,
        str(code),
        short_text(data.get("status_message"), f"status {code}"),
        retry_after_s=(
            parse_retry_after_s(retry_after) if error_class is ErrorClass.RATE_LIMITED else None
        ),
    )


def classify_status(code: int) -> ErrorClass:
    if code in _UNREACHABLE:
        return ErrorClass.UNREACHABLE
    if code in _RATE_LIMITED:
        return ErrorClass.RATE_LIMITED
    if code in _PERMANENT:
        return ErrorClass.PERMANENT
    # 1 (invalid URL), 8 (account not found) and codes added later: worth another try.
    return ErrorClass.RETRYABLE


def signature(auth_token: str, body: bytes) -> str:
    """X-Viber-Content-Signature: hex HMAC-SHA256 of the raw body, keyed by the auth token."""
    return hmac.new(auth_token.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(auth_token: str, body: bytes, header_value: str | None) -> bool:
    if not header_value or not auth_token:
        return False
    expected = signature(auth_token, body)
    return hmac.compare_digest(expected.encode(), header_value.strip().lower().encode())


def parse_callback(payload: object, received_at_ms: int) -> StatusEvent | None:
    """An unresolved status event for delivered/seen/failed; None for every other event.

    Viber does not echo herald's id, so campaign_id is "", recipient_id and attempt are 0 and
    provider_message_id holds the message_token; the status consumer looks the attempt up.
    Raises CallbackError when the payload is not a Viber callback.
    """
    if not isinstance(payload, dict):
        raise CallbackError("callback must be a JSON object")
    event = payload.get("event")
    if not isinstance(event, str):
        raise CallbackError("callback needs an event")
    mapped = _EVENTS.get(event)
    if mapped is None:
        return None  # subscribed, conversation_started, webhook, message, ...
    status, fallback = mapped
    token = payload.get("message_token")
    if not ((type(token) is int and token > 0) or (isinstance(token, str) and token.isdigit())):
        raise CallbackError(f"{event} callback needs a message_token")
    failed = status is RecipientStatus.FAILED
    return StatusEvent(
        campaign_id="",
        recipient_id=0,
        attempt=0,
        channel=Channel.VIBER.value,
        status=status,
        occurred_at_ms=epoch_ms(payload.get("timestamp"), unit_ms=1) or received_at_ms,
        source=SOURCE,
        provider_message_id=str(token),
        error_code="failed" if failed else None,
        error_description=short_text(payload.get("desc"), "failed") if failed else None,
        accepted=True,
        fallback=fallback,
    )


def parse_identity(payload: object, received_at_ms: int) -> IdentityEvent | None:
    """What a subscription callback says about who a Viber user is; None for other events and
    for a user who came without a contact reference (nothing to link them to).

    conversation_started names the user and the deep link's `context` (a contact id);
    `subscribed` links too when it carries a context; unsubscribed unlinks the user id.
    Raises CallbackError when the payload is not a Viber callback or lacks the user.
    """
    if not isinstance(payload, dict):
        raise CallbackError("callback must be a JSON object")
    event = payload.get("event")
    if event not in ("conversation_started", "subscribed", "unsubscribed"):
        return None
    at = epoch_ms(payload.get("timestamp"), unit_ms=1) or received_at_ms
    if event == "unsubscribed":
        user_id = payload.get("user_id")
        if not _user_id_ok(user_id):
            raise CallbackError("unsubscribed callback needs a user_id")
        assert isinstance(user_id, str)
        return IdentityEvent(
            channel=Channel.VIBER.value, address=user_id, linked=False, occurred_at_ms=at
        )
    user = payload.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    if not _user_id_ok(user_id):
        raise CallbackError(f"{event} callback needs user.id")
    assert isinstance(user_id, str)
    ref = contact_ref(payload.get("context"))
    if ref is None:
        return None
    return IdentityEvent(
        channel=Channel.VIBER.value,
        address=user_id,
        linked=True,
        occurred_at_ms=at,
        contact_ref=ref,
    )


def _user_id_ok(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ADDRESS_CHARS
