"""The simulated Viber send_message endpoint: in-200 statuses, signed delivery callbacks."""

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
from herald.simulator.desk import Desk, json_response, read_json, secret_matches
from herald.simulator.outcomes import viber_outcome

SEND_PATH: Final = "/pa/send_message"
CALLBACK_PATH: Final = "/callbacks/viber"
CHAT_HOSTNAME: Final = "SN-SIM_"
MAX_SENDER_NAME: Final = 28
MAX_TEXT_CHARS: Final = 7000

STATUS_MESSAGES: Final[Mapping[int, str]] = {
    0: "ok",
    2: "invalidAuthToken",
    3: "badData",
    4: "missingData",
    5: "receiverNotRegistered",
    12: "tooManyRequests",
}
STATUS_INVALID_TOKEN: Final = 2
STATUS_BAD_DATA: Final = 3
STATUS_MISSING_DATA: Final = 4
STATUS_TOO_MANY_REQUESTS: Final = 12

_E164: Final = re.compile(r"^\+[1-9]\d{7,14}$")


@dataclass(frozen=True, kw_only=True)
class SendRequest:
    receiver: str
    message_id: str  # tracking_data, or ""


def answer(status: int, **extra: Any) -> dict[str, Any]:
    return {
        "status": status,
        "status_message": STATUS_MESSAGES.get(status, "generalError"),
        "chat_hostname": CHAT_HOSTNAME,
        **extra,
    }


def parse_send(body: object) -> SendRequest | int:
    """The request, or the Viber status that refuses it."""
    if not isinstance(body, dict):
        return STATUS_BAD_DATA
    receiver, text, sender = body.get("receiver"), body.get("text"), body.get("sender")
    if receiver is None or text is None or sender is None or body.get("type") is None:
        return STATUS_MISSING_DATA
    name = sender.get("name") if isinstance(sender, dict) else None
    ok = (
        isinstance(receiver, str)
        and bool(_E164.match(receiver))
        and body.get("type") == "text"
        and isinstance(text, str)
        and 0 < len(text) <= MAX_TEXT_CHARS
        and isinstance(name, str)
        and 0 < len(name) <= MAX_SENDER_NAME
    )
    tracking = body.get("tracking_data", "")
    if not ok or not isinstance(tracking, str):
        return STATUS_BAD_DATA
    assert isinstance(receiver, str)
    return SendRequest(receiver=receiver, message_id=tracking)


def new_message_token() -> int:
    # Viber's tokens are positive 64-bit integers.
    return (uuid.uuid4().int >> 65) or 1


def event_payload(*, event: str, token: int, receiver: str) -> dict[str, Any]:
    """A delivered/seen callback without its timestamp (set when it is posted)."""
    return {
        "event": event,
        "chat_hostname": CHAT_HOSTNAME,
        "message_token": token,
        "user_id": receiver,
    }


def signature(auth_token: str, body: bytes) -> str:
    return hmac.new(auth_token.encode(), body, hashlib.sha256).hexdigest()


def encoder(auth_token: str) -> Encoder:
    """One callback per request, X-Viber-Content-Signature over the raw body."""

    def encode(url: str, group: str, steps: Sequence[Step]) -> tuple[bytes, Mapping[str, str]]:
        (step,) = steps
        body = orjson.dumps({**step.payload, "timestamp": int(time.time() * 1000)})
        headers = {
            "Content-Type": "application/json",
            "X-Viber-Content-Signature": signature(auth_token, body),
        }
        return body, headers

    return encode


class ViberDesk:
    def __init__(self, desk: Desk, *, token: Secret) -> None:
        self._desk = desk
        self._token = token
        self._encode = encoder(token.value)

    async def send(self, request: web.Request) -> web.Response:
        desk, viber = self._desk, Channel.VIBER
        injected = desk.begin(viber)
        if injected is not None:
            headers = desk.retry_after() if injected == 429 else None
            return desk.refuse(viber, injected, {}, headers)
        if not secret_matches(request.headers.get("X-Viber-Auth-Token", ""), self._token):
            return desk.refuse(viber, 200, answer(STATUS_INVALID_TOKEN))
        parsed = parse_send(await read_json(request))
        if isinstance(parsed, int):
            return desk.refuse(viber, 200, answer(parsed))

        message_id = parsed.message_id
        desk.note_duplicate(viber, message_id)
        fault = await desk.fate(viber, message_id or parsed.receiver)
        if fault is Fault.SERVER_ERROR:
            return desk.refuse(viber, 500, {})
        if fault is Fault.RATE_LIMITED:
            # Viber says "too many requests" inside an HTTP 200.
            return desk.refuse(viber, 200, answer(STATUS_TOO_MANY_REQUESTS), desk.retry_after())
        outcome = viber_outcome(parsed.receiver)
        if not outcome.accepted:
            return desk.refuse(viber, 200, answer(int(outcome.error_code or STATUS_BAD_DATA)))

        token = new_message_token()
        desk.accept(viber, message_id, parsed.receiver)
        steps = [
            Step(
                label=event,
                payload=event_payload(event=event, token=token, receiver=parsed.receiver),
                delay_s=desk.step_delay_s(parsed.receiver, delivers=event == "delivered"),
            )
            for event, _ in outcome.callbacks
        ]
        desk.submit(
            viber,
            url=desk.callback_url(CALLBACK_PATH),
            key=message_id or str(token),
            steps=steps,
            encode=self._encode,
        )
        if fault is Fault.TIMEOUT:
            return await desk.hang(viber)
        return json_response(answer(0, message_token=token))
