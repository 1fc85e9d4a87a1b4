"""WhatsApp Cloud API, against Meta's documented contract: the status webhook payloads and error
answers of Meta's reference pages (fixtures under tests/contract/fixtures/whatsapp/, each with
its source URL), X-Hub-Signature-256 as Meta documents it, the template send's documented
shape, and the Graph API version in the path. Meta ships no Python SDK, so the signature oracle
is the documented rule itself: "sha256=" + hex HMAC-SHA256(app secret, raw body)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus
from herald.providers import whatsapp
from herald.providers.base import ErrorClass, OutboundMessage, WhatsAppTemplate
from herald.providers.registry import build_one
from herald.settings import Secret, Settings
from herald.simulator.callbacks import Step
from herald.simulator.whatsapp import MESSAGES_PATH, encoder, parse_send, status_payload
from tests.contract.recording import Recorder, serving

FIXTURES = Path(__file__).parent / "fixtures" / "whatsapp"
WEBHOOKS = json.loads((FIXTURES / "status_webhooks.json").read_text())
SEND = json.loads((FIXTURES / "template_send.json").read_text())
APP_SECRET = "0123456789abcdef0123456789abcdef"
TOKEN = "EAAG-access-token"
PHONE_NUMBER_ID = "106540352242922"


def meta_signature(secret: str, body: bytes) -> str:
    """Meta's documented rule, written apart from herald's."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# -- signatures, both directions ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WEBHOOKS["payloads"]))
def test_herald_verifies_what_meta_signs(name: str) -> None:
    body = json.dumps(WEBHOOKS["payloads"][name]).encode()
    assert whatsapp.verify_signature(APP_SECRET, body, meta_signature(APP_SECRET, body))
    assert not whatsapp.verify_signature(APP_SECRET, body, meta_signature("other", body))
    assert not whatsapp.verify_signature(APP_SECRET, body + b" ", meta_signature(APP_SECRET, body))


def test_the_documented_rule_verifies_what_the_simulator_signs() -> None:
    step = Step(
        label="delivered",
        payload=status_payload(
            wamid="wamid.X",
            status="delivered",
            to="16505551234",
            message_id="c.1.1",
            error_code=None,
        ),
        delay_s=0,
    )
    body, headers = encoder(APP_SECRET)("https://h/callbacks/whatsapp", PHONE_NUMBER_ID, [step])
    assert hmac.compare_digest(headers["X-Hub-Signature-256"], meta_signature(APP_SECRET, body))
    assert headers["Content-Type"] == "application/json"


# -- documented webhook payloads ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sent", RecipientStatus.SENT),
        ("delivered", RecipientStatus.DELIVERED),
        ("read", RecipientStatus.READ),
        ("failed_131026", RecipientStatus.FAILED),
        ("failed_130429", RecipientStatus.FAILED),
        ("failed_131047", RecipientStatus.FAILED),
    ],
)
def test_documented_statuses_parse(name: str, expected: RecipientStatus) -> None:
    (event,) = whatsapp.parse_webhook(WEBHOOKS["payloads"][name], 1)
    assert event.status is expected
    assert (event.campaign_id, event.recipient_id, event.attempt) == ("camp-1", 7, 1)
    assert event.provider_message_id and event.provider_message_id.startswith("wamid.")
    # Meta's timestamp (Unix seconds), not the receipt time.
    assert event.occurred_at_ms > 1_700_000_000_000


@pytest.mark.parametrize(
    ("name", "code", "fallback"),
    [
        ("failed_131026", "131026", True),  # not on WhatsApp: the chain moves on
        ("failed_131047", "131047", True),  # outside the 24 h window: another channel may reach
        ("failed_130429", "130429", False),  # throughput: nothing about the recipient
    ],
)
def test_documented_failures_carry_their_code(name: str, code: str, fallback: bool) -> None:
    (event,) = whatsapp.parse_webhook(WEBHOOKS["payloads"][name], 1)
    assert event.error_code == code
    assert event.fallback is fallback
    assert event.error_description


def test_a_batched_webhook_yields_every_status() -> None:
    events = whatsapp.parse_webhook(WEBHOOKS["payloads"]["batched"], 1)
    assert [(e.recipient_id, e.status) for e in events] == [
        (7, RecipientStatus.DELIVERED),
        (8, RecipientStatus.READ),
        (9, RecipientStatus.FAILED),
    ]
    assert events.skipped == 0


def test_an_unknown_status_word_is_skipped_not_refused() -> None:
    payload = json.loads(json.dumps(WEBHOOKS["payloads"]["delivered"]))
    payload["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] = "played"
    events = whatsapp.parse_webhook(payload, 1)
    assert list(events) == [] and events.skipped == 1


# -- the template send -------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder(
        body={
            "messaging_product": "whatsapp",
            "contacts": [{"input": "16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI"}],
        }
    )
    async with serving(recorder.handle) as url:
        yield recorder, url


def message() -> OutboundMessage:
    return OutboundMessage(
        message_id="camp-1.7.1",
        channel=Channel.WHATSAPP,
        to="+16505551234",
        sender="",
        body="",
        callback_url="",
        template=WhatsAppTemplate(
            name="spring_sale",
            language="en_US",
            components=(
                {"type": "body", "parameters": [{"type": "text", "text": "Ada"}]},
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": "abc"}],
                },
            ),
        ),
    )


async def send(base_url: str, graph_version: str = "v24.0") -> Any:
    settings = Settings.development(
        whatsapp_base_url=base_url,
        whatsapp_phone_number_id=PHONE_NUMBER_ID,
        whatsapp_access_token=Secret(TOKEN),
        whatsapp_graph_version=graph_version,
    )
    async with aiohttp.ClientSession() as session:
        provider = build_one(
            "whatsapp", settings=settings, session=session, base_url="", options={}, secret=None
        )
        return await provider.send(message())


@pytest.mark.parametrize("version", ["v24.0", "v25.0"])
async def test_template_send_matches_the_documented_shape(
    server: tuple[Recorder, str], version: str
) -> None:
    recorder, base_url = server
    result = await send(base_url, version)
    assert result.accepted
    assert result.provider_message_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI"
    ((request, raw),) = recorder.requests
    assert request.method == "POST"
    # The configured Graph API version is the path's first segment.
    assert request.path == f"/{version}/{PHONE_NUMBER_ID}/messages"
    assert re.match(SEND["path_pattern"], request.path)
    for header, pattern in SEND["headers"].items():
        assert re.match(pattern, request.headers[header]), header
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    body = orjson.loads(raw)
    jsonschema.validate(body, SEND["request_schema"])
    # How herald's message id travels: biz_opaque_callback_data, echoed in every status.
    assert body["biz_opaque_callback_data"] == "camp-1.7.1"
    # The simulator takes the same body, and routes the same versioned path.
    assert not isinstance(parse_send(body), tuple)
    assert re.fullmatch(r"/\{version:v\\d\+\\.\\d\+\}/\{phone_number_id\}/messages", MESSAGES_PATH)


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        ("130429", ErrorClass.RATE_LIMITED),
        ("131026", ErrorClass.UNREACHABLE),
        ("131047", ErrorClass.UNREACHABLE),
    ],
)
async def test_documented_error_answers_are_classified(
    server: tuple[Recorder, str], code: str, error_class: ErrorClass
) -> None:
    recorder, base_url = server
    answer = SEND["error_answers"][code]
    recorder.status = answer["http_status"]
    recorder.body = answer["body"]
    result = await send(base_url)
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code == code
