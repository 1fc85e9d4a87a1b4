"""The simulated WhatsApp Cloud API: template sends, Meta errors, signed status webhooks.

Every number is accepted (Meta cannot tell a non-user up front); a non-user then fails in a
webhook with 131026. Statuses of one phone number id may share a webhook when batched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from herald.domain.channels import Channel
from herald.settings import Secret
from herald.simulator.behaviour import Fault
from herald.simulator.callbacks import Encoder, Step
from herald.simulator.desk import Desk, bearer_ok, json_response, read_json
from herald.simulator.outcomes import whatsapp_outcome

MESSAGES_PATH: Final = r"/{version:v\d+\.\d+}/{phone_number_id}/messages"
CALLBACK_PATH: Final = "/callbacks/whatsapp"
WABA_ID: Final = "100000000000001"
DISPLAY_NUMBER: Final = "15550000000"

CODE_INVALID_PARAMETER: Final = 100
CODE_INVALID_TOKEN: Final = 190
CODE_RATE_LIMIT: Final = 130429
CODE_UNKNOWN: Final = 131000
CODE_MISSING_PARAMETER: Final = 131008
CODE_UNDELIVERABLE: Final = 131026

_TITLES: Final[Mapping[int, str]] = {
    CODE_INVALID_PARAMETER: "Invalid parameter",
    CODE_INVALID_TOKEN: "Invalid OAuth access token - Cannot parse access token",
    CODE_RATE_LIMIT: "Rate limit hit",
    CODE_UNKNOWN: "Something went wrong",
    CODE_MISSING_PARAMETER: "Required parameter is missing",
    CODE_UNDELIVERABLE: "Message undeliverable",
}
_DIGITS: Final = re.compile(r"^\d{8,15}$")


@dataclass(frozen=True, kw_only=True)
class SendRequest:
    to: str  # digits, as the Cloud API takes them
    message_id: str  # biz_opaque_callback_data, or "" when herald sent none


def meta_error(code: int, details: str | None = None) -> dict[str, Any]:
    title = _TITLES.get(code, "Error")
    return {
        "error": {
            "message": f"(#{code}) {title}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details or title},
            "fbtrace_id": "A" + uuid.uuid4().hex[:22],
        }
    }


def fault_code(status: int) -> int:
    """The Meta error code that goes with an HTTP status the fault hook injects."""
    if status == 429:
        return CODE_RATE_LIMIT
    if status == 401:
        return CODE_INVALID_TOKEN
    return CODE_UNKNOWN if status >= 500 else CODE_INVALID_PARAMETER


def parse_send(body: object) -> SendRequest | tuple[int, str]:
    """The request, or (error code, details) for a body the Cloud API would refuse."""
    if not isinstance(body, dict):
        return CODE_INVALID_PARAMETER, "the body must be a JSON object"
    if body.get("messaging_product") != "whatsapp":
        return CODE_INVALID_PARAMETER, "messaging_product must be whatsapp"
    to = body.get("to")
    if not isinstance(to, str) or not _DIGITS.match(to):
        return CODE_INVALID_PARAMETER, "to must be a phone number in digits"
    kind = body.get("type")
    if kind == "template":
        template = body.get("template")
        language = template.get("language") if isinstance(template, dict) else None
        name = template.get("name") if isinstance(template, dict) else None
        code = language.get("code") if isinstance(language, dict) else None
        if not isinstance(name, str) or not name or not isinstance(code, str) or not code:
            return CODE_MISSING_PARAMETER, "template.name and template.language.code are required"
        components = template.get("components", []) if isinstance(template, dict) else []
        if not isinstance(components, list):
            return CODE_INVALID_PARAMETER, "template.components must be a list"
    elif kind == "text":
        text = body.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str):
            return CODE_MISSING_PARAMETER, "text.body is required"
    else:
        return CODE_INVALID_PARAMETER, "type must be template or text"
    opaque = body.get("biz_opaque_callback_data", "")
    if not isinstance(opaque, str) or len(opaque) > 512:
        return CODE_INVALID_PARAMETER, "biz_opaque_callback_data must be a short string"
    return SendRequest(to=to, message_id=opaque)


def new_wamid() -> str:
    return "wamid.HBgL" + uuid.uuid4().hex.upper()


def send_response(to: str, wamid: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": wamid, "message_status": "accepted"}],
    }


def status_payload(
    *, wamid: str, status: str, to: str, message_id: str, error_code: str | None
) -> dict[str, Any]:
    """One statuses[] entry, without its timestamp (set when it is posted)."""
    payload: dict[str, Any] = {"id": wamid, "status": status, "recipient_id": to}
    if message_id:
        payload["biz_opaque_callback_data"] = message_id
    if status == "failed":
        code = int(error_code or CODE_UNDELIVERABLE)
        title = _TITLES.get(code, "Error")
        payload["errors"] = [
            {
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": title},
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
            }
        ]
    else:
        payload["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "marketing"}
    return payload


def signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def encoder(app_secret: str) -> Encoder:
    """Webhooks carrying one or more statuses of one phone number id, X-Hub-Signature-256."""

    def encode(url: str, group: str, steps: Sequence[Step]) -> tuple[bytes, Mapping[str, str]]:
        now = str(int(time.time()))
        statuses = [{**step.payload, "timestamp": now} for step in steps]
        envelope = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": WABA_ID,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": DISPLAY_NUMBER,
                                    "phone_number_id": group,
                                },
                                "statuses": statuses,
                            },
                        }
                    ],
                }
            ],
        }
        body = orjson.dumps(envelope)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature(app_secret, body),
        }
        return body, headers

    return encode


class WhatsAppDesk:
    def __init__(self, desk: Desk, *, token: Secret, app_secret: Secret) -> None:
        self._desk = desk
        self._token = token
        self._encode = encoder(app_secret.value)

    async def send(self, request: web.Request) -> web.Response:
        desk, wa = self._desk, Channel.WHATSAPP
        injected = desk.begin(wa)
        if injected is not None:
            headers = desk.retry_after() if injected == 429 else None
            return desk.refuse(wa, injected, meta_error(fault_code(injected)), headers)
        if not bearer_ok(request, self._token):
            return desk.refuse(wa, 401, meta_error(CODE_INVALID_TOKEN))
        parsed = parse_send(await read_json(request))
        if isinstance(parsed, tuple):
            code, details = parsed
            return desk.refuse(wa, 400, meta_error(code, details))

        message_id = parsed.message_id
        desk.note_duplicate(wa, message_id)
        fault = await desk.fate(wa, message_id or parsed.to)
        if fault is Fault.SERVER_ERROR:
            return desk.refuse(wa, 500, meta_error(CODE_UNKNOWN))
        if fault is Fault.RATE_LIMITED:
            return desk.refuse(wa, 429, meta_error(CODE_RATE_LIMIT), desk.retry_after())

        phone = "+" + parsed.to
        wamid = new_wamid()
        desk.accept(wa, message_id, phone)
        steps = [
            Step(
                label=status,
                payload=status_payload(
                    wamid=wamid,
                    status=status,
                    to=parsed.to,
                    message_id=message_id,
                    error_code=error_code,
                ),
                delay_s=desk.step_delay_s(phone, delivers=status == "delivered"),
            )
            for status, error_code in whatsapp_outcome(phone).callbacks
        ]
        desk.submit(
            wa,
            url=desk.callback_url(CALLBACK_PATH),
            key=message_id or wamid,
            steps=steps,
            encode=self._encode,
            group=request.match_info["phone_number_id"],
            batched=True,
        )
        if fault is Fault.TIMEOUT:
            return await desk.hang(wa)
        return json_response(send_response(parsed.to, wamid))
