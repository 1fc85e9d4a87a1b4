"""Email through SendGrid's v3 Mail Send API: the second email transport.

POST /v3/mail/send with a Bearer API key and a JSON body; 202 means SendGrid queued it (not
delivered). Herald's message id travels in `personalizations[].custom_args`, which SendGrid
copies as a top-level field into every Event Webhook event, where providers/email.py's
parse_events finds it. A bad, revoked or under-privileged key (401/403) is an account
problem, not the recipient's: it is retryable, so the provider's breaker holds the account
rather than failing recipient after recipient.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any, Final

import aiohttp
import orjson

from herald.domain.channels import Channel
from herald.providers._http import (
    bearer_authorization,
    client_timeout,
    failure,
    json_object,
    parse_retry_after_s,
    redacted,
    result_from_exception,
    short_text,
)
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.providers.email import FIELD_HERALD_ID
from herald.settings import Secret

MAIL_SEND_PATH: Final = "/v3/mail/send"
HEADER_MESSAGE_ID: Final = "X-Message-Id"
HEADER_RATE_LIMIT_RESET: Final = "X-RateLimit-Reset"

# The key is wrong, revoked, or may not send (mail.send scope, unverified sender identity).
_ACCOUNT_STATUSES: Final = frozenset({401, 403})
# A rate-limit reset further away than this is not waited for inside one retry.
_MAX_RESET_WAIT_S: Final = 3600.0


class SendGridProvider:
    name = "sendgrid"
    channel = Channel.EMAIL

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: Secret,
        timeout_s: float,
        connect_timeout_s: float | None = None,
    ) -> None:
        self._session = session
        self._url = f"{base_url.rstrip('/')}{MAIL_SEND_PATH}"
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Authorization": bearer_authorization(api_key.value),
        }
        self._key = api_key
        self._timeout = client_timeout(timeout_s, connect_timeout_s)

    def __repr__(self) -> str:
        return f"SendGridProvider(url={self._url!r})"

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            body = orjson.dumps(request_body(message))
        except ValueError as exc:
            return failure(ErrorClass.PERMANENT, "invalid_message", short_text(str(exc), "bad"))
        try:
            async with self._session.request(
                "POST",
                self._url,
                data=body,
                timeout=self._timeout,
                # A redirected POST could be sent twice.
                allow_redirects=False,
                headers=self._headers,
            ) as response:
                status = response.status
                headers = {
                    name: value
                    for name in (HEADER_MESSAGE_ID, HEADER_RATE_LIMIT_RESET, "Retry-After")
                    if (value := response.headers.get(name)) is not None
                }
                try:
                    answer = await response.read()
                except (aiohttp.ClientError, TimeoutError):
                    # The status line already says what happened; the body only adds detail.
                    answer = b""
        except (aiohttp.ClientError, TimeoutError) as exc:
            return result_from_exception(exc)
        result = result_from_response(status, answer, headers, now_s=time.time())
        return redacted(result, self._key.value)

    async def close(self) -> None:
        # The session belongs to the caller.
        return None


def _address(value: str, role: str) -> dict[str, str]:
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {role} address cannot contain line breaks")
    name, address = parseaddr(value)
    if "@" not in address:
        raise ValueError(f"not an email address ({role}): {value[:80]!r}")
    return {"email": address, "name": name} if name else {"email": address}


def request_body(message: OutboundMessage) -> dict[str, Any]:
    """The Mail Send body: one personalization, herald's id as its custom arg.

    Raises ValueError for an address that is not one. An empty subject or body is left out
    (SendGrid refuses it with a 400 naming the field, a permanent failure).
    """
    body: dict[str, Any] = {
        "personalizations": [
            {
                "to": [_address(message.to, "to")],
                # Custom args are strings; SendGrid copies them into every event.
                "custom_args": {FIELD_HERALD_ID: message.message_id},
            }
        ],
        "from": _address(message.sender, "from"),
    }
    if message.subject:
        body["subject"] = message.subject
    if message.body:
        body["content"] = [{"type": "text/plain", "value": message.body}]
    return body


def result_from_response(
    status: int, body: bytes, headers: Mapping[str, str], *, now_s: float
) -> SendResult:
    """Classify one answer of /v3/mail/send."""
    if 200 <= status < 300:
        message_id = headers.get(HEADER_MESSAGE_ID) or None
        return SendResult(accepted=True, provider_message_id=message_id)
    data = json_object(body)
    errors = data.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    first = first if isinstance(first, dict) else {}
    message = short_text(first.get("message"), f"HTTP {status}")
    field = first.get("field")
    description = short_text(f"{field}: {message}" if isinstance(field, str) else message, message)
    retry_after_s: float | None = None
    if status == 429:
        error_class = ErrorClass.RATE_LIMITED
        retry_after_s = _reset_wait_s(headers, now_s)
    elif status in _ACCOUNT_STATUSES:
        error_class = ErrorClass.UNAUTHORIZED
    elif status >= 500:
        error_class = ErrorClass.RETRYABLE
    else:
        # 400 (a field SendGrid refuses), 413 (too large), other 4xx: retrying cannot help.
        error_class = ErrorClass.PERMANENT
    return SendResult(
        accepted=False,
        error_class=error_class,
        error_code=str(status),
        error_description=description,
        retry_after_s=retry_after_s,
    )


def _reset_wait_s(headers: Mapping[str, str], now_s: float) -> float | None:
    """Seconds until X-RateLimit-Reset (Unix time), or Retry-After when that is absent."""
    reset = parse_retry_after_s(headers.get(HEADER_RATE_LIMIT_RESET))
    if reset is not None:
        wait_s = reset - now_s
        return max(0.0, wait_s) if wait_s <= _MAX_RESET_WAIT_S else None
    return parse_retry_after_s(headers.get("Retry-After"))
