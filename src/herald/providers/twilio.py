"""Twilio Programmable Messaging (SMS): send adapter, callback parsing, request signatures.

The wire format is Twilio's real one, so the same adapter talks to api.twilio.com and to the
local simulator. Classification of answers and errors lives in pure functions so it can be
tested without a network.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import SplitResult, urlencode, urlsplit

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

# Webhook signature schemes (twilio's RequestValidator): the Auth Token with HMAC-SHA1 unless
# a Webhooks Rule signs with a SharedKey, which Twilio names in this header.
HEADER_SIGNATURE: Final = "X-Twilio-Signature"
HEADER_SIGNATURE_SETTINGS: Final = "X-Twilio-Webhooks-Signature-Settings"
HMAC_SHA1: Final = "HMAC_SHA1"
HMAC_SHA256: Final = "HMAC_SHA256"
_HASHES: Final[Mapping[str, str]] = {HMAC_SHA1: "sha1", HMAC_SHA256: "sha256"}
_DEFAULT_PORTS: Final[Mapping[str, int]] = {"https": 443, "http": 80}

# Every value of Twilio's Message status enum (twilio_api_v2010.json message_enum_status)
# → (herald status, did Twilio take the message). None: nothing to fold. A word not in the
# enum is a status Twilio added later: ignored with a reason, never refused (a 4xx makes
# Twilio retry the callback).
_CALLBACK_STATUS: Final[Mapping[str, tuple[RecipientStatus, bool] | None]] = {
    "queued": None,
    "accepted": None,
    "scheduled": None,
    "sending": None,
    # Inbound message states: they never describe one of herald's outbound messages.
    "receiving": None,
    "received": None,
    # Some of the message reached the handset; a later delivered/undelivered decides.
    "partially_delivered": (RecipientStatus.SENT, True),
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
    elif status in (401, 403) or error_code == str(CODE_AUTHENTICATE):
        # The Auth Token was refused: the account is held, no recipient fails for it.
        error_class = ErrorClass.UNAUTHORIZED
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


Params = Mapping[str, str] | Iterable[tuple[str, str]]


def signature(url: str, params: Params, auth_token: str, algorithm: str = HMAC_SHA1) -> str:
    """X-Twilio-Signature: base64 HMAC over the full URL and the sorted POST params.

    As twilio's RequestValidator computes it: keys sorted, a repeated key's distinct values
    sorted, each appended as key + value; HMAC-SHA1 with the Auth Token, or the algorithm a
    SharedKey's X-Twilio-Webhooks-Signature-Settings names. Raises ValueError for another.
    """
    digest = _HASHES.get(algorithm.upper())
    if digest is None:
        raise ValueError(f"unsupported Twilio signature algorithm {algorithm[:40]!r}")
    values: dict[str, set[str]] = {}
    for key, value in params.items() if isinstance(params, Mapping) else params:
        values.setdefault(key, set()).add(value)
    payload = url + "".join(key + value for key in sorted(values) for value in sorted(values[key]))
    mac = hmac.new(auth_token.encode(), payload.encode(), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def signature_algorithm(settings_header: str | None) -> str:
    """The algorithm X-Twilio-Webhooks-Signature-Settings names; HMAC_SHA1 when it names none."""
    for part in (settings_header or "").split(","):
        name, separator, value = part.partition("=")
        if separator and name.strip() == "algorithm" and value.strip():
            return value.strip()
    return HMAC_SHA1


def signed_url_forms(url: str) -> tuple[str, str]:
    """The URL without its port and with it, the two forms Twilio's validator accepts.

    Twilio signs either form (its own validator: "sig generation on back end is
    inconsistent"): with no port in the URL the other form carries the scheme's default
    (:443, :80); with a port, the other form drops it.
    """
    parts = urlsplit(url)
    if parts.port:
        without = _with_netloc(parts, parts.netloc.split(":")[0])
        return without, url
    default = _DEFAULT_PORTS.get(parts.scheme, 80)
    return url, _with_netloc(parts, f"{parts.netloc}:{default}")


def _with_netloc(parts: SplitResult, netloc: str) -> str:
    return parts._replace(netloc=netloc).geturl()


def verify_signature(
    url: str,
    params: Params,
    auth_token: str,
    header_value: str | None,
    *,
    algorithm: str = HMAC_SHA1,
) -> bool:
    """Whether header_value signs this request, over either URL form (see signed_url_forms)."""
    if not header_value or not auth_token or algorithm.upper() not in _HASHES:
        return False
    try:
        forms = signed_url_forms(url)
    except ValueError:
        return False
    pairs = list(params.items() if isinstance(params, Mapping) else params)
    # Compared as sent, like twilio's validator (which strips only its own value).
    given = header_value.encode()
    matches = [
        hmac.compare_digest(signature(form, pairs, auth_token, algorithm).encode(), given)
        for form in forms
    ]
    return any(matches)


def status_word(params: Mapping[str, str]) -> str:
    return (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()


def ignored_reason(params: Mapping[str, str]) -> str | None:
    """Why a StatusCallback folds nothing although it is not an interim state, else None."""
    word = status_word(params)
    if not word:
        return "no MessageStatus"
    if word not in _CALLBACK_STATUS:
        return f"unknown MessageStatus {word[:40]!r}"
    return None


def parse_callback(
    params: Mapping[str, str], message_id: str, received_at_ms: int
) -> StatusEvent | None:
    """The status event a StatusCallback carries, or None when there is nothing to fold:
    an interim state, or a status word Twilio added after herald (see ignored_reason)."""
    try:
        campaign_id, recipient_id, attempt = parse_message_id(message_id)
    except ValueError as exc:
        raise CallbackError("malformed message id") from exc
    raw_status = status_word(params)
    mapped = _CALLBACK_STATUS.get(raw_status)
    if mapped is None:
        # Interim states fold nothing; see ignored_reason for words Twilio added later.
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
