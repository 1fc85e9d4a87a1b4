"""Twilio, against Twilio's own artifacts: twilio 9.13's RequestValidator and the CreateMessage
operation of Twilio's OpenAPI (tests/contract/fixtures/twilio/create_message.json, an excerpt
of twilio/twilio-oai spec/json/twilio_api_v2010.json with its commit named inside)."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import jsonschema  # type: ignore[import-untyped]
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from twilio.request_validator import (  # type: ignore[import-untyped]
    RequestValidator,
    get_signature_algorithm,
)

from herald.domain.channels import Channel
from herald.ingress import Ingress
from herald.providers import twilio
from herald.providers.base import ErrorClass, OutboundMessage
from herald.settings import Secret, Settings
from herald.simulator.callbacks import Step
from herald.simulator.twilio import callback_params, encoder, signed_url
from tests.contract.recording import Recorder, serving

FIXTURE = json.loads(
    (Path(__file__).parent / "fixtures" / "twilio" / "create_message.json").read_text()
)
# A SID of the documented shape (^AC[0-9a-fA-F]{32}$).
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TOKEN = "0123456789abcdef0123456789abcdef"
SHARED_KEY = "webhooks-shared-key-secret"
PARAMS = callback_params(
    account_sid=ACCOUNT_SID,
    sid="SM" + "f" * 32,
    to="+15005550100",
    sender="+15005550006",
    status="delivered",
    error_code=None,
)
URLS = [
    "https://hooks.herald.example/callbacks/twilio?m=camp-1.7.1",
    "https://hooks.herald.example:443/callbacks/twilio?m=camp-1.7.1",
    "http://127.0.0.1:8081/callbacks/twilio?m=camp-1.7.1",
]


def simulator_signature(url: str, params: dict[str, str]) -> str:
    sign = encoder(TOKEN)
    _, headers = sign(
        url, "", [Step(label="x", payload={"params": params, "token": "t"}, delay_s=0)]
    )
    return headers["X-Twilio-Signature"]


# -- signatures, both directions ---------------------------------------------------------


@pytest.mark.parametrize("url", URLS)
def test_twilio_validator_accepts_what_the_simulator_signs(url: str) -> None:
    assert RequestValidator(TOKEN).validate(url, PARAMS, simulator_signature(url, PARAMS))


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("signed_form", ["with_port", "without_port"])
def test_herald_accepts_what_twilio_signs_over_either_url_form(url: str, signed_form: str) -> None:
    parsed = urllib.parse.urlparse(url)
    if signed_form == "with_port":
        netloc = parsed.netloc if parsed.port else f"{parsed.netloc}:443"
    else:
        netloc = parsed.netloc.split(":")[0]
    signed_url = parsed._replace(netloc=netloc).geturl()
    validator = RequestValidator(TOKEN)
    header = validator.compute_signature(signed_url, PARAMS)
    # The oracle takes it; so must herald, whichever form herald rebuilt the URL in.
    assert validator.validate(url, PARAMS, header)
    assert twilio.verify_signature(url, PARAMS, TOKEN, header)


def test_herald_refuses_what_twilio_refuses() -> None:
    url = URLS[0]
    header = RequestValidator("another-token").compute_signature(url, PARAMS)
    assert not RequestValidator(TOKEN).validate(url, PARAMS, header)
    assert not twilio.verify_signature(url, PARAMS, TOKEN, header)
    elsewhere = RequestValidator(TOKEN).compute_signature(url.replace("7.1", "7.2"), PARAMS)
    assert not twilio.verify_signature(url, PARAMS, TOKEN, elsewhere)


def test_repeated_keys_sign_as_twilio_signs_them() -> None:
    from multidict import MultiDict

    pairs = [*PARAMS.items(), ("MediaUrl0", "b"), ("MediaUrl0", "a")]
    header = RequestValidator(TOKEN).compute_signature(URLS[0], MultiDict(pairs))
    assert twilio.verify_signature(URLS[0], pairs, TOKEN, header)


@pytest.mark.parametrize("url", URLS)
def test_shared_key_hmac_sha256(url: str) -> None:
    # A Webhooks Rule signs with its SharedKey and names the algorithm in a header.
    settings_header = "key=webhooks_sharedkey_0123,algorithm=HMAC_SHA256"
    algorithm = get_signature_algorithm(settings_header)
    assert twilio.signature_algorithm(settings_header) == algorithm == "HMAC_SHA256"
    header = RequestValidator(SHARED_KEY).compute_signature(url, PARAMS, algorithm)
    assert RequestValidator(SHARED_KEY).validate(url, PARAMS, header, algorithm)
    assert twilio.verify_signature(url, PARAMS, SHARED_KEY, header, algorithm=algorithm)
    # Neither the Auth Token nor SHA-1 checks it.
    assert not twilio.verify_signature(url, PARAMS, TOKEN, header, algorithm=algorithm)
    assert not twilio.verify_signature(url, PARAMS, SHARED_KEY, header)
    # And what herald signs with SHA-256 the SDK takes.
    ours = twilio.signature(url, PARAMS, SHARED_KEY, algorithm)
    assert RequestValidator(SHARED_KEY).validate(url, PARAMS, ours, algorithm)


def test_an_unknown_algorithm_is_refused_as_the_sdk_refuses_it() -> None:
    header = twilio.signature(URLS[0], PARAMS, TOKEN)
    assert not RequestValidator(TOKEN).validate(URLS[0], PARAMS, header, "HMAC_SHA512")
    assert not twilio.verify_signature(URLS[0], PARAMS, TOKEN, header, algorithm="HMAC_SHA512")


@pytest.mark.parametrize(
    ("public", "expected"),
    [
        ("https://hooks.herald.example/", "https://hooks.herald.example"),
        ("https://hooks.herald.example//", "https://hooks.herald.example"),
        ("https://hooks.herald.example/base/", "https://hooks.herald.example/base"),
        ("https://hooks.herald.example", "https://hooks.herald.example"),
    ],
)
def test_the_public_ingress_url_is_normalised(public: str, expected: str) -> None:
    settings = Settings.development(public_ingress_url=public)
    assert settings.ingress_url == expected
    assert "//callbacks" not in f"{settings.ingress_url}/callbacks/twilio"


# -- statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", FIXTURE["message_enum_status"]["enum"])
def test_every_status_of_the_enum_is_understood(status: str) -> None:
    params = {**PARAMS, "MessageStatus": status, "SmsStatus": status}
    twilio.parse_callback(params, "camp-1.7.1", 0)  # never raises
    assert twilio.ignored_reason(params) is None


def test_a_status_twilio_adds_later_is_ignored_with_a_reason() -> None:
    params = {**PARAMS, "MessageStatus": "teleported", "SmsStatus": "teleported"}
    assert twilio.parse_callback(params, "camp-1.7.1", 0) is None
    assert twilio.ignored_reason(params) == "unknown MessageStatus 'teleported'"


# -- the CreateMessage request ----------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[tuple[Recorder, str]]:
    recorder = Recorder(status=201, body={"sid": "SM" + "0" * 32})
    async with serving(recorder.handle) as url:
        yield recorder, url


def message() -> OutboundMessage:
    return OutboundMessage(
        message_id="camp-1.7.1",
        channel=Channel.SMS,
        to="+15005550100",
        sender="+15005550006",
        body="Spring sale: 20% off",
        callback_url="https://hooks.herald.example/callbacks/twilio?m=camp-1.7.1",
    )


async def send(base_url: str) -> Any:
    async with aiohttp.ClientSession() as session:
        provider = twilio.TwilioProvider(
            session=session,
            base_url=base_url,
            account_sid=ACCOUNT_SID,
            auth_token=Secret(TOKEN),
            timeout_s=5.0,
        )
        return await provider.send(message())


async def test_create_message_request_matches_the_openapi_operation(
    server: tuple[Recorder, str],
) -> None:
    recorder, base_url = server
    result = await send(base_url)
    assert result.accepted
    ((request, raw),) = recorder.requests
    # Path and method.
    assert request.method == FIXTURE["method"].upper()
    assert request.path == FIXTURE["path"].replace("{AccountSid}", ACCOUNT_SID)
    (sid_param,) = FIXTURE["path_parameters"]
    jsonschema.validate(ACCOUNT_SID, sid_param["schema"])
    # Auth: the operation's HTTP Basic scheme, Account SID and Auth Token.
    (scheme,) = FIXTURE["securitySchemes"].values()
    assert scheme == {"scheme": "basic", "type": "http"}
    kind, _, encoded = request.headers["Authorization"].partition(" ")
    assert kind == "Basic"
    assert base64.b64decode(encoded).decode() == f"{ACCOUNT_SID}:{TOKEN}"
    # Content type and body against the request schema.
    (content_type,) = FIXTURE["request_content_types"]
    assert request.content_type == content_type
    form = dict(urllib.parse.parse_qsl(raw.decode(), strict_parsing=True))
    schema = FIXTURE["request_schema"]
    assert set(form) <= set(schema["properties"]), set(form) - set(schema["properties"])
    jsonschema.validate(form, schema)
    # x-twilio conditional: one of each group is given.
    for group in FIXTURE["x-twilio"]["conditional"]:
        given = {key.replace("_", "").lower() for key in form}
        assert any(name.replace("_", "").lower() in given for name in group), group
    # How herald's message id travels: in the StatusCallback query, a hostname without '_'.
    callback = urllib.parse.urlsplit(form["StatusCallback"])
    assert callback.scheme == "https"
    assert "_" not in (callback.hostname or "")
    assert urllib.parse.parse_qs(callback.query)["m"] == ["camp-1.7.1"]


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (400, 21211, ErrorClass.PERMANENT),  # invalid To: bad data, never retried
        (400, 21610, ErrorClass.OPTED_OUT),  # replied STOP: never retried, never fallen back
        (429, 20429, ErrorClass.RATE_LIMITED),  # too many requests: back off, retry
    ],
)
async def test_documented_error_answers_are_classified(
    server: tuple[Recorder, str], status: int, code: int, error_class: ErrorClass
) -> None:
    recorder, base_url = server
    recorder.status = status
    # Twilio's documented error body (https://www.twilio.com/docs/api/errors/400.md).
    recorder.body = {
        "code": code,
        "message": "error",
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    result = await send(base_url)
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code == str(code)


# -- the ingress: the URL Twilio signed, rebuilt from the public URL ---------------------


class _NoProducer:
    """The requests below fold nothing, so nothing is published."""


@pytest.fixture
async def ingress() -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings.development(
        public_ingress_url="https://hooks.herald.example/",
        twilio_auth_token=Secret(TOKEN),
        twilio_webhook_shared_key=Secret(SHARED_KEY),
    )
    app = Ingress(
        settings=settings,
        producer=cast(AIOKafkaProducer, _NoProducer()),
        email_public_key="",
        channels=frozenset({Channel.SMS}),
    ).app()
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


PATH = "/callbacks/twilio?m=camp-1.7.1"


@pytest.mark.parametrize(
    "base", ["https://hooks.herald.example", "https://hooks.herald.example:443"]
)
@pytest.mark.parametrize("status", ["queued", "receiving", "received", "teleported", ""])
async def test_ingress_answers_2xx_to_what_folds_nothing(
    ingress: TestClient[Any, Any], base: str, status: str
) -> None:
    params = {**PARAMS, "MessageStatus": status, "SmsStatus": status}
    header = RequestValidator(TOKEN).compute_signature(base + PATH, params)
    response = await ingress.post(PATH, data=params, headers={"X-Twilio-Signature": header})
    assert response.status == 204


async def test_ingress_checks_the_shared_key_scheme(ingress: TestClient[Any, Any]) -> None:
    params = {**PARAMS, "MessageStatus": "sending", "SmsStatus": "sending"}
    settings_header = "key=webhooks_sharedkey_0123,algorithm=HMAC_SHA256"
    url = "https://hooks.herald.example" + PATH
    good = RequestValidator(SHARED_KEY).compute_signature(url, params, "HMAC_SHA256")
    with_token = RequestValidator(TOKEN).compute_signature(url, params, "HMAC_SHA256")
    for header, expected in ((good, 204), (with_token, 401)):
        response = await ingress.post(
            PATH,
            data=params,
            headers={
                "X-Twilio-Signature": header,
                "X-Twilio-Webhooks-Signature-Settings": settings_header,
            },
        )
        assert response.status == expected


async def test_ingress_refuses_a_bad_signature(ingress: TestClient[Any, Any]) -> None:
    header = RequestValidator("another").compute_signature(
        "https://hooks.herald.example" + PATH, PARAMS
    )
    response = await ingress.post(PATH, data=PARAMS, headers={"X-Twilio-Signature": header})
    assert response.status == 401


def test_the_simulator_signs_both_url_forms_across_urls() -> None:
    urls = [f"https://hooks.herald.example/callbacks/twilio?m=camp-1.{n}.1" for n in range(1, 40)]
    forms = {signed_url(url) == url for url in urls}
    assert forms == {True, False}
    for url in urls:
        assert RequestValidator(TOKEN).validate(url, PARAMS, simulator_signature(url, PARAMS))
