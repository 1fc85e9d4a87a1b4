"""The WhatsApp, RBM and Viber adapters against the simulator over real sockets, with a
callback receiver that checks every signature with the adapters' own verify functions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from herald.domain.channels import Channel
from herald.domain.identities import IdentityEvent
from herald.domain.status import RecipientStatus, StatusEvent, message_id
from herald.providers import rbm, viber, whatsapp
from herald.providers.base import ErrorClass, OutboundMessage, SendResult, WhatsAppTemplate
from herald.providers.rbm import RbmProvider
from herald.providers.twilio import TwilioProvider
from herald.providers.viber import ViberProvider
from herald.providers.whatsapp import WhatsAppProvider
from herald.settings import Secret
from herald.simulator import Behaviour, Simulator

SID = "AC" + "0" * 32
TWILIO_TOKEN = "sim-twilio-token"
WA_TOKEN = "sim-wa-token"
WA_SECRET = "sim-wa-app-secret"
RBM_TOKEN = "sim-rbm-token"
RBM_CLIENT = "sim-rbm-client-token"
VIBER_TOKEN = "sim-viber-token"
PHONE_ID = "106540352242922"
AGENT = "herald_agent@rbm.goog"
SLOW_MS = 300

READER = "+15551234500"  # on every channel, reads (t = 0)
NO_READ = "+15551234510"  # on every channel, t = 1: delivered only
WA_ONLY = "+15551234505"  # WhatsApp user, not on RCS or Viber
RCS_ONLY = "+15551234506"  # not on WhatsApp or Viber, RCS-capable
SLOW = "+15551234570"  # on every channel, delivered after SLOW_MS


@dataclass(frozen=True, kw_only=True)
class Hook:
    path: str
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(kw_only=True)
class Receiver:
    hooks: list[Hook] = field(default_factory=list)
    port: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.hooks.append(
            Hook(path=request.path, body=await request.read(), headers=dict(request.headers))
        )
        self.changed.set()
        return web.Response(status=200)

    def on(self, path: str) -> list[Hook]:
        return [h for h in self.hooks if h.path == path]

    async def wait_for(self, path: str, count: int, timeout_s: float = 5.0) -> list[Hook]:
        async with asyncio.timeout(timeout_s):
            while len(self.on(path)) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.on(path)


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    for path in ("/callbacks/twilio", "/callbacks/whatsapp", "/callbacks/rbm", "/callbacks/viber"):
        app.router.add_post(path, rec.handle)
    runner, rec.port = await serve(app)
    try:
        yield rec
    finally:
        await runner.cleanup()


def simulator(receiver: Receiver, **overrides: Any) -> Simulator:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "account_sid": SID,
        "auth_token": Secret(TWILIO_TOKEN),
        "callback_delay_ms": 5,
        "callback_concurrency": 4,
        "callback_max_attempts": 3,
        "whatsapp_token": Secret(WA_TOKEN),
        "whatsapp_app_secret": Secret(WA_SECRET),
        "rbm_token": Secret(RBM_TOKEN),
        "rbm_client_token": Secret(RBM_CLIENT),
        "viber_token": Secret(VIBER_TOKEN),
        "callback_base_url": receiver.base_url,
        "behaviour": Behaviour(slow_delivery_ms=SLOW_MS),
    }
    options.update(overrides)
    return Simulator(**options)


@pytest.fixture
async def sim(receiver: Receiver) -> AsyncIterator[Simulator]:
    async with simulator(receiver) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def wa_provider(
    session: aiohttp.ClientSession, sim: Simulator, *, token: str = WA_TOKEN, timeout_s: float = 5
) -> WhatsAppProvider:
    return WhatsAppProvider(
        session=session,
        base_url=sim.base_url,
        phone_number_id=PHONE_ID,
        access_token=Secret(token),
        timeout_s=timeout_s,
    )


def rbm_provider(
    session: aiohttp.ClientSession,
    sim: Simulator,
    *,
    token: str = RBM_TOKEN,
    timeout_s: float = 5,
    ttl_s: int | None = None,
) -> RbmProvider:
    return RbmProvider(
        session=session,
        base_url=sim.base_url,
        agent_id=AGENT,
        token=Secret(token),
        timeout_s=timeout_s,
        ttl_s=ttl_s,
    )


def viber_provider(
    session: aiohttp.ClientSession,
    sim: Simulator,
    *,
    token: str = VIBER_TOKEN,
    timeout_s: float = 5,
) -> ViberProvider:
    return ViberProvider(
        session=session,
        base_url=sim.base_url,
        auth_token=Secret(token),
        sender_name="Herald",
        timeout_s=timeout_s,
    )


def twilio_provider(
    session: aiohttp.ClientSession, sim: Simulator, *, timeout_s: float = 5
) -> TwilioProvider:
    return TwilioProvider(
        session=session,
        base_url=sim.base_url,
        account_sid=SID,
        auth_token=Secret(TWILIO_TOKEN),
        timeout_s=timeout_s,
    )


def outbound(
    channel: Channel, to: str, recipient: int = 1, callback_url: str = ""
) -> OutboundMessage:
    template = (
        WhatsAppTemplate(
            name="spring_sale",
            language="en_US",
            components=({"type": "body", "parameters": [{"type": "text", "text": "Ada"}]},),
        )
        if channel is Channel.WHATSAPP
        else None
    )
    return OutboundMessage(
        message_id=message_id("camp-1", recipient, 1),
        channel=channel,
        to=to,
        sender="+15005550006" if channel is Channel.SMS else "",
        body="Hello from herald",
        callback_url=callback_url,
        template=template,
    )


def wa_events(hooks: list[Hook]) -> list[StatusEvent]:
    events: list[StatusEvent] = []
    for hook in hooks:
        assert whatsapp.verify_signature(WA_SECRET, hook.body, hook.headers["X-Hub-Signature-256"])
        assert not whatsapp.verify_signature(
            "other", hook.body, hook.headers["X-Hub-Signature-256"]
        )
        events.extend(whatsapp.parse_webhook(hook.json(), 0))
    return events


def rbm_events(hooks: list[Hook]) -> list[StatusEvent]:
    events: list[StatusEvent] = []
    for hook in hooks:
        payload = hook.json()
        assert rbm.verify_signature(RBM_CLIENT, payload, hook.headers["X-Goog-Signature"])
        assert not rbm.verify_signature("other", payload, hook.headers["X-Goog-Signature"])
        events.extend(rbm.parse_webhook(payload, 0))
    return events


def vuser(sim: Simulator, phone: str) -> str:
    """The Viber user id of a subscriber the bot already had, on phone (outcomes.py)."""
    return sim.viber_users.add_user(phone, context=None, announce=False)


def viber_events(hooks: list[Hook]) -> list[StatusEvent]:
    events: list[StatusEvent] = []
    for hook in hooks:
        header = hook.headers["X-Viber-Content-Signature"]
        assert viber.verify_signature(VIBER_TOKEN, hook.body, header)
        assert not viber.verify_signature("other", hook.body, header)
        event = viber.parse_callback(hook.json(), 0)
        assert event is not None
        events.append(event)
    return events


def assert_refused(result: SendResult, error_class: ErrorClass, code: str) -> None:
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code == code
    assert result.provider_message_id is None


# -- WhatsApp -----------------------------------------------------------------------------


async def test_whatsapp_user_gets_sent_delivered_read(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await wa_provider(session, sim).send(outbound(Channel.WHATSAPP, READER, 7))
    assert result.accepted
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("wamid.")

    events = wa_events(await receiver.wait_for("/callbacks/whatsapp", 3))
    assert [e.status for e in events] == [
        RecipientStatus.SENT,
        RecipientStatus.DELIVERED,
        RecipientStatus.READ,
    ]
    for event in events:
        assert (event.campaign_id, event.recipient_id, event.attempt) == ("camp-1", 7, 1)
        assert event.provider_message_id == result.provider_message_id
        assert event.accepted
        assert not event.fallback
        assert event.occurred_at_ms > 1_700_000_000_000
    body = receiver.on("/callbacks/whatsapp")[0].json()
    assert body["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] == PHONE_ID

    assert await sim.wait_idle(5)
    assert sim.stats.channel("whatsapp").accepted == 1
    assert sim.stats.channel("whatsapp").callbacks_sent == 3
    assert sim.sent_to == {READER: 1}


async def test_whatsapp_non_user_fails_later_with_fallback(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await wa_provider(session, sim).send(outbound(Channel.WHATSAPP, RCS_ONLY, 3))
    # Meta takes the message; the non-user shows up only in the webhook.
    assert result.accepted
    (event,) = wa_events(await receiver.wait_for("/callbacks/whatsapp", 1))
    assert event.status is RecipientStatus.FAILED
    assert event.error_code == "131026"
    assert event.fallback
    assert event.accepted
    assert (event.campaign_id, event.recipient_id) == ("camp-1", 3)
    assert await sim.wait_idle(5)
    assert len(receiver.on("/callbacks/whatsapp")) == 1


async def test_whatsapp_wrong_token_holds_the_provider(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    result = await wa_provider(session, sim, token="wrong").send(outbound(Channel.WHATSAPP, READER))
    # Code 190 is herald's credential, not the recipient's fault: the breaker holds the work.
    assert_refused(result, ErrorClass.UNAUTHORIZED, "190")
    assert "wrong" not in (result.error_description or "")
    assert sim.stats.channel("whatsapp").rejected == 1


async def test_whatsapp_statuses_can_share_a_webhook(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    async with simulator(
        receiver, whatsapp_batch_max=10, whatsapp_batch_window_ms=50, callback_delay_ms=1
    ) as sim:
        provider = wa_provider(session, sim)
        numbers = [f"+155512345{d:02d}" for d in (10, 11, 12, 13, 6)]
        results = await asyncio.gather(
            *(provider.send(outbound(Channel.WHATSAPP, n, i + 1)) for i, n in enumerate(numbers))
        )
        assert all(r.accepted for r in results)
        assert await sim.wait_idle(5)
    hooks = receiver.on("/callbacks/whatsapp")
    events = wa_events(hooks)
    # Four users (sent + delivered) and one non-user (failed).
    assert len(events) == 9
    assert len(hooks) < 9
    assert max(len(h.json()["entry"][0]["changes"][0]["value"]["statuses"]) for h in hooks) > 1
    assert sim.stats.channel("whatsapp").callbacks_sent == 9


# -- RBM ----------------------------------------------------------------------------------


async def test_rbm_capable_number_delivered_then_read(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    message = outbound(Channel.RCS, READER, 4)
    result = await rbm_provider(session, sim).send(message)
    assert result.accepted
    # RBM's messageId is a UUID per attempt; its events name only that id (the status
    # consumer resolves it through the attempt's recorded provider_message_id).
    assert result.provider_message_id == rbm.rbm_message_id(message.message_id)
    events = rbm_events(await receiver.wait_for("/callbacks/rbm", 2))
    assert [e.status for e in events] == [RecipientStatus.DELIVERED, RecipientStatus.READ]
    assert all(
        (e.campaign_id, e.provider_message_id, e.channel) == ("", result.provider_message_id, "rcs")
        for e in events
    )
    push = receiver.on("/callbacks/rbm")[0].json()
    assert push["subscription"].endswith("/subscriptions/rbm-agent-subscription")
    assert push["message"]["messageId"]


async def test_rbm_number_without_rcs_is_unreachable_at_once(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    message = outbound(Channel.RCS, WA_ONLY)
    result = await rbm_provider(session, sim).send(message)
    assert (result.accepted, result.error_class, result.error_code) == (
        False,
        ErrorClass.UNREACHABLE,
        "NOT_FOUND",
    )
    assert result.provider_message_id == rbm.rbm_message_id(message.message_id)
    assert await sim.wait_idle(5)
    assert receiver.on("/callbacks/rbm") == []
    assert sim.stats.channel("rcs").rejected == 1


async def test_rbm_repeated_message_id_is_ignored_and_counted(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    provider = rbm_provider(session, sim)
    message = outbound(Channel.RCS, NO_READ, 9)
    first = await provider.send(message)
    second = await provider.send(message)
    assert first.accepted
    assert second.accepted
    assert second.provider_message_id == first.provider_message_id
    assert first.provider_message_id == rbm.rbm_message_id(message.message_id)
    assert await sim.wait_idle(5)
    assert [e.status for e in rbm_events(receiver.on("/callbacks/rbm"))] == [
        RecipientStatus.DELIVERED
    ]
    async with session.get(f"{sim.base_url}/_simulator/stats") as response:
        assert response.status == 200
        stats = await response.json()
    assert stats["requests"]["rcs"] == 2
    assert stats["accepted"]["rcs"] == 1
    assert stats["duplicates"]["rcs"] == 1
    assert stats["callbacks_sent"]["rcs"] == 1
    assert stats["callbacks"] == {"sent": 1, "failed": 0}
    assert set(stats["requests"]) == {"sms", "whatsapp", "rcs", "viber"}


async def test_rbm_revoke_before_delivery(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    provider = rbm_provider(session, sim)
    message = outbound(Channel.RCS, SLOW)
    assert (await provider.send(message)).accepted
    assert await provider.revoke(message.message_id, SLOW) is True
    # Withdrawn: no DELIVERED ever comes, and a second revoke finds nothing.
    assert await sim.wait_idle(SLOW_MS / 1000 + 2)
    assert receiver.on("/callbacks/rbm") == []
    assert await provider.revoke(message.message_id, SLOW) is False
    assert (sim.stats.revoked, sim.stats.revoke_too_late) == (1, 1)


async def test_rbm_revoke_after_delivery_is_false(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    provider = rbm_provider(session, sim)
    message = outbound(Channel.RCS, NO_READ)
    assert (await provider.send(message)).accepted
    await receiver.wait_for("/callbacks/rbm", 1)
    assert await provider.revoke(message.message_id, NO_READ) is False
    assert await provider.revoke("camp-9.9.9", NO_READ) is False


async def test_rbm_ttl_expiry_is_a_fallback_failure(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    message = outbound(Channel.RCS, SLOW)
    assert (await rbm_provider(session, sim, ttl_s=0).send(message)).accepted
    (event,) = rbm_events(await receiver.wait_for("/callbacks/rbm", 1))
    assert event.status is RecipientStatus.FAILED
    assert event.fallback
    assert event.error_code == "TTL_EXPIRATION_REVOKED"
    assert await rbm_provider(session, sim).revoke(message.message_id, SLOW) is False


async def test_rbm_wrong_token_holds_the_provider_never_fails_the_recipient(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    result = await rbm_provider(session, sim, token="wrong").send(outbound(Channel.RCS, READER))
    # Retryable: the breaker holds the work until the credential is fixed.
    assert (result.accepted, result.error_class, result.error_code) == (
        False,
        ErrorClass.UNAUTHORIZED,
        "UNAUTHENTICATED",
    )
    assert sim.stats.channel("rcs").accepted == 0


@pytest.mark.parametrize("message_id", ["camp-1.7.1", "", "not-a-uuid", "0" * 32])
async def test_rbm_message_id_must_be_a_uuid(
    sim: Simulator, session: aiohttp.ClientSession, message_id: str
) -> None:
    url = f"{sim.base_url}/v1/phones/{READER}/agentMessages"
    async with session.post(
        url,
        params={"messageId": message_id, "agentId": AGENT},
        json={"contentMessage": {"text": "hi"}},
        headers={"Authorization": f"Bearer {RBM_TOKEN}"},
    ) as response:
        assert response.status == 400
        body = await response.json()
    assert body["error"]["code"] == 400
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    (detail,) = body["error"]["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["fieldViolations"][0]["field"] == "message_id"
    assert sim.stats.channel("rcs").accepted == 0


# -- Viber --------------------------------------------------------------------------------


async def test_viber_user_gets_delivered_and_seen(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await viber_provider(session, sim).send(outbound(Channel.VIBER, vuser(sim, READER)))
    assert result.accepted
    assert result.provider_message_id is not None
    assert result.provider_message_id.isdigit()
    events = viber_events(await receiver.wait_for("/callbacks/viber", 2))
    assert [e.status for e in events] == [RecipientStatus.DELIVERED, RecipientStatus.READ]
    for event in events:
        # Unresolved: the status consumer finds the attempt by message_token.
        assert (event.campaign_id, event.recipient_id, event.attempt) == ("", 0, 0)
        assert event.provider_message_id == result.provider_message_id
    assert receiver.on("/callbacks/viber")[0].json()["user_id"] == vuser(sim, READER)


@pytest.mark.parametrize("receiver_id", [READER, "unknown-user-id="])
async def test_viber_receiver_it_does_not_know_is_status_5(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession, receiver_id: str
) -> None:
    # A phone number is not a Viber user id, even a Viber user's.
    vuser(sim, READER)
    result = await viber_provider(session, sim).send(outbound(Channel.VIBER, receiver_id))
    assert_refused(result, ErrorClass.UNREACHABLE, "5")
    assert result.error_description == "receiverNotRegistered"
    assert await sim.wait_idle(5)
    assert receiver.on("/callbacks/viber") == []


async def test_viber_user_not_subscribed_is_status_6(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    provider = viber_provider(session, sim)
    # Opened the conversation, never subscribed (WA_ONLY's phone is not a Viber user).
    result = await provider.send(outbound(Channel.VIBER, vuser(sim, WA_ONLY)))
    assert_refused(result, ErrorClass.UNREACHABLE, "6")
    assert result.error_description == "receiverNotSubscribed"
    # Subscribed, then left.
    user_id = vuser(sim, READER)
    assert sim.viber_users.remove_user(user_id)
    result = await provider.send(outbound(Channel.VIBER, user_id, 2))
    assert_refused(result, ErrorClass.UNREACHABLE, "6")
    (hook,) = await receiver.wait_for("/callbacks/viber", 1)
    assert viber.verify_signature(VIBER_TOKEN, hook.body, hook.headers["X-Viber-Content-Signature"])
    assert viber.parse_identity(hook.json(), 0) == IdentityEvent(
        channel="viber", address=user_id, linked=False, occurred_at_ms=hook.json()["timestamp"]
    )


async def test_viber_users_are_made_over_http_and_announced_signed(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    contact = "7b0a1c7e-6f0e-4b8e-9d55-1f7f2f4a9c11"
    url = f"{sim.base_url}/_simulator/viber/users"
    async with session.post(url, json={"phone": READER, "context": contact}) as response:
        assert response.status == 201
        made = await response.json()
    assert made == {"user_id": vuser(sim, READER), "subscribed": True}
    assert not made["user_id"].startswith("+")
    hooks = await receiver.wait_for("/callbacks/viber", 2)
    payloads = [h.json() for h in hooks]
    assert sorted(p["event"] for p in payloads) == ["conversation_started", "subscribed"]
    for hook, payload in zip(hooks, payloads, strict=True):
        header = hook.headers["X-Viber-Content-Signature"]
        assert viber.verify_signature(VIBER_TOKEN, hook.body, header)
        assert viber.parse_callback(payload, 0) is None
    (started,) = [p for p in payloads if p["event"] == "conversation_started"]
    assert viber.parse_identity(started, 0) == IdentityEvent(
        channel="viber",
        address=made["user_id"],
        linked=True,
        occurred_at_ms=started["timestamp"],
        contact_ref=contact,
    )
    # The user can be sent to now; removing it posts `unsubscribed`.
    assert (
        await viber_provider(session, sim).send(outbound(Channel.VIBER, made["user_id"]))
    ).accepted
    async with session.delete(f"{url}/{made['user_id']}") as response:
        assert response.status == 204
    async with session.delete(f"{url}/nobody") as response:
        assert response.status == 404
    async with session.post(url, json={"context": contact}) as response:
        assert response.status == 400
    # Many at once, without callbacks (users the bot already had).
    many = [{"phone": p, "announce": False} for p in (NO_READ, RCS_ONLY)]
    async with session.post(url, json=many) as response:
        assert response.status == 201
        assert await response.json() == [
            {"user_id": vuser(sim, NO_READ), "subscribed": True},
            {"user_id": vuser(sim, RCS_ONLY), "subscribed": False},
        ]
    async with session.post(url, json=[{"phone": READER}, {"phone": 5}]) as response:
        assert response.status == 400


async def test_viber_wrong_token_is_permanent(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    result = await viber_provider(session, sim, token="wrong").send(
        outbound(Channel.VIBER, vuser(sim, READER))
    )
    assert_refused(result, ErrorClass.PERMANENT, "2")


# -- behaviour ----------------------------------------------------------------------------


async def send_each(session: aiohttp.ClientSession, sim: Simulator, **kw: Any) -> list[SendResult]:
    return [
        await twilio_provider(session, sim, **kw).send(outbound(Channel.SMS, READER)),
        await wa_provider(session, sim, **kw).send(outbound(Channel.WHATSAPP, READER)),
        await rbm_provider(session, sim, **kw).send(outbound(Channel.RCS, READER)),
        await viber_provider(session, sim, **kw).send(outbound(Channel.VIBER, vuser(sim, READER))),
    ]


async def test_error_5xx_ratio_one_refuses_every_send(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    async with simulator(receiver, behaviour=Behaviour(error_5xx_ratio=1.0)) as sim:
        for _ in range(2):
            results = await send_each(session, sim)
            assert [r.error_class for r in results] == [ErrorClass.RETRYABLE] * 4
        assert sim.stats.accepted == 0
        assert sim.stats.rejected == 8


async def test_rate_429_ratio_one_rate_limits_every_send(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    async with simulator(receiver, behaviour=Behaviour(rate_429_ratio=1.0)) as sim:
        results = await send_each(session, sim)
    assert [r.error_class for r in results] == [ErrorClass.RATE_LIMITED] * 4
    assert [r.error_code for r in results] == ["20429", "130429", "RESOURCE_EXHAUSTED", "12"]
    assert [r.retry_after_s for r in results] == [1.0] * 4


async def test_timeout_ratio_one_takes_the_message_and_never_answers(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    async with simulator(receiver, behaviour=Behaviour(timeout_ratio=1.0)) as sim:
        results = await send_each(session, sim, timeout_s=0.3)
        assert [(r.error_class, r.error_code) for r in results] == [
            (ErrorClass.AMBIGUOUS, "timeout")
        ] * 4
        # The sends were taken: the callbacks still come.
        await receiver.wait_for("/callbacks/whatsapp", 3)
        await receiver.wait_for("/callbacks/rbm", 2)
        await receiver.wait_for("/callbacks/viber", 2)
        assert sim.stats.accepted == 4
        assert sim.stats.timeouts == 4
        # Retrying the ambiguous RBM send cannot send twice: the messageId is known.
        retry = await rbm_provider(session, sim, timeout_s=0.3).send(outbound(Channel.RCS, READER))
        assert retry.error_class is ErrorClass.AMBIGUOUS
        assert sim.stats.channel("rcs").duplicates == 1
        assert sim.stats.channel("rcs").accepted == 1


async def test_latency_is_added(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    async with simulator(receiver, behaviour=Behaviour(latency_ms=100)) as sim:
        provider = viber_provider(session, sim)
        started = time.monotonic()
        results = [
            await provider.send(outbound(Channel.VIBER, vuser(sim, READER), n))
            for n in range(1, 11)
        ]
        elapsed = time.monotonic() - started
    assert all(r.accepted for r in results)
    assert 0.5 < elapsed < 3.0


async def test_duplicate_and_out_of_order_callbacks(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    behaviour = Behaviour(duplicate_callback_ratio=1.0, out_of_order_ratio=1.0)
    async with simulator(receiver, behaviour=behaviour) as sim:
        result = await wa_provider(session, sim).send(outbound(Channel.WHATSAPP, READER))
        assert result.accepted
        events = wa_events(await receiver.wait_for("/callbacks/whatsapp", 4))
        assert await sim.wait_idle(5)
    assert [e.status.value for e in events] == ["delivered", "read", "sent", "sent"]
    assert sim.stats.callbacks_sent == 4


async def test_slow_numbers_are_delivered_late(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    assert (
        await viber_provider(session, sim).send(outbound(Channel.VIBER, vuser(sim, SLOW)))
    ).accepted
    await receiver.wait_for("/callbacks/viber", 1)
    assert time.monotonic() - started >= SLOW_MS / 1000


async def test_fault_hook_covers_every_channel(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.fail_next(4, 503)
    results = await send_each(session, sim)
    assert [r.error_class for r in results] == [ErrorClass.RETRYABLE] * 4
    # Only the next four requests fail.
    assert all(r.accepted for r in await send_each(session, sim))


async def test_duplicate_sends_are_counted_per_channel(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    callback = f"{receiver.base_url}/callbacks/twilio?m={message_id('camp-1', 1, 1)}"
    for _ in range(2):
        assert (
            await twilio_provider(session, sim).send(
                outbound(Channel.SMS, READER, callback_url=callback)
            )
        ).accepted
        assert (await wa_provider(session, sim).send(outbound(Channel.WHATSAPP, READER))).accepted
        assert (
            await viber_provider(session, sim).send(outbound(Channel.VIBER, vuser(sim, READER)))
        ).accepted
    # A different message to the same number is not a duplicate.
    assert (
        await viber_provider(session, sim).send(outbound(Channel.VIBER, vuser(sim, READER), 2))
    ).accepted
    async with session.get(f"{sim.base_url}/_simulator/stats") as response:
        stats = await response.json()
    assert stats["duplicates"] == {"sms": 1, "whatsapp": 1, "rcs": 0, "viber": 1}
    assert stats["accepted"] == {"sms": 2, "whatsapp": 2, "rcs": 0, "viber": 3}
    assert await sim.wait_idle(5)
    assert len(receiver.on("/callbacks/twilio")) == 4
