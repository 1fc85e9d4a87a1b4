"""Twilio Programmable Messaging (SMS): send adapter, callback parsing, request signatures.

The wire format is Twilio's real one, so the same adapter talks to api.twilio.com and to the
local simulator. Classification of answers and errors lives in pure functions so it can be
tested without a network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlencode

import aiohttp

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus, StatusEvent, parse_message_id
from herald.providers._http import CallbackError as CallbackError
from herald.providers._http import basic_authorization as basic_authorization
from herald.providers._http import (
    client_timeout,
    exchange,
    json_object,
    redacted,
    short_text,
)
from herald.providers._http import parse_retry_after_s as parse_retry_after_s
from herald.providers._http import result_from_exception as result_from_exception
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.settings import Secret

API_VERSION: Final = "2010-04-01"
SOURCE: Final = "twilio"

CODE_AUTHENTICATE: Final = 20003
CODE_TOO_MANY_REQUESTS: Final = 20429
CODE_UNSUBSCRIBED: Final = 21610
CODE_QUEUE_FULL: Final = 21611

# Short texts for the asynchronous delivery errors herald reports on.
DELIVERY_ERRORS: Final[Mapping[str, str]] = {
    "30003": "handset unreachable",
    "30005": "unknown number",
    "30006": "landline or unreachable carrier",
    "30007": "carrier filtered",
    "30008": "unknown error",
}

# MessageStatus → (herald status, did Twilio take the message). None: nothing to fold.
_CALLBACK_STATUS: Final[Mapping[str, tuple[RecipientStatus, bool] | None]] = {
    "queued": None,
    "accepted": None,
    "scheduled": None,
    "sending": None,
    "sent": (RecipientStatus.SENT, True),
    "delivered": (RecipientStatus.DELIVERED, True),
    "read": (RecipientStatus.READ, True),
    "undelivered": (RecipientStatus.FAILED, True),
    "failed": (RecipientStatus.FAILED, False),
    # Terminal for a scheduled message that was cancelled before sending.
    "canceled": (RecipientStatus.FAILED, False),
}


class TwilioProvider:
    name = "twilio"
    channel = Channel.SMS

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        account_sid: str,
        auth_token: Secret,
        timeout_s: float,
        connect_timeout_s: float | None = None,
    ) -> None:
        self._session = session
        self._url = f"{base_url.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        self._headers = {
            "Accept": "application/json",
            "Authorization": basic_authorization(account_sid, auth_token.value),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        self._token = auth_token
        self._timeout = client_timeout(timeout_s, connect_timeout_s)

    def __repr__(self) -> str:
        return f"TwilioProvider(url={self._url!r})"

    async def send(self, message: OutboundMessage) -> SendResult:
        form = {"To": message.to, "From": message.sender, "Body": message.body}
        if message.callback_url:
            form["StatusCallback"] = message.callback_url
        answer = await exchange(
            self._session,
            "POST",
            self._url,
            # Encoded here: aiohttp's FormData machinery costs more than the send itself.
            data=urlencode(form).encode(),
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


def result_from_response(status: int, body: bytes, retry_after: str | None) -> SendResult:
    """Classify one HTTP answer from the Messages endpoint."""
    data = json_object(body)
    if 200 <= status < 300:
        sid = data.get("sid")
        return SendResult(accepted=True, provider_message_id=sid if isinstance(sid, str) else None)

    code = data.get("code")
    error_code = str(code) if isinstance(code, int | str) and str(code) else str(status)
    description = short_text(data.get("message"), f"HTTP {status}")
    if status == 429 or error_code == str(CODE_TOO_MANY_REQUESTS):
        error_class = ErrorClass.RATE_LIMITED
    elif status >= 500:
        error_class = ErrorClass.RETRYABLE
    elif error_code == str(CODE_UNSUBSCRIBED):
        error_class = ErrorClass.OPTED_OUT
    elif error_code == str(CODE_QUEUE_FULL):
        # The sender's queue holds more than 10 h of segments: slow down, the message is fine.
        error_class = ErrorClass.RATE_LIMITED
    else:
        # Any other 4xx (and unexpected 1xx/3xx) is bad data or config; retrying cannot help.
        error_class = ErrorClass.PERMANENT
    return SendResult(
        accepted=False,
        error_class=error_class,
        error_code=error_code,
        error_description=description,
        retry_after_s=(
            parse_retry_after_s(retry_after) if error_class is ErrorClass.RATE_LIMITED else None
        ),
    )


def signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 over the full URL and the sorted POST params."""
    payload = url + "".join(key + params[key] for key in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(
    url: str, params: Mapping[str, str], auth_token: str, header_value: str | None
) -> bool:
    if not header_value or not auth_token:
        return False
    expected = signature(url, params, auth_token)
    return hmac.compare_digest(expected.encode(), header_value.encode())


def parse_callback(
    params: Mapping[str, str], message_id: str, received_at_ms: int
) -> StatusEvent | None:
    """The status event a StatusCallback carries, or None for interim states."""
    try:
        campaign_id, recipient_id, attempt = parse_message_id(message_id)
    except ValueError as exc:
        raise CallbackError("malformed message id") from exc
    raw_status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
    if raw_status not in _CALLBACK_STATUS:
        raise CallbackError(f"unknown MessageStatus {raw_status[:40]!r}")
    mapped = _CALLBACK_STATUS[raw_status]
    if mapped is None:
        return None
    status, accepted = mapped
    error_code = (params.get("ErrorCode") or "").strip() or None
    return StatusEvent(
        campaign_id=campaign_id,
        recipient_id=recipient_id,
        attempt=attempt,
        channel=Channel.SMS.value,
        status=status,
        occurred_at_ms=received_at_ms,
        source=SOURCE,
        provider_message_id=params.get("MessageSid") or None,
        error_code=error_code,
        error_description=DELIVERY_ERRORS.get(error_code) if error_code else None,
        accepted=accepted,
    )
