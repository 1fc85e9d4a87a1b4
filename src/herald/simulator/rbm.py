"""The simulated RBM agentMessages API: create, revoke, signed Pub/Sub push events.

Like RBM, a messageId the agent already used is ignored (answered 200, nothing sent), a
number without RCS is a synchronous 404, and a message can be revoked until it is delivered.
A `ttl` shorter than the delivery delay ends in a TTL_EXPIRATION_REVOKED server event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from herald.domain.channels import Channel
from herald.settings import Secret
from herald.simulator.behaviour import Fault
from herald.simulator.callbacks import Encoder, Step, Track
from herald.simulator.desk import Desk, bearer_ok, json_response, read_json
from herald.simulator.outcomes import Callback, rcs_outcome

MESSAGES_PATH: Final = "/v1/phones/{phone}/agentMessages"
MESSAGE_PATH: Final = "/v1/phones/{phone}/agentMessages/{message_id}"
CALLBACK_PATH: Final = "/callbacks/rbm"
TTL_REVOKED: Final = "TTL_EXPIRATION_REVOKED"

_E164: Final = re.compile(r"^\+[1-9]\d{7,14}$")
_TTL: Final = re.compile(r"^(\d{1,9})(\.\d{1,9})?s$")

GOOGLE_STATUS: Final[Mapping[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_MESSAGES: Final[Mapping[int, str]] = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    404: "Requested entity was not found.",
    429: "Quota exceeded for quota metric 'Agent messages'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}


def rfc3339(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


def google_error(status: int, message: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message or _MESSAGES.get(status, "Error"),
            "status": GOOGLE_STATUS.get(status, "UNKNOWN"),
        }
    }


def is_e164(phone: str) -> bool:
    return bool(_E164.match(phone))


def parse_ttl_s(value: object) -> float | None:
    """Seconds from an AgentMessage `ttl` ("600s", "3.5s"); None when absent or malformed."""
    if not isinstance(value, str):
        return None
    match = _TTL.match(value)
    if match is None:
        return None
    return float(match.group(1) + (match.group(2) or ""))


def agent_message(phone: str, message_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The created AgentMessage, as agentMessages.create echoes it."""
    echo: dict[str, Any] = {
        "name": f"phones/{phone}/agentMessages/{message_id}",
        "sendTime": rfc3339(),
    }
    for key in ("contentMessage", "messageTrafficType", "ttl", "expireTime"):
        if key in body:
            echo[key] = body[key]
    return echo


def user_event(*, phone: str, event_type: str, message_id: str, agent_id: str) -> dict[str, Any]:
    """A UserEvent (DELIVERED, READ) without sendTime, which is set when it is posted."""
    return {
        "senderPhoneNumber": phone,
        "eventType": event_type,
        "eventId": "MxS" + uuid.uuid4().hex[:20],
        "messageId": message_id,
        "agentId": agent_id,
    }


def server_event(*, phone: str, event_type: str, message_id: str, agent_id: str) -> dict[str, Any]:
    """A ServerEvent (TTL_EXPIRATION_REVOKED) without sendTime."""
    return {
        "phoneNumber": phone,
        "eventType": event_type,
        "eventId": "SE" + uuid.uuid4().hex[:20],
        "messageId": message_id,
        "agentId": agent_id,
    }


def step_payload(event: Mapping[str, Any]) -> dict[str, Any]:
    # The Pub/Sub message id is fixed per event: a redelivery repeats it, as Pub/Sub does.
    return {"event": dict(event), "pubsub_id": str(uuid.uuid4().int >> 66)}


def signature(client_token: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(client_token.encode(), data, hashlib.sha512).digest()).decode()


def encoder(client_token: str) -> Encoder:
    """Pub/Sub push bodies, one event each, with X-Goog-Signature over the decoded data."""

    def encode(url: str, group: str, steps: Sequence[Step]) -> tuple[bytes, Mapping[str, str]]:
        (step,) = steps
        now = rfc3339()
        event = {**step.payload["event"], "sendTime": now}
        data = orjson.dumps(event)
        push = {
            "message": {
                "data": base64.b64encode(data).decode("ascii"),
                "messageId": step.payload["pubsub_id"],
                "publishTime": now,
                "attributes": {"product": "RBM", "event_type": event["eventType"]},
            },
            "subscription": f"projects/rbm-{group}/subscriptions/rbm-agent-subscription",
        }
        headers = {
            "Content-Type": "application/json",
            "X-Goog-Signature": signature(client_token, data),
        }
        return orjson.dumps(push), headers

    return encode


