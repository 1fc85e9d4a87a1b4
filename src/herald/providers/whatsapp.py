"""Meta WhatsApp Cloud API: template sends, status webhooks, webhook signatures.

A 200 only means Meta took the message: a number that is not on WhatsApp fails later, in a
`failed` status with 131026. Statuses find their herald message through
`biz_opaque_callback_data`, which herald sets to its message id and Meta echoes back.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
import orjson

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus, StatusEvent, parse_message_id
from herald.providers._http import CallbackError as CallbackError
from herald.providers._http import StatusBatch as StatusBatch
from herald.providers._http import (
    bearer_authorization,
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

SOURCE: Final = "whatsapp"
# Meta retires each Graph API version about two years after its release (v21.0 on
# 2027-01-21); the deployment picks one with HERALD_WHATSAPP_GRAPH_VERSION.
DEFAULT_API_VERSION: Final = "v25.0"
SIGNATURE_PREFIX: Final = "sha256="

CODE_UNDELIVERABLE: Final = 131026
CODE_OUTSIDE_WINDOW: Final = 131047
CODE_ENGAGEMENT_CAP: Final = 131049
CODE_MARKETING_OPT_OUT: Final = 131050

CODE_ACCESS_TOKEN: Final = 190
_RATE_LIMITED: Final = frozenset({4, 80007, 130429, 131048, 131056})
# Not reachable on WhatsApp (or not now): the next channel in the chain may be tried.
_UNREACHABLE: Final = frozenset({CODE_UNDELIVERABLE, CODE_OUTSIDE_WINDOW, CODE_ENGAGEMENT_CAP})
_PERMANENT: Final = frozenset(
    {
        100,
        131008,
        131009,
        132000,
        132001,
        132005,
        132007,
        132012,
        132015,
        132016,
    }
)
# Meta's own trouble (131057: the number is mid throughput upgrade): try again later.
_RETRYABLE: Final = frozenset({1, 2, 131000, 131016, 131057})

# Failed statuses that let herald try the next channel. Template and parameter errors
# (132xxx) never do, and neither does 131050: the user stopped this business's marketing,
# which herald must not route around on another channel.
FALLBACK_CODES: Final = frozenset({CODE_UNDELIVERABLE, CODE_OUTSIDE_WINDOW, CODE_ENGAGEMENT_CAP})

_STATUS: Final[Mapping[str, RecipientStatus]] = {
    "sent": RecipientStatus.SENT,
    "delivered": RecipientStatus.DELIVERED,
    "read": RecipientStatus.READ,
    "failed": RecipientStatus.FAILED,
}


class WhatsAppProvider:
    name = "whatsapp"
    channel = Channel.WHATSAPP

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        phone_number_id: str,
        access_token: Secret,
        api_version: str = DEFAULT_API_VERSION,
        timeout_s: float,
        connect_timeout_s: float | None = None,
    ) -> None:
        self._session = session
        version = graph_version(api_version)
        self._url = f"{base_url.rstrip('/')}/{version}/{phone_number_id}/messages"
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Authorization": bearer_authorization(access_token.value),
        }
        self._token = access_token
        self._timeout = client_timeout(timeout_s, connect_timeout_s)

    def __repr__(self) -> str:
        return f"WhatsAppProvider(url={self._url!r})"

    async def send(self, message: OutboundMessage) -> SendResult:
        if message.template is None:
            # Business-initiated WhatsApp messages must be approved templates.
            return failure(ErrorClass.PERMANENT, "no_template", "WhatsApp needs a template")
        answer = await exchange(
            self._session,
            "POST",
            self._url,
            data=orjson.dumps(request_body(message)),
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


def graph_version(value: str) -> str:
    """The version path segment ("v24.0") from a setting written with or without its "v"."""
    version = value.strip().strip("/")
    if not version:
        return DEFAULT_API_VERSION
    return version if version.startswith("v") else f"v{version}"


def wa_recipient(phone: str) -> str:
    """The Cloud API's `to`: the number's digits with the country code, no '+'."""
    return "".join(ch for ch in phone if ch.isascii() and ch.isdigit())


def request_body(message: OutboundMessage) -> dict[str, Any]:
    """The JSON body of a template send; raises ValueError when the message has no template."""
    template = message.template
    if template is None:
        raise ValueError("a WhatsApp message needs a template")
    payload: dict[str, Any] = {
        "name": template.name,
        "language": {"code": template.language, "policy": "deterministic"},
    }
    if template.components:
        # Omitted when empty: a template without variables takes no components.
        payload["components"] = [dict(component) for component in template.components]
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": wa_recipient(message.to),
        "type": "template",
        "template": payload,
        "biz_opaque_callback_data": message.message_id,
    }


def result_from_response(status: int, body: bytes, retry_after: str | None) -> SendResult:
    """Classify one HTTP answer from the messages endpoint."""
    data = json_object(body)
    if 200 <= status < 300:
        messages = data.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        wamid = first.get("id") if isinstance(first, dict) else None
        return SendResult(
            accepted=True, provider_message_id=wamid if isinstance(wamid, str) and wamid else None
        )

    error = data.get("error")
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    code = code if type(code) is int else None
    error_class = classify_error(status, code)
    details = error.get("error_data")
    description = short_text(
        error.get("message"),
        short_text(details.get("details") if isinstance(details, dict) else None, f"HTTP {status}"),
    )
    return SendResult(
        accepted=False,
        error_class=error_class,
        error_code=str(code) if code is not None else str(status),
        error_description=description,
        retry_after_s=(
            parse_retry_after_s(retry_after) if error_class is ErrorClass.RATE_LIMITED else None
        ),
    )


def classify_error(status: int, code: int | None) -> ErrorClass:
    """The error class of a refused send: Meta's error code first, the HTTP status second."""
    if code in _RATE_LIMITED:
        return ErrorClass.RATE_LIMITED
    if code == CODE_ACCESS_TOKEN or status == 401:
        # The access token expired or was revoked: the account is held, nobody fails for it.
        return ErrorClass.UNAUTHORIZED
    if code in _UNREACHABLE:
        return ErrorClass.UNREACHABLE
    if code == CODE_MARKETING_OPT_OUT:
        return ErrorClass.OPTED_OUT
    if code in _PERMANENT:
        return ErrorClass.PERMANENT
    if code in _RETRYABLE:
        return ErrorClass.RETRYABLE
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status >= 500:
        return ErrorClass.RETRYABLE
    # Any other 4xx (and an unknown code) is bad data or config; retrying cannot help.
    return ErrorClass.PERMANENT


