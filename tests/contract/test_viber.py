"""Viber's REST bot API, with viberbot 1.0.12 (Viber's own Python SDK) as the oracle.

viberbot computes and checks X-Viber-Content-Signature (`Api.verify_signature`), parses every
callback (`Api.parse_request`), and builds send_message requests (`Api.send_messages` with a
TextMessage); herald's adapter and simulator are checked against each. The status codes are
Viber's (https://developers.viber.com/docs/api/rest-bot-api/#error-codes): 5
receiverNotRegistered and 6 receiverNotSubscribed say the receiver cannot be reached (the chain
moves on), 12 tooManyRequests says wait and retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from viberbot import Api, BotConfiguration  # type: ignore[import-untyped]
from viberbot.api.messages.text_message import TextMessage  # type: ignore[import-untyped]
from viberbot.api.viber_requests import (  # type: ignore[import-untyped]
    ViberConversationStartedRequest,
    ViberDeliveredRequest,
    ViberFailedRequest,
    ViberSeenRequest,
    ViberSubscribedRequest,
    ViberUnsubscribedRequest,
)

from herald.domain.channels import Channel
from herald.domain.dispatch import classify
from herald.domain.identities import IdentityEvent
from herald.domain.status import RecipientStatus
from herald.providers import viber
from herald.providers.base import ErrorClass, OutboundMessage
from herald.settings import Secret
from herald.simulator import Simulator
from herald.simulator.callbacks import Step
from herald.simulator.viber import encoder, event_payload, user_id_for, user_payload

TOKEN = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9"
SENDER = "Herald"
CONTACT = "7b0a1c7e-6f0e-4b8e-9d55-1f7f2f4a9c11"
USER = user_id_for("+15551234500")
MESSAGE_ID = "camp-1.7.1"


def sdk(token: str = TOKEN, base_url: str | None = None) -> Any:
    api = Api(BotConfiguration(auth_token=token, name=SENDER, avatar=None))
    if base_url is not None:
        # viberbot posts to <url>/<endpoint>; Viber's is https://chatapi.viber.com/pa.
        api._request_sender._viber_bot_api_url = base_url
    return api


def simulator_posts() -> dict[str, dict[str, Any]]:
    """Every callback the simulator posts, as it builds them."""
    return {
        "delivered": event_payload(event="delivered", token=4912661846655238145, receiver=USER),
        "seen": event_payload(event="seen", token=4912661846655238145, receiver=USER),
        "failed": event_payload(event="failed", token=4912661846655238145, receiver=USER),
        "conversation_started": user_payload(
            event="conversation_started", user_id=USER, context=CONTACT
        ),
        "subscribed": user_payload(event="subscribed", user_id=USER, context=None),
        "unsubscribed": {"event": "unsubscribed", "user_id": USER},
    }


def signed(payload: dict[str, Any], token: str = TOKEN) -> tuple[bytes, str]:
    """The request the simulator posts for payload: body and X-Viber-Content-Signature."""
    step = Step(label=payload["event"], payload=payload, delay_s=0)
    body, headers = encoder(token)("https://h/callbacks/viber", "", [step])
    assert headers["Content-Type"] == "application/json"
    return body, headers["X-Viber-Content-Signature"]


# -- signatures, both directions ---------------------------------------------------------


@pytest.mark.parametrize("event", sorted(simulator_posts()))
def test_viberbot_verifies_what_the_simulator_signs(event: str) -> None:
    body, header = signed(simulator_posts()[event])
    assert sdk().verify_signature(body, header)
    assert not sdk("another-token").verify_signature(body, header)


@pytest.mark.parametrize("event", sorted(simulator_posts()))
def test_herald_verifies_what_viberbot_signs(event: str) -> None:
    body = orjson.dumps({**simulator_posts()[event], "timestamp": 1_700_000_000_000})
    header = sdk()._calculate_message_signature(body)
    assert viber.verify_signature(TOKEN, body, header)
    assert not viber.verify_signature(TOKEN, body, sdk("other")._calculate_message_signature(body))
    assert not viber.verify_signature(TOKEN, body + b" ", header)


# -- every callback the simulator posts, parsed by viberbot and by herald -----------------


def test_viberbot_parses_every_callback_the_simulator_posts() -> None:
    parsed = {e: sdk().parse_request(signed(p)[0]) for e, p in simulator_posts().items()}
    assert isinstance(parsed["delivered"], ViberDeliveredRequest)
    assert isinstance(parsed["seen"], ViberSeenRequest)
    assert isinstance(parsed["failed"], ViberFailedRequest)
    assert isinstance(parsed["conversation_started"], ViberConversationStartedRequest)
    assert isinstance(parsed["subscribed"], ViberSubscribedRequest)
    assert isinstance(parsed["unsubscribed"], ViberUnsubscribedRequest)
    for event in ("delivered", "seen", "failed"):
        assert parsed[event].message_token == 4912661846655238145
        assert parsed[event].user_id == USER
    assert parsed["failed"].desc
    started = parsed["conversation_started"]
    assert (started.user.id, started.context, started.subscribed) == (USER, CONTACT, False)
    assert parsed["subscribed"].user.id == USER
    assert parsed["unsubscribed"].user_id == USER
    for request in parsed.values():
        assert request.timestamp > 1_700_000_000_000


@pytest.mark.parametrize(
    ("event", "status", "fallback"),
    [
        ("delivered", RecipientStatus.DELIVERED, False),
        ("seen", RecipientStatus.READ, False),
        ("failed", RecipientStatus.FAILED, True),
    ],
)
def test_herald_reads_delivery_callbacks_as_viberbot_does(
    event: str, status: RecipientStatus, fallback: bool
) -> None:
    body, _ = signed(simulator_posts()[event])
    request = sdk().parse_request(body)
    got = viber.parse_callback(orjson.loads(body), 1)
    assert got is not None
    assert (got.status, got.fallback) == (status, fallback)
    assert got.provider_message_id == str(request.message_token)
    assert got.occurred_at_ms == request.timestamp
    assert viber.parse_identity(orjson.loads(body), 1) is None


@pytest.mark.parametrize(
    ("event", "linked"),
    [("conversation_started", True), ("unsubscribed", False), ("subscribed", None)],
)
def test_herald_reads_identity_callbacks_as_viberbot_does(event: str, linked: bool | None) -> None:
    body, _ = signed(simulator_posts()[event])
    request = sdk().parse_request(body)
    got = viber.parse_identity(orjson.loads(body), 1)
    assert viber.parse_callback(orjson.loads(body), 1) is None
    if linked is None:
        assert got is None  # subscribed names no contact: the link came with the context
        return
    user_id = request.user.id if linked else request.user_id
    assert got == IdentityEvent(
        channel="viber",
        address=user_id,
        linked=linked,
        occurred_at_ms=request.timestamp,
        contact_ref=request.context if linked else None,
    )


# -- the send: herald's request against the one viberbot builds --------------------------


@dataclass(kw_only=True)
class Recorder:
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.requests.append((request.path, dict(request.headers), body))
        answer = {"status": 0, "status_message": "ok", "message_token": 5741311803571721087}
        return web.json_response(answer)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    rec = Recorder()
    app = web.Application()
    app.router.add_post("/pa/send_message", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield rec, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def outbound(to: str = USER, sender: str = SENDER) -> OutboundMessage:
    return OutboundMessage(
        message_id=MESSAGE_ID,
        channel=Channel.VIBER,
        to=to,
        sender=sender,
        body="Hi Ada, 20% off.",
        callback_url="",
    )


def provider(session: aiohttp.ClientSession, base_url: str) -> viber.ViberProvider:
    return viber.ViberProvider(
        session=session,
        base_url=base_url,
        auth_token=Secret(TOKEN),
        sender_name=SENDER,
        timeout_s=5,
    )


async def test_the_send_is_what_viberbot_sends_for_a_text_message(
    recorder: tuple[Recorder, str],
) -> None:
    rec, base_url = recorder
    message = TextMessage(text="Hi Ada, 20% off.", tracking_data=MESSAGE_ID)
    tokens = await asyncio.to_thread(sdk(base_url=f"{base_url}/pa").send_messages, USER, [message])
    assert tokens == [5741311803571721087]
    async with aiohttp.ClientSession() as session:
        result = await provider(session, base_url).send(outbound())
    assert result.accepted and result.provider_message_id == "5741311803571721087"

    (sdk_path, _, sdk_body), (path, headers, body) = rec.requests
    assert sdk_path == path == "/pa/send_message"
    # The receiver is the Viber user id, never a phone number.
    assert body["receiver"] == sdk_body["receiver"] == USER
    assert body["type"] == sdk_body["type"] == "text"
    assert body["text"] == sdk_body["text"]
    assert body["sender"]["name"] == sdk_body["sender"]["name"] == SENDER
    # Herald's id travels as tracking_data (Viber does not echo it in delivery callbacks:
    # those are matched by message_token).
    assert body["tracking_data"] == sdk_body["tracking_data"] == MESSAGE_ID
    # Everything herald sends is a field viberbot sends too.
    assert set(body) <= set(sdk_body)
    # viberbot 1.0.12 sends the token in the body (Viber's older form); Viber documents the
    # X-Viber-Auth-Token header, which herald sends and keeps out of the body.
    assert sdk_body["auth_token"] == TOKEN
    assert headers["X-Viber-Auth-Token"] == TOKEN
    assert "auth_token" not in body
    assert headers["Content-Type"] == "application/json"


# -- the simulator answers viberbot as Viber does ----------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(
        host="127.0.0.1",
        port=0,
        account_sid="AC" + "0" * 32,
        auth_token=Secret("twilio-token"),
        viber_token=Secret(TOKEN),
    ) as running:
        yield running


async def test_the_simulator_takes_viberbots_send_to_a_subscribed_user(sim: Simulator) -> None:
    user = sim.viber_users.add_user("+15551234500", context=None, announce=False)
    message = TextMessage(text="Hi", tracking_data=MESSAGE_ID)
    (token,) = await asyncio.to_thread(
        sdk(base_url=f"{sim.base_url}/pa").send_messages, user, [message]
    )
    assert isinstance(token, int) and token > 0
    assert sim.stats.channel("viber").accepted == 1


@pytest.mark.parametrize(
    ("subscribe", "receiver", "status"),
    [
        (None, "+15551234500", "status: 5, message: receiverNotRegistered"),  # a phone number
        (None, "never-seen-user=", "status: 5, message: receiverNotRegistered"),
        (False, None, "status: 6, message: receiverNotSubscribed"),  # opened, not subscribed
    ],
)
async def test_the_simulator_refuses_receivers_viber_would(
    sim: Simulator, subscribe: bool | None, receiver: str | None, status: str
) -> None:
    # A user who opened the conversation (subscribe False) but did not subscribe.
    user = sim.viber_users.add_user(
        "+15551234500", context=None, subscribe=subscribe, announce=False
    )
    send = sdk(base_url=f"{sim.base_url}/pa").send_messages
    with pytest.raises(Exception, match=status):
        await asyncio.to_thread(send, receiver or user, [TextMessage(text="Hi")])
    assert sim.stats.channel("viber").accepted == 0


async def test_the_simulator_refuses_a_wrong_token_as_viber_does(sim: Simulator) -> None:
    user = sim.viber_users.add_user("+15551234500", context=None, announce=False)
    send = sdk("wrong-token", base_url=f"{sim.base_url}/pa").send_messages
    with pytest.raises(Exception, match="status: 2, message: invalidAuthToken"):
        await asyncio.to_thread(send, user, [TextMessage(text="Hi")])


# -- Viber's error statuses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name", "error_class", "falls_back"),
    [
        (5, "receiverNotRegistered", ErrorClass.UNREACHABLE, True),
        (6, "receiverNotSubscribed", ErrorClass.UNREACHABLE, True),
        (12, "tooManyRequests", ErrorClass.RATE_LIMITED, False),
    ],
)
def test_viber_statuses_are_classified(
    status: int, name: str, error_class: ErrorClass, falls_back: bool
) -> None:
    body = orjson.dumps({"status": status, "status_message": name, "chat_hostname": "SN-1_"})
    # Viber answers errors inside an HTTP 200.
    result = viber.result_from_response(200, body, "3" if status == 12 else None)
    assert (result.accepted, result.error_class, result.error_code) == (
        False,
        error_class,
        str(status),
    )
    assert result.error_description == name
    verdict = classify(result)
    assert verdict.fallback is falls_back
    if status == 12:
        # Rate: waited out and retried (Retry-After when given), never a recipient failure.
        assert result.retry_after_s == 3.0


async def test_viber_statuses_5_and_6_from_the_simulator(sim: Simulator) -> None:
    async with aiohttp.ClientSession() as session:
        send = provider(session, sim.base_url).send
        unknown = await send(outbound(to="+15551234500"))
        opened = sim.viber_users.add_user(
            "+15551234501", context=None, subscribe=False, announce=False
        )
        not_subscribed = await send(outbound(to=opened))
    assert (unknown.error_class, unknown.error_code) == (ErrorClass.UNREACHABLE, "5")
    assert (not_subscribed.error_class, not_subscribed.error_code) == (ErrorClass.UNREACHABLE, "6")