class RbmDesk:
    def __init__(self, desk: Desk, *, token: Secret, client_token: Secret) -> None:
        self._desk = desk
        self._token = token
        self._encode = encoder(client_token.value)
        self._tracks: dict[tuple[str, str], Track] = {}  # (agent, messageId) → its callbacks

    async def send(self, request: web.Request) -> web.Response:
        desk, rcs = self._desk, Channel.RCS
        injected = desk.begin(rcs)
        if injected is not None:
            headers = desk.retry_after() if injected == 429 else None
            return desk.refuse(rcs, injected, google_error(injected), headers)
        if not bearer_ok(request, self._token):
            return desk.refuse(rcs, 401, google_error(401))
        phone = request.match_info["phone"]
        message_id = request.query.get("messageId", "")
        agent_id = request.query.get("agentId", "")
        body = await read_json(request)
        if not is_e164(phone) or not message_id or not agent_id:
            message = "phone must be E.164; messageId and agentId are required"
            return desk.refuse(rcs, 400, google_error(400, message))
        if not isinstance(body, dict) or not isinstance(body.get("contentMessage"), dict):
            return desk.refuse(rcs, 400, google_error(400, "contentMessage is required"))

        key = (agent_id, message_id)
        if key in self._tracks:
            desk.stats.channel(rcs).duplicates += 1
        fault = await desk.fate(rcs, message_id)
        if fault is Fault.SERVER_ERROR:
            return desk.refuse(rcs, 500, google_error(500))
        if fault is Fault.RATE_LIMITED:
            return desk.refuse(rcs, 429, google_error(429), desk.retry_after())
        if key not in self._tracks:
            outcome = rcs_outcome(phone)
            if not outcome.accepted:
                return desk.refuse(rcs, outcome.http_status, google_error(outcome.http_status))
            track = self._tracks[key] = Track()
            desk.accept(rcs, "", phone)
            desk.submit(
                rcs,
                url=desk.callback_url(CALLBACK_PATH),
                key=message_id,
                steps=self._steps(phone, message_id, agent_id, outcome.callbacks, body),
                encode=self._encode,
                group=agent_id,
                track=track,
            )
        if fault is Fault.TIMEOUT:
            return await desk.hang(rcs)
        return json_response(agent_message(phone, message_id, body))

    async def revoke(self, request: web.Request) -> web.Response:
        if not bearer_ok(request, self._token):
            return json_response(google_error(401), status=401)
        key = (request.query.get("agentId", ""), request.match_info["message_id"])
        track = self._tracks.get(key)
        if track is None or track.settled or track.cancelled:
            self._desk.stats.revoke_too_late += 1
            return json_response(google_error(404), status=404)
        track.cancelled = True
        self._desk.stats.revoked += 1
        return json_response({})

    def _steps(
        self,
        phone: str,
        message_id: str,
        agent_id: str,
        callbacks: tuple[Callback, ...],
        body: Mapping[str, Any],
    ) -> list[Step]:
        ttl_s = parse_ttl_s(body.get("ttl"))
        if ttl_s is not None and ttl_s < self._desk.step_delay_s(phone, delivers=True):
            # Not delivered within its time to live: RBM revokes it and says so.
            event = server_event(
                phone=phone, event_type=TTL_REVOKED, message_id=message_id, agent_id=agent_id
            )
            return [
                Step(label=TTL_REVOKED, payload=step_payload(event), delay_s=ttl_s, settles=True)
            ]
        steps = []
        for event_type, _ in callbacks:
            event = user_event(
                phone=phone, event_type=event_type, message_id=message_id, agent_id=agent_id
            )
            delivers = event_type == "DELIVERED"
            steps.append(
                Step(
                    label=event_type,
                    payload=step_payload(event),
                    delay_s=self._desk.step_delay_s(phone, delivers=delivers),
                    settles=delivers,
                )
            )
        return steps
