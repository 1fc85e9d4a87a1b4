"""The simulated Viber bot: send_message with in-200 statuses, signed callbacks, subscribers.

Viber addresses a bot's users by user id, and only users who subscribed can be sent to; the
simulator enforces that as Viber answers it: a receiver it never saw is status 5
(receiverNotRegistered), a user who only opened the conversation or unsubscribed is status 6
(receiverNotSubscribed). Tests make users with POST /_simulator/viber/users: the user opens
the bot through a deep link carrying `context` (a contact id) and, when the phone behind the
account is a Viber user by outcomes.viber_outcome, subscribes; the simulator posts the
signed conversation_started and subscribed callbacks to herald's ingress. A subscribed user's
delivery outcome is the one outcomes.py gives the phone, so tests stay deterministic.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
# The simulator's own control endpoints (not Viber's): make and remove bot users.
USERS_PATH: Final = "/_simulator/viber/users"
USER_PATH: Final = "/_simulator/viber/users/{user_id}"
MAX_RECEIVER_CHARS: Final = 200
CHAT_HOSTNAME: Final = "SN-SIM_"
MAX_SENDER_NAME: Final = 28
MAX_TEXT_CHARS: Final = 7000

STATUS_MESSAGES: Final[Mapping[int, str]] = {
    0: "ok",
    2: "invalidAuthToken",
    3: "badData",
    4: "missingData",
    5: "receiverNotRegistered",
    6: "receiverNotSubscribed",
    12: "tooManyRequests",
}
STATUS_INVALID_TOKEN: Final = 2
STATUS_BAD_DATA: Final = 3
STATUS_MISSING_DATA: Final = 4
STATUS_NOT_REGISTERED: Final = 5
STATUS_NOT_SUBSCRIBED: Final = 6
STATUS_TOO_MANY_REQUESTS: Final = 12


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
        and 0 < len(receiver) <= MAX_RECEIVER_CHARS
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


@dataclass(kw_only=True)
class BotUser:
    phone: str  # the phone behind the Viber account: outcomes.py decides by it
    subscribed: bool


def user_id_for(phone: str) -> str:
    """The Viber user id the simulator gives the account on phone: stable, opaque, and not a
    phone number (Viber's look like "01234567890A=")."""
    return base64.b64encode(hashlib.sha256(f"viber:{phone}".encode()).digest()[:15]).decode()


def new_message_token() -> int:
    # Viber's tokens are positive 64-bit integers.
    return (uuid.uuid4().int >> 65) or 1


def event_payload(
    *, event: str, token: int, receiver: str, desc: str | None = None
) -> dict[str, Any]:
    """A delivered/seen/failed callback without its timestamp (set when it is posted)."""
    payload: dict[str, Any] = {
        "event": event,
        "chat_hostname": CHAT_HOSTNAME,
        "message_token": token,
        "user_id": receiver,
    }
    if event == "failed":
        payload["desc"] = desc or "failed"
    return payload


def user_payload(*, event: str, user_id: str, context: str | None) -> dict[str, Any]:
    """conversation_started or subscribed as Viber posts them (without the timestamp)."""
    user = {"id": user_id, "name": "Simulated User", "country": "US", "language": "en"}
    if event == "subscribed":
        return {
            "event": event,
            "chat_hostname": CHAT_HOSTNAME,
            "user": {**user, "api_version": 10},
            "message_token": new_message_token(),
        }
    payload: dict[str, Any] = {
        "event": event,
        "chat_hostname": CHAT_HOSTNAME,
        "message_token": new_message_token(),
        "type": "open",
        "user": {**user, "api_version": 10},
        "subscribed": False,
    }
    if context is not None:
        payload["context"] = context
    return payload


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


MAX_USERS_PER_REQUEST: Final = 1000


def _user_problem(item: object) -> str | None:
    if not isinstance(item, dict):
        return "a user is a JSON object"
    phone = item.get("phone")
    if not isinstance(phone, str) or not phone:
        return "phone is required"
    if item.get("context") is not None and not isinstance(item.get("context"), str):
        return "context must be a string"
    for flag in ("subscribe", "announce"):
        if item.get(flag) is not None and not isinstance(item.get(flag), bool):
            return f"{flag} must be a boolean"
    return None


class ViberDesk:
    def __init__(self, desk: Desk, *, token: Secret) -> None:
        self._desk = desk
        self._token = token
        self._encode = encoder(token.value)
        self.users: dict[str, BotUser] = {}

    def add_user(
        self,
        phone: str,
        *,
        context: str | None,
        subscribe: bool | None = None,
        announce: bool = True,
    ) -> str:
        """The user on phone opens the bot (through a deep link carrying context) and, when
        subscribe says so (by default: when the phone is a Viber user), subscribes. Posts the
        signed callbacks to herald unless announce is False (a user the bot had already);
        returns the user id."""
        user_id = user_id_for(phone)
        if subscribe is None:
            subscribe = viber_outcome(phone).accepted
        user = self.users.setdefault(user_id, BotUser(phone=phone, subscribed=False))
        user.subscribed = user.subscribed or subscribe
        events = ["conversation_started", *(["subscribed"] if subscribe else [])]
        if not announce:
            return user_id
        self._post(
            user_id,
            [user_payload(event=e, user_id=user_id, context=context) for e in events],
        )
        return user_id

    def remove_user(self, user_id: str) -> bool:
        """The user unsubscribes; Viber posts `unsubscribed`."""
        user = self.users.get(user_id)
        if user is None:
            return False
        user.subscribed = False
        self._post(user_id, [{"event": "unsubscribed", "user_id": user_id}])
        return True

    def _post(self, user_id: str, payloads: list[dict[str, Any]]) -> None:
        desk = self._desk
        steps = [
            Step(label=p["event"], payload=p, delay_s=desk.step_delay_s("", delivers=False))
            for p in payloads
        ]
        desk.submit(
            Channel.VIBER,
            url=desk.callback_url(CALLBACK_PATH),
            key=f"user:{user_id}:{uuid.uuid4().hex}",
            steps=steps,
            encode=self._encode,
        )

    async def users_post(self, request: web.Request) -> web.Response:
        """POST /_simulator/viber/users {"phone", "context"?, "subscribe"?, "announce"?} →
        {"user_id", "subscribed"}; a JSON array of such objects makes many users at once
        (up to MAX_USERS_PER_REQUEST) and answers an array."""
        body = await read_json(request)
        many = isinstance(body, list)
        items = body if isinstance(body, list) else [body]
        if not items or len(items) > MAX_USERS_PER_REQUEST:
            return json_response({"error": "1 to 1000 users per request"}, status=400)
        wanted: list[tuple[str, str | None, bool | None, bool]] = []
        for item in items:
            problem = _user_problem(item)
            if problem:
                return json_response({"error": problem}, status=400)
            assert isinstance(item, dict)
            wanted.append(
                (
                    item["phone"],
                    item.get("context"),
                    item.get("subscribe"),
                    item.get("announce", True),
                )
            )
        made = []
        for phone, context, subscribe, announce in wanted:
            user_id = self.add_user(phone, context=context, subscribe=subscribe, announce=announce)
            made.append({"user_id": user_id, "subscribed": self.users[user_id].subscribed})
        if not many:
            return json_response(made[0], status=201)
        return web.Response(status=201, body=orjson.dumps(made), content_type="application/json")

    async def user_delete(self, request: web.Request) -> web.Response:
        """DELETE /_simulator/viber/users/{user_id}: the user unsubscribes."""
        if not self.remove_user(request.match_info["user_id"]):
            return json_response({"error": "no such user"}, status=404)
        return web.Response(status=204)

    async def send(self, request: web.Request) -> web.Response:
        desk, viber = self._desk, Channel.VIBER
        injected = desk.begin(viber)
        if injected is not None:
            headers = desk.retry_after() if injected == 429 else None
            return desk.refuse(viber, injected, {}, headers)
        body = await read_json(request)
        # Viber takes the token as the X-Viber-Auth-Token header, or in the body as older
        # clients (viberbot 1.0.12) send it.
        given = request.headers.get("X-Viber-Auth-Token", "")
        if not given and isinstance(body, dict) and isinstance(body.get("auth_token"), str):
            given = body["auth_token"]
        if not secret_matches(given, self._token):
            return desk.refuse(viber, 200, answer(STATUS_INVALID_TOKEN))
        parsed = parse_send(body)
        if isinstance(parsed, int):
            return desk.refuse(viber, 200, answer(parsed))
        user = self.users.get(parsed.receiver)
        if user is None or not user.subscribed:
            # Viber: an id it does not know is not registered; a known one not subscribed.
            code = STATUS_NOT_REGISTERED if user is None else STATUS_NOT_SUBSCRIBED
            return desk.refuse(viber, 200, answer(code))
        phone = user.phone

        message_id = parsed.message_id
        desk.note_duplicate(viber, message_id)
        fault = await desk.fate(viber, message_id or parsed.receiver)
        if fault is Fault.SERVER_ERROR:
            return desk.refuse(viber, 500, {})
        if fault is Fault.RATE_LIMITED:
            # Viber says "too many requests" inside an HTTP 200.
            return desk.refuse(viber, 200, answer(STATUS_TOO_MANY_REQUESTS), desk.retry_after())
        outcome = viber_outcome(phone)
        if not outcome.accepted:
            return desk.refuse(viber, 200, answer(int(outcome.error_code or STATUS_BAD_DATA)))

        token = new_message_token()
        desk.accept(viber, message_id, phone)
        steps = [
            Step(
                label=event,
                payload=event_payload(event=event, token=token, receiver=parsed.receiver),
                delay_s=desk.step_delay_s(phone, delivers=event == "delivered"),
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
