"""Email, against SendGrid's own artifacts: sendgrid 6.12's EventWebhook verifier, the v3 Mail
Send operation of SendGrid's OpenAPI (fixtures/sendgrid/mail_send.json, an excerpt of
twilio/sendgrid-oai spec/json/tsg_mail_v3.json with its commit named inside) and the Event
Webhook reference's event examples (fixtures/sendgrid/events.json, source URLs inside).

Herald's id reaches SendGrid's events only the documented ways: X-SMTPAPI unique_args on SMTP,
personalizations[].custom_args on the v3 API; the simulator's events carry nothing else."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook  # type: ignore[import-untyped]

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus
from herald.providers import email as smtp_email
from herald.providers import sendgrid
from herald.providers.base import ErrorClass, OutboundMessage
from herald.providers.registry import build_one, default_kinds
from herald.settings import Secret, Settings
from herald.simulator import devkeys
from herald.simulator.app import Simulator
from herald.simulator.callbacks import Step
from herald.simulator.sendgrid import (
    Recipient,
    encoder,
    event_steps,
    parse_send,
    sendgrid_error,
)
from herald.simulator.smtp import SmtpSimulator
from tests.contract.recording import Recorder, serving

FIXTURES = Path(__file__).parent / "fixtures" / "sendgrid"
MAIL_SEND = json.loads((FIXTURES / "mail_send.json").read_text())
EVENTS = json.loads((FIXTURES / "events.json").read_text())
API_KEY = "SG.test-key.0123456789abcdef"
# Fields SendGrid itself puts in events (Event Webhook reference); anything else must have
# come from the send's unique_args / custom_args.
SENDGRID_FIELDS = frozenset(
    {
        "email",
        "timestamp",
        "smtp-id",
        "event",
        "category",
        "sg_event_id",
        "sg_message_id",
        "response",
        "attempt",
        "reason",
        "status",
        "type",
        "bounce_classification",
        "useragent",
        "ip",
        "sg_machine_open",
        "url",
        "tls",
        "cert_err",
        "pool",
        "asm_group_id",
        "marketing_campaign_id",
        "marketing_campaign_name",
    }
)


def message(to: str = "ada@example.com", mid: str = "camp-1.7.1") -> OutboundMessage:
    return OutboundMessage(
        message_id=mid,
        channel=Channel.EMAIL,
        to=to,
        sender="Herald <news@herald.example>",
        body="Spring sale: 20% off\n",
        callback_url="",
        subject="Spring sale",
    )


def key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


# -- signatures, both directions ---------------------------------------------------------


def test_sendgrid_verifies_what_the_simulator_signs() -> None:
    private, public = key_pair()
    steps = [
        Step(label=e["event"], payload=e, delay_s=0)
        for e in event_steps(Recipient(email="ada@example.com", custom_args={}), "x.filter0001.0")
    ]
    body, headers = encoder(private)("https://h/callbacks/email", "sendgrid", steps)
    verifier = EventWebhook(public)
    assert verifier.verify_signature(
        body.decode(),
        headers[smtp_email.HEADER_SIGNATURE],
        headers[smtp_email.HEADER_TIMESTAMP],
    )
    assert not verifier.verify_signature(
        body.decode() + " ",
        headers[smtp_email.HEADER_SIGNATURE],
        headers[smtp_email.HEADER_TIMESTAMP],
    )


def test_sendgrid_verifies_the_development_key_signatures() -> None:
    # The simulator's fixed development key is what herald's development ingress trusts.
    private = serialization.load_pem_private_key(devkeys.private_key_pem(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    body, headers = encoder(private)("https://h", "sendgrid", [])
    assert EventWebhook(devkeys.public_key()).verify_signature(
        body.decode(), headers[smtp_email.HEADER_SIGNATURE], headers[smtp_email.HEADER_TIMESTAMP]
    )


def test_herald_verifies_what_eventwebhook_compatible_signing_produces() -> None:
    # SendGrid signs timestamp + payload with ECDSA P-256 / SHA-256, base64 DER; the SDK's
    # verify_signature is the reference for what is signed.
    private, public = key_pair()
    body = json.dumps(list(EVENTS["events"].values())).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(
        private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    ).decode()
    assert EventWebhook(public).verify_signature(body.decode(), signature, stamp)
    assert smtp_email.verify_signature(public, stamp, body, signature, now_s=time.time())
    assert not smtp_email.verify_signature(public, stamp, body + b" ", signature, now_s=time.time())
    _, other = key_pair()
    assert not smtp_email.verify_signature(other, stamp, body, signature, now_s=time.time())


# -- documented events -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("processed", RecipientStatus.SENT),
        ("delivered", RecipientStatus.DELIVERED),
        ("open", RecipientStatus.READ),
        ("bounce", RecipientStatus.FAILED),
        ("blocked", RecipientStatus.FAILED),
        ("dropped", RecipientStatus.FAILED),
    ],
)
def test_documented_events_are_matched_on_the_custom_arg(
    name: str, expected: RecipientStatus
) -> None:
    (event,) = smtp_email.parse_events([EVENTS["events"][name]], 1_700_000_000_000)
    assert (event.campaign_id, event.recipient_id, event.attempt) == ("camp-1", 7, 1)
    assert event.status is expected


def test_bounce_codes_decide_fallback() -> None:
    (hard,) = smtp_email.parse_events([EVENTS["events"]["bounce"]], 1_700_000_000_000)
    (blocked,) = smtp_email.parse_events([EVENTS["events"]["blocked"]], 1_700_000_000_000)
    (dropped,) = smtp_email.parse_events([EVENTS["events"]["dropped"]], 1_700_000_000_000)
    assert (hard.error_code, hard.fallback) == ("5.1.1", True)
    assert (blocked.error_code, blocked.fallback) == ("5.7.1", False)
    assert (dropped.error_code, dropped.accepted, dropped.fallback) == ("dropped", False, False)


def test_a_deferral_folds_nothing_and_a_batch_parses_whole() -> None:
    batch = smtp_email.parse_events(list(EVENTS["events"].values()), 1_700_000_000_000)
    assert len(batch) == len(EVENTS["events"]) - 1  # deferred: SendGrid retries it
    assert batch.skipped == 0


def test_events_without_the_custom_arg_are_skipped() -> None:
    bare = {k: v for k, v in EVENTS["events"]["delivered"].items() if k != "herald_message_id"}
    batch = smtp_email.parse_events([bare], 1)
    assert list(batch) == [] and batch.skipped == 1


# -- SMTP: X-SMTPAPI unique_args ---------------------------------------------------------


def test_smtp_message_carries_unique_args_and_keeps_message_id() -> None:
    parsed = email.message_from_bytes(
        smtp_email.build_message(message()), policy=email.policy.default
    )
    assert parsed["Message-ID"] == "<camp-1.7.1@herald>"
    header = json.loads(str(parsed[smtp_email.HEADER_SMTPAPI]))
    assert header == {"unique_args": {"herald_message_id": "camp-1.7.1"}}


@dataclass(kw_only=True)
class Inbox:
    bodies: list[bytes] = field(default_factory=list)
    signed: list[tuple[str, str]] = field(default_factory=list)  # (signature, timestamp)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.signed.append(
            (
                request.headers.get(smtp_email.HEADER_SIGNATURE, ""),
                request.headers.get(smtp_email.HEADER_TIMESTAMP, ""),
            )
        )
        return web.Response(status=204)

    def events(self) -> list[dict[str, Any]]:
        return [event for body in self.bodies for event in orjson.loads(body)]


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[Inbox, str]]:
    box = Inbox()
    app = web.Application()
    app.router.add_post("/callbacks/email", box.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield box, f"http://127.0.0.1:{runner.addresses[0][1]}/callbacks/email"
    finally:
        await runner.cleanup()


async def test_smtp_simulator_events_carry_only_what_sendgrid_carries(
    inbox: tuple[Inbox, str],
) -> None:
    box, url = inbox
    async with SmtpSimulator(host="127.0.0.1", port=0, events_url=url) as sim:
        provider = smtp_email.SmtpEmailProvider(
            host="127.0.0.1", port=sim.port, username=None, password=None, timeout_s=5.0
        )
        try:
            assert (await provider.send(message("ada.open@example.com"))).accepted
        finally:
            await provider.close()
        assert await sim.wait_idle(5.0)
    events = box.events()
    assert [e["event"] for e in events] == ["processed", "delivered", "open"]
    for event in events:
        assert set(event) - SENDGRID_FIELDS == {"herald_message_id"}
        assert event["herald_message_id"] == "camp-1.7.1"


# -- SMTP replies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text", "error_class"),
    [
        (421, "4.7.0 Try again later", ErrorClass.RETRYABLE),
        (451, "4.3.0 Temporary failure", ErrorClass.RETRYABLE),
        (550, "5.1.1 User unknown", ErrorClass.UNREACHABLE),
        (550, "5.7.1 Message rejected due to policy", ErrorClass.PERMANENT),
        (552, "5.3.4 Message too big", ErrorClass.PERMANENT),
        (554, "Transaction failed", ErrorClass.PERMANENT),
    ],
)
def test_smtp_4xx_5xx_are_classified(code: int, text: str, error_class: ErrorClass) -> None:
    result = smtp_email.result_from_smtp(code, text, True)
    assert not result.accepted
    assert result.error_class is error_class


# -- the v3 Mail Send request ------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder(status=202, headers={"X-Message-Id": "14c5d75ce93dfd64"})
    async with serving(recorder.handle) as url:
        yield recorder, url


async def send(base_url: str) -> Any:
    settings = Settings.development(
        email_transport="sendgrid", sendgrid_base_url=base_url, sendgrid_api_key=Secret(API_KEY)
    )
    assert default_kinds(settings)[Channel.EMAIL] == "sendgrid"
    async with aiohttp.ClientSession() as session:
        provider = build_one(
            "sendgrid", settings=settings, session=session, base_url="", options={}, secret=None
        )
        assert isinstance(provider, sendgrid.SendGridProvider)
        return await provider.send(message())


async def test_mail_send_request_matches_the_openapi_operation(
    server: tuple[Recorder, str],
) -> None:
    recorder, base_url = server
    result = await send(base_url)
    assert result.accepted
    assert result.provider_message_id == "14c5d75ce93dfd64"
    ((request, raw),) = recorder.requests
    assert request.method == MAIL_SEND["method"].upper()
    assert request.path == MAIL_SEND["path"]
    assert MAIL_SEND["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    (content_type,) = MAIL_SEND["request_content_types"]
    assert request.content_type == content_type
    body = orjson.loads(raw)
    jsonschema.validate(body, MAIL_SEND["request_schema"])
    assert "202" in MAIL_SEND["response_status_codes"]
    # How herald's message id travels: a personalization's custom_args (string values).
    (personalization,) = body["personalizations"]
    assert personalization["custom_args"] == {"herald_message_id": "camp-1.7.1"}
    # The simulator takes the same body.
    (recipient,) = parse_send(body)  # type: ignore[misc]
    assert recipient.custom_args == {"herald_message_id": "camp-1.7.1"}


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, ErrorClass.PERMANENT),
        (401, ErrorClass.UNAUTHORIZED),  # the key: hold the account, fail no recipient
        (403, ErrorClass.UNAUTHORIZED),
        (413, ErrorClass.PERMANENT),
        (429, ErrorClass.RATE_LIMITED),
        (500, ErrorClass.RETRYABLE),
    ],
)
async def test_documented_error_answers_are_classified(
    server: tuple[Recorder, str], status: int, error_class: ErrorClass
) -> None:
    recorder, base_url = server
    recorder.status = status
    # The simulator's error body, checked against the documented ErrorResponse.
    error = sendgrid_error("Does not contain a valid address.", "personalizations.0.to.0.email")
    jsonschema.validate(error, MAIL_SEND["error_response_schema"])
    recorder.body = orjson.dumps(error)
    recorder.headers = {"X-RateLimit-Reset": str(int(time.time()) + 30)}
    result = await send(base_url)
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code == str(status)
    if status == 429:
        assert result.retry_after_s is not None and 0 < result.retry_after_s <= 30


def test_simulator_sendgrid_events_carry_only_custom_args() -> None:
    recipient = Recipient(email="ada.open@example.com", custom_args={"herald_message_id": "c.1.1"})
    for event in event_steps(recipient, "x.filter0001.0"):
        assert set(event) - SENDGRID_FIELDS == {"herald_message_id"}


async def test_simulator_mail_send_round_trip(inbox: tuple[Inbox, str]) -> None:
    box, url = inbox
    simulator = Simulator(
        host="127.0.0.1",
        port=0,
        account_sid="AC" + "0" * 32,
        auth_token=Secret("t"),
        sendgrid_api_key=Secret(API_KEY),
        callback_base_url=url.removesuffix("/callbacks/email"),
    )
    async with simulator:
        async with aiohttp.ClientSession() as session:
            provider = sendgrid.SendGridProvider(
                session=session, base_url=simulator.base_url, api_key=Secret(API_KEY), timeout_s=5
            )
            assert (await provider.send(message("ada.open@example.com"))).accepted
            assert (await provider.send(message("bounce@example.com", "camp-1.8.1"))).accepted
            wrong = sendgrid.SendGridProvider(
                session=session, base_url=simulator.base_url, api_key=Secret("x"), timeout_s=5
            )
            refused = await wrong.send(message())
            assert (refused.error_class, refused.error_code) == (ErrorClass.UNAUTHORIZED, "401")
        assert await simulator.wait_idle(5.0)
    verifier = EventWebhook(devkeys.public_key())
    for body, (signature, stamp) in zip(box.bodies, box.signed, strict=True):
        assert verifier.verify_signature(body.decode(), signature, stamp)
    events = box.events()
    for event in events:
        assert set(event) - SENDGRID_FIELDS == {"herald_message_id"}
    parsed = smtp_email.parse_events(events, int(time.time() * 1000))
    assert sorted((e.recipient_id, e.status) for e in parsed) == sorted(
        [
            (7, RecipientStatus.SENT),
            (7, RecipientStatus.DELIVERED),
            (7, RecipientStatus.READ),
            (8, RecipientStatus.SENT),
            (8, RecipientStatus.FAILED),
        ]
    )