def signature(app_secret: str, body: bytes) -> str:
    """X-Hub-Signature-256: "sha256=" and the hex HMAC-SHA256 of the raw body."""
    return SIGNATURE_PREFIX + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(app_secret: str, body: bytes, header_value: str | None) -> bool:
    if not header_value or not app_secret:
        return False
    scheme, _, given = header_value.strip().partition("=")
    if scheme.strip().lower() != "sha256" or not given:
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.lower().encode())


def verify_challenge(params: Mapping[str, str], verify_token: str) -> str | None:
    """The hub.challenge to echo for a subscribe handshake with the right token, else None."""
    if not verify_token or params.get("hub.mode") != "subscribe":
        return None
    given = params.get("hub.verify_token", "")
    challenge = params.get("hub.challenge", "")
    if not challenge or not hmac.compare_digest(given.encode(), verify_token.encode()):
        return None
    return challenge


def parse_webhook(payload: object, received_at_ms: int) -> StatusBatch:
    """Every message status in a webhook, across all entries and changes.

    Raises CallbackError when the payload is not a WhatsApp webhook. Statuses that do not
    carry a herald message id, or carry a status word herald does not know, are skipped and
    counted in the result's `skipped`. Inbound messages and other fields yield nothing.
    """
    if not isinstance(payload, dict):
        raise CallbackError("webhook must be a JSON object")
    if payload.get("object") != "whatsapp_business_account":
        raise CallbackError("not a whatsapp_business_account webhook")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise CallbackError("entry must be a list")
    batch = StatusBatch()
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            raise CallbackError("entry.changes must be a list")
        for change in changes:
            if not isinstance(change, dict):
                raise CallbackError("a change must be an object")
            value = change.get("value")
            if change.get("field") != "messages" or not isinstance(value, dict):
                continue
            statuses = value.get("statuses", [])
            if not isinstance(statuses, list):
                raise CallbackError("statuses must be a list")
            for raw in statuses:
                event = _status_event(raw, received_at_ms)
                if event is None:
                    batch.skipped += 1
                else:
                    batch.append(event)
    return batch


def _status_event(raw: object, received_at_ms: int) -> StatusEvent | None:
    if not isinstance(raw, dict):
        raise CallbackError("a status must be an object")
    wamid = raw.get("id")
    word = raw.get("status")
    if not isinstance(wamid, str) or not wamid or not isinstance(word, str):
        raise CallbackError("a status needs an id and a status")
    status = _STATUS.get(word.lower())
    opaque = raw.get("biz_opaque_callback_data")
    if status is None or not isinstance(opaque, str):
        return None
    try:
        campaign_id, recipient_id, attempt = parse_message_id(opaque)
    except ValueError:
        # Another system's message on the same number: not herald's to fold.
        return None
    error_code: str | None = None
    error_description: str | None = None
    fallback = False
    if status is RecipientStatus.FAILED:
        error = _first_error(raw.get("errors"))
        code = error.get("code")
        if type(code) is int:
            error_code = str(code)
            fallback = code in FALLBACK_CODES
        error_description = short_text(
            error.get("title"), short_text(error.get("message"), "failed")
        )
    return StatusEvent(
        campaign_id=campaign_id,
        recipient_id=recipient_id,
        attempt=attempt,
        channel=Channel.WHATSAPP.value,
        status=status,
        occurred_at_ms=epoch_ms(raw.get("timestamp"), unit_ms=1000) or received_at_ms,
        source=SOURCE,
        provider_message_id=wamid,
        error_code=error_code,
        error_description=error_description,
        accepted=True,
        fallback=fallback,
    )


def _first_error(errors: object) -> dict[str, Any]:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0]
    return {}
