"""The simulated SendGrid v3 Mail Send API and its signed Event Webhook.

POST /v3/mail/send takes a Bearer API key and the documented JSON body, answers 202 with an
X-Message-Id header, then posts events for each recipient the way SendGrid's Event Webhook
does: JSON arrays signed with ECDSA P-256 over timestamp + body. An event carries SendGrid's
own fields and the send's custom_args flattened in, and nothing else: no herald field that
custom_args did not carry. The address's local part picks the outcome as on the simulator's
SMTP server (reject and bounce bounce with 5.1.1, tempfail is deferred once, open opens).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from herald.constants import PATH_CALLBACK_EMAIL
from herald.domain.channels import Channel
from herald.providers.email import FIELD_HERALD_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP
from herald.settings import Secret
from herald.simulator.behaviour import Fault
from herald.simulator.callbacks import Encoder, Step
from herald.simulator.desk import Desk, bearer_ok, read_json
from herald.simulator.smtp import (
    BOUNCE_REASON,
    BOUNCE_STATUS,
    TEMPFAIL_REPLY,
    AddressBehaviour,
    email_outcome,
    sign_events,
)

MAIL_SEND_PATH: Final = "/v3/mail/send"
DEV_API_KEY: Final = "herald-dev-sendgrid-key"
MAX_PERSONALIZATIONS: Final = 1000
MAX_CUSTOM_ARGS_BYTES: Final = 10_000
GROUP: Final = "sendgrid"

_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, kw_only=True)
class Recipient:
    email: str
    custom_args: Mapping[str, str]


def sendgrid_error(message: str, field: str | None = None) -> dict[str, Any]:
    """The documented ErrorResponse: errors[] of message, field (null when none)."""
    return {"errors": [{"message": message, "field": field}]}


def _custom_args(value: object, field: str) -> dict[str, str] | str:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return f"{field} must be an object of string values"
    return dict(value)


def parse_send(body: object) -> list[Recipient] | tuple[str, str]:
    """The recipients with their merged custom_args, or (message, field) for a 400."""
    if not isinstance(body, dict):
        return "Bad Request", ""
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return "The personalizations field is required.", "personalizations"
    if len(personalizations) > MAX_PERSONALIZATIONS:
        return "Too many personalizations.", "personalizations"
    sender = body.get("from")
    if not isinstance(sender, dict) or not _EMAIL.match(str(sender.get("email", ""))):
        return "The from object must be provided for every email send.", "from.email"
    top_args = _custom_args(body.get("custom_args"), "custom_args")
    if isinstance(top_args, str):
        return top_args, "custom_args"
    content = body.get("content")
    if not isinstance(content, list) or not content:
        return "Unless a valid template_id is provided, the content parameter is required.", (
            "content"
        )
    for index, part in enumerate(content):
        if (
            not isinstance(part, dict)
            or not isinstance(part.get("type"), str)
            or not isinstance(part.get("value"), str)
            or not part["value"]
        ):
            return "The content value must be a string at least one character.", (
                f"content.{index}.value"
            )
    recipients: list[Recipient] = []
    for index, personalization in enumerate(personalizations):
        where = f"personalizations.{index}"
        if not isinstance(personalization, dict):
            return "Bad Request", where
        subject = personalization.get("subject", body.get("subject"))
        if not isinstance(subject, str) or not subject:
            return "The subject is required.", "subject"
        to = personalization.get("to")
        if not isinstance(to, list) or not to:
            return "The to array is required for all personalization objects.", f"{where}.to"
        args = _custom_args(personalization.get("custom_args"), f"{where}.custom_args")
        if isinstance(args, str):
            return args, f"{where}.custom_args"
        merged = {**top_args, **args}
        if len(orjson.dumps(merged)) > MAX_CUSTOM_ARGS_BYTES:
            return "custom_args may not exceed 10,000 bytes.", f"{where}.custom_args"
        for position, address in enumerate(to):
            email = address.get("email") if isinstance(address, dict) else None
            if not isinstance(email, str) or not _EMAIL.match(email):
                return "Does not contain a valid address.", f"{where}.to.{position}.email"
            recipients.append(Recipient(email=email, custom_args=merged))
    return recipients


def event_steps(recipient: Recipient, sg_message_id: str) -> list[dict[str, Any]]:
    """The events SendGrid would post for one recipient, in order, without timestamps."""
    outcome = email_outcome(recipient.email)
    base: dict[str, Any] = {
        # Custom args first: SendGrid's own fields win a name clash.
        **recipient.custom_args,
        "email": recipient.email,
        "sg_message_id": sg_message_id,
        "smtp-id": f"<{sg_message_id}@geopod-ismtpd-0>",
    }
    events: list[dict[str, Any]] = [{**base, "event": "processed"}]
    if outcome.behaviour in (AddressBehaviour.REJECT, AddressBehaviour.BOUNCE):
        events.append(
            {
                **base,
                "event": "bounce",
                "type": "bounce",
                "status": BOUNCE_STATUS,
                "reason": BOUNCE_REASON,
                "bounce_classification": "Invalid Address",
            }
        )
        return events
    if outcome.behaviour is AddressBehaviour.TEMPFAIL:
        events.append({**base, "event": "deferred", "response": TEMPFAIL_REPLY, "attempt": "1"})
    events.append({**base, "event": "delivered", "response": "250 OK"})
    if outcome.opens:
        events.append(
            {**base, "event": "open", "useragent": "herald-simulator", "sg_machine_open": False}
        )
    return events


def encoder(private_key: ec.EllipticCurvePrivateKey) -> Encoder:
    """Event Webhook posts: a JSON array of events, signed over timestamp + body."""

    def encode(url: str, group: str, steps: Sequence[Step]) -> tuple[bytes, Mapping[str, str]]:
        now = int(time.time())
        body = orjson.dumps(
            [{**step.payload, "timestamp": now, "sg_event_id": uuid.uuid4().hex} for step in steps]
        )
        stamp = str(now)
        headers = {
            "Content-Type": "application/json",
            HEADER_TIMESTAMP: stamp,
            HEADER_SIGNATURE: sign_events(private_key, stamp, body),
        }
        return body, headers

    return encode


class SendGridDesk:
    def __init__(
        self, desk: Desk, *, api_key: Secret, private_key: ec.EllipticCurvePrivateKey
    ) -> None:
        self._desk = desk
        self._api_key = api_key
        self._encode = encoder(private_key)

    async def send(self, request: web.Request) -> web.Response:
        desk, email = self._desk, Channel.EMAIL
        injected = desk.begin(email)
        if injected is not None:
            headers = desk.retry_after() if injected == 429 else None
            return desk.refuse(email, injected, sendgrid_error("injected fault"), headers)
        if not bearer_ok(request, self._api_key):
            return desk.refuse(
                email,
                401,
                sendgrid_error("The provided authorization grant is invalid, expired, or revoked"),
            )
        parsed = parse_send(await read_json(request))
        if isinstance(parsed, tuple):
            message, field = parsed
            return desk.refuse(email, 400, sendgrid_error(message, field or None))

        first = parsed[0]
        key = first.custom_args.get(FIELD_HERALD_ID, "") or first.email
        desk.note_duplicate(email, first.custom_args.get(FIELD_HERALD_ID, ""))
        fault = await desk.fate(email, key)
        if fault is Fault.SERVER_ERROR:
            return desk.refuse(email, 500, sendgrid_error("Internal Server Error"))
        if fault is Fault.RATE_LIMITED:
            reset = str(int(time.time() + self._desk.behaviour.retry_after_s))
            headers = {"X-RateLimit-Reset": reset, **desk.retry_after()}
            return desk.refuse(email, 429, sendgrid_error("too many requests"), headers)

        x_message_id = uuid.uuid4().hex[:22]
        for index, recipient in enumerate(parsed):
            message_id = recipient.custom_args.get(FIELD_HERALD_ID, "")
            desk.accept(email, message_id, recipient.email)
            sg_message_id = f"{x_message_id}.filter0001.{index}"
            steps = [
                Step(
                    label=str(event["event"]),
                    payload=event,
                    delay_s=desk.step_delay_s(
                        recipient.email, delivers=event["event"] == "delivered"
                    ),
                )
                for event in event_steps(recipient, sg_message_id)
            ]
            desk.submit(
                email,
                url=desk.callback_url(PATH_CALLBACK_EMAIL),
                key=message_id or sg_message_id,
                steps=steps,
                encode=self._encode,
                group=GROUP,
                batched=True,
            )
        if fault is Fault.TIMEOUT:
            return await desk.hang(email)
        return web.Response(status=202, headers={"X-Message-Id": x_message_id})
