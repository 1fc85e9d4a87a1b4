"""Callbacks in production: a channel without its secrets has no route, and no value found in
the source (the development credentials, the simulator's email key) signs anything."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald import constants, preflight
from herald.ingress import Ingress
from herald.providers import rbm, twilio, viber, whatsapp
from herald.roles.ingress import email_public_key
from herald.settings import DEVELOPMENT, Secret, Settings
from herald.simulator import devkeys
from herald.simulator.smtp import sign_events

DEV = {name: value.value for name, value in DEVELOPMENT.items() if isinstance(value, Secret)}
URL = "https://hooks.example.com"
BODY = orjson.dumps({"entry": [], "event": "delivered", "message_token": 1})


class _NoProducer:
    """The routes under test answer before anything is published."""


@pytest.fixture
async def client_for() -> AsyncIterator[Any]:
    clients: list[TestClient[Any, Any]] = []

    async def make(settings: Settings) -> TestClient[Any, Any]:
        ingress = Ingress(
            settings=settings,
            producer=cast(AIOKafkaProducer, _NoProducer()),
            email_public_key=email_public_key(settings),
            channels=preflight.enabled_channels(settings),
        )
        client = TestClient(TestServer(ingress.app()))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def _forged(value: str) -> list[tuple[str, dict[str, str], bytes]]:
    """Every callback a forger could sign with `value` as the credential."""
    params = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    rbm_body = orjson.dumps({"message": {"data": "e30=", "attributes": {}}})
    return [
        (
            constants.PATH_CALLBACK_TWILIO,
            {
                "X-Twilio-Signature": twilio.signature(
                    f"{URL}{constants.PATH_CALLBACK_TWILIO}", params, value
                ),
                "Content-Type": "application/x-www-form-urlencoded",
            },
            "&".join(f"{k}={v}" for k, v in params.items()).encode(),
        ),
        (
            constants.PATH_CALLBACK_WHATSAPP,
            {"X-Hub-Signature-256": whatsapp.signature(value, BODY)},
            BODY,
        ),
        (
            constants.PATH_CALLBACK_RBM,
            {"X-Goog-Signature": rbm.signature(value, rbm_body)},
            rbm_body,
        ),
        (
            constants.PATH_CALLBACK_VIBER,
            {"X-Viber-Content-Signature": viber.signature(value, BODY)},
            BODY,
        ),
    ]


def _forged_email() -> tuple[dict[str, str], bytes]:
    body = orjson.dumps([{"event": "open", "herald_message_id": "c.1.1", "timestamp": 1}])
    timestamp = str(int(time.time()))
    key = serialization.load_pem_private_key(devkeys.private_key_pem(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = sign_events(key, timestamp, body)
    return {
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "X-Twilio-Email-Event-Webhook-Signature": signature,
    }, body


async def test_production_without_secrets_refuses_every_forgery(client_for: Any) -> None:
    client = await client_for(Settings(public_ingress_url=URL))
    for value in [*DEV.values(), ""]:
        for path, headers, body in _forged(value):
            answer = await client.post(path, data=body, headers=headers)
            assert answer.status == 404, (path, value)
    headers, body = _forged_email()
    answer = await client.post(constants.PATH_CALLBACK_EMAIL, data=body, headers=headers)
    assert answer.status == 404
    # Google's registration handshake would echo an attacker's secret: no route, no echo.
    handshake = orjson.dumps({"clientToken": DEV["rbm_client_token"], "secret": "attacker"})
    answer = await client.post(constants.PATH_CALLBACK_RBM, data=handshake)
    assert answer.status == 404 and "attacker" not in await answer.text()
    challenge = await client.get(
        constants.PATH_CALLBACK_WHATSAPP,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": DEV["whatsapp_verify_token"],
            "hub.challenge": "1",
        },
    )
    assert challenge.status == 404


async def test_production_with_real_secrets_refuses_the_development_ones(client_for: Any) -> None:
    settings = Settings(
        public_ingress_url=URL,
        twilio_account_sid="AC1",
        twilio_auth_token=Secret("real-twilio"),
        whatsapp_app_secret=Secret("real-meta"),
        whatsapp_verify_token=Secret("real-verify"),
        rbm_client_token=Secret("real-rbm"),
        viber_auth_token=Secret("real-viber"),
        smtp_host="smtp.example.com",
        email_webhook_public_key=base64.b64encode(b"not the simulator's").decode(),
    )
    assert email_public_key(settings) != devkeys.public_key()
    client = await client_for(settings)
    for value in DEV.values():
        for path, headers, body in _forged(value):
            answer = await client.post(path, data=body, headers=headers)
            assert answer.status == 401, (path, value)
    headers, body = _forged_email()
    answer = await client.post(constants.PATH_CALLBACK_EMAIL, data=body, headers=headers)
    assert answer.status == 401


async def test_an_enabled_channel_with_an_empty_secret_verifies_nothing(client_for: Any) -> None:
    # RBM is on (its send token is set) but its client token is not: preflight keeps such an
    # ingress from starting, and the route refuses everything all the same.
    client = await client_for(Settings(public_ingress_url=URL, rbm_token=Secret("t")))
    for path, headers, body in _forged(""):
        expected = 401 if path == constants.PATH_CALLBACK_RBM else 404
        assert (await client.post(path, data=body, headers=headers)).status == expected, path


def test_development_alone_checks_email_with_the_simulators_key() -> None:
    assert email_public_key(Settings.development()) == devkeys.public_key()
    assert email_public_key(Settings()) == ""
    assert email_public_key(Settings.development(smtp_host="smtp.example.com")) == ""
