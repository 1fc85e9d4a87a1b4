"""The simulated Twilio Messages endpoint: validation, error bodies, signed StatusCallbacks."""

from __future__ import annotations

import base64
import binascii
import email.utils
import hmac
import re
import urllib.parse
import uuid
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web
from yarl import URL

from herald.domain.channels import Channel
from herald.domain.sms import num_segments as num_segments  # re-exported for the simulator
from herald.providers.twilio import API_VERSION, signature, signed_url_forms
from herald.settings import Secret
from herald.simulator.behaviour import Fault
from herald.simulator.callbacks import Encoder, Step
from herald.simulator.desk import Desk, json_response
from herald.simulator.outcomes import sms_outcome

MESSAGES_PATH: Final = f"/{API_VERSION}/Accounts/{{sid}}/Messages.json"
MAX_BODY_CHARS: Final = 1600

_E164: Final = re.compile(r"^\+\d{8,15}$")

_ERROR_MESSAGES: Final[Mapping[int, str]] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21609: "Invalid StatusCallback URL.",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}


# GSM 03.38 default alphabet and its extension table (extension characters cost two septets).
def twilio_error(status: int, code: int, message: str | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "message": message or _ERROR_MESSAGES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def fault_code(status: int) -> int:
    """The Twilio error code that goes with an HTTP status the fault hook injects."""
    return {401: 20003}.get(status, 20000 + status)


def parse_basic_authorization(header: str | None) -> tuple[str, str] | None:
    """(login, password) from a Basic Authorization header; None when absent or malformed."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, colon, password = decoded.partition(":")
    return (login, password) if colon else None


def is_callback_url(url: str) -> bool:
    try:
        parsed = URL(url, encoded=True)
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def herald_id(callback_url: str) -> str:
    """Herald's message id: the `m` query parameter of its StatusCallback URL, or ""."""
    if not callback_url:
        return ""
    try:
        return URL(callback_url, encoded=True).query.get("m", "")
    except ValueError:
        return ""


def message_resource(
    *, account_sid: str, sid: str, to: str, sender: str, body: str
) -> dict[str, Any]:
    now = email.utils.format_datetime(datetime.now(UTC))
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": sender,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": str(num_segments(body)),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": to,
        "uri": f"{uri}.json",
    }


def callback_params(
    *, account_sid: str, sid: str, to: str, sender: str, status: str, error_code: str | None
) -> dict[str, str]:
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": account_sid,
        "From": sender,
        "To": to,
        "ApiVersion": API_VERSION,
    }
    if error_code is not None:
        params["ErrorCode"] = error_code
    return params


def signed_url(url: str) -> str:
    """The URL form a callback's signature covers: Twilio signs either, with or without the
    scheme's default port (its validator checks both); picked per URL so runs repeat."""
    try:
        forms = signed_url_forms(url)
    except ValueError:
        return url
    return forms[zlib.crc32(url.encode()) % 2]


def encoder(auth_token: str) -> Encoder:
    """Form-encoded StatusCallbacks signed with X-Twilio-Signature (one status per request)."""

    def encode(url: str, group: str, steps: Sequence[Step]) -> tuple[bytes, Mapping[str, str]]:
        (step,) = steps
        params: Mapping[str, str] = step.payload["params"]
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature(signed_url(url), params, auth_token),
            # Same token on every retry of one callback, like Twilio's.
            "I-Twilio-Idempotency-Token": step.payload["token"],
            "User-Agent": "TwilioProxy/1.1",
        }
        return urllib.parse.urlencode(params).encode(), headers

    return encode


class TwilioDesk:
    def __init__(self, desk: Desk, *, account_sid: str, auth_token: Secret) -> None:
        self._desk = desk
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._encode = encoder(auth_token.value)

    async def send(self, request: web.Request) -> web.Response:
        desk, sms = self._desk, Channel.SMS
        injected = desk.begin(sms)
        if injected is not None:
            headers = desk.retry_after() if injected == 429 else None
            return self._refuse(injected, fault_code(injected), headers=headers)
        if not self._authorized(request.headers.get("Authorization")):
            return self._refuse(
                401, 20003, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        if request.match_info["sid"] != self._account_sid:
            return self._refuse(404, 20404)

        form = await request.post()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        to = fields.get("To", "")
        desk.arrived(to)
        sender = fields.get("From", "")
        body = fields.get("Body", "")
        callback_url = fields.get("StatusCallback", "")
        if not _E164.match(to):
            return self._refuse(
                400, 21211, f"The 'To' number {to[:32]} is not a valid phone number."
            )
        if not sender:
            return self._refuse(400, 21603)
        if not body:
            return self._refuse(400, 21602)
        if len(body) > MAX_BODY_CHARS:
            return self._refuse(400, 21617)
        if callback_url and not is_callback_url(callback_url):
            return self._refuse(400, 21609)

        message_id = herald_id(callback_url)
        desk.note_duplicate(sms, message_id)
        fault = await desk.fate(sms, message_id or to)
        if fault is Fault.SERVER_ERROR:
            return self._refuse(500, 20500)
        if fault is Fault.RATE_LIMITED:
            return self._refuse(429, 20429, headers=desk.retry_after())
        outcome = sms_outcome(to)
        if not outcome.accepted:
            return self._refuse(outcome.http_status, outcome.error_code or 21211)

        sid = "SM" + uuid.uuid4().hex
        desk.accept(sms, message_id, to)
        steps = [
            Step(
                label=status,
                payload={
                    "params": callback_params(
                        account_sid=self._account_sid,
                        sid=sid,
                        to=to,
                        sender=sender,
                        status=status,
                        error_code=error_code,
                    ),
                    "token": f"{self._account_sid}-{uuid.uuid4().hex}",
                },
                delay_s=desk.step_delay_s(to, delivers=status == "delivered"),
            )
            for status, error_code in outcome.callbacks
        ]
        desk.submit(sms, url=callback_url, key=message_id or sid, steps=steps, encode=self._encode)
        if fault is Fault.TIMEOUT:
            return await desk.hang(sms)
        resource = message_resource(
            account_sid=self._account_sid, sid=sid, to=to, sender=sender, body=body
        )
        return json_response(resource, status=201)

    def _authorized(self, header: str | None) -> bool:
        credentials = parse_basic_authorization(header)
        if credentials is None:
            return False
        login, password = credentials
        sid_ok = hmac.compare_digest(login.encode(), self._account_sid.encode())
        token_ok = hmac.compare_digest(password.encode(), self._auth_token.value.encode())
        return sid_ok and token_ok

    def _refuse(
        self,
        status: int,
        code: int,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        body = twilio_error(status, code, message)
        return self._desk.refuse(Channel.SMS, status, body, headers)
