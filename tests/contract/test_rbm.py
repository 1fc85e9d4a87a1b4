"""RBM against the vendor's own artifacts: google-auth (Google's auth library) mints the access
tokens, and the payloads of Google's RBM reference pages (tests/contract/fixtures/rbm, each
naming its source) are the oracle for the request herald sends, the callbacks it parses and
the error answers it classifies. The webhook signature is checked against the formula Google
documents, computed here independently of herald's code, in both directions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import google.auth.exceptions
import google.auth.transport.requests
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus, is_unresolved
from herald.providers import rbm
from herald.providers.base import ErrorClass, OutboundMessage
from herald.providers.rbm import RbmProvider, rbm_message_id
from herald.providers.tokens import ServiceAccountToken
from herald.settings import Secret
from herald.simulator import rbm as sim_rbm
from herald.simulator.behaviour import Behaviour
from herald.simulator.callbacks import Dispatcher, Step
from herald.simulator.desk import Desk
from herald.simulator.stats import SimulatorStats

FIXTURES = Path(__file__).parent / "fixtures" / "rbm"
SCOPE = "https://www.googleapis.com/auth/rcsbusinessmessaging"
AGENT = "welcome-bot@rbm.goog"
DEV_TOKEN = "contract-dev-token"
CLIENT_TOKEN = "SJENCPGJESMGUFPY"
EMAIL = "rbm-agent@herald-contract.iam.gserviceaccount.com"
READER = "+15551234500"  # the simulator's RCS user who also reads
NO_RCS = "+15551234505"  # the simulator's WhatsApp-only user
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")


def fixture(name: str) -> dict[str, Any]:
    data = orjson.loads((FIXTURES / name).read_bytes())
    assert str(data["source"]).startswith("https://"), name  # every fixture names its source
    return dict(data)


def documented_signature(client_token: str, data: bytes) -> str:
    """Google's webhook guide: base64 of HMAC-SHA512 over the decoded message.data, keyed by
    the clientToken (written from the guide, not from herald's code)."""
    return base64.b64encode(hmac.new(client_token.encode(), data, hashlib.sha512).digest()).decode()


# -- a service-account key, as the Google Cloud console issues it -------------------------------


@dataclass(frozen=True)
class Key:
    pem: str
    info: dict[str, Any]

    def json(self, token_uri: str) -> Secret:
        return Secret(orjson.dumps({**self.info, "token_uri": token_uri}).decode())


def make_key(email: str = EMAIL) -> Key:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "herald-contract",
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return Key(pem=pem, info=info)


@pytest.fixture(scope="module")
def key() -> Key:
    return make_key()


# -- the simulated RBM API and token endpoint ----------------------------------------------------


@dataclass
class Rbm:
    desk: sim_rbm.RbmDesk
    base_url: str
    stats: SimulatorStats

    @property
    def token_uri(self) -> str:
        return self.base_url + sim_rbm.TOKEN_PATH


@pytest.fixture
async def sim(key: Key) -> AsyncIterator[Rbm]:
    stats = SimulatorStats()
    dispatcher = Dispatcher(stats=stats, concurrency=2, max_attempts=1)
    desk = Desk(
        stats=stats,
        dispatcher=dispatcher,
        behaviour=Behaviour(),
        callback_delay_s=0.001,
        callback_base_url="http://127.0.0.1:9",  # callbacks are not this file's subject
    )
    rbm_desk = sim_rbm.RbmDesk(
        desk,
        token=Secret(DEV_TOKEN),
        client_token=Secret(CLIENT_TOKEN),
        service_accounts={EMAIL: key.pem},
    )
    app = web.Application()
    app.add_routes(rbm_desk.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Rbm(desk=rbm_desk, base_url=f"http://127.0.0.1:{port}", stats=stats)
    finally:
        desk.release.set()
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def outbound(to: str = READER, mid: str = "camp-c.7.1") -> OutboundMessage:
    return OutboundMessage(
        message_id=mid, channel=Channel.RCS, to=to, sender=AGENT, body="Hello, world!",
        callback_url="",
    )  # fmt: skip


def adapter(session: aiohttp.ClientSession, base_url: str, auth: Any) -> RbmProvider:
    return RbmProvider(
        session=session, base_url=base_url, agent_id=AGENT, auth=auth, timeout_s=10.0
    )


# -- tokens: google-auth is the client of the simulator's token endpoint ------------------------


def google_auth_refresh(credentials: service_account.Credentials) -> None:
    credentials.refresh(google.auth.transport.requests.Request())  # type: ignore[no-untyped-call]


async def test_google_auth_mints_a_token_the_api_accepts(
    sim: Rbm, key: Key, session: aiohttp.ClientSession
) -> None:
    credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        orjson.loads(key.json(sim.token_uri).value), scopes=[SCOPE]
    )
    # google-auth's refresh is synchronous; the simulator serves on this event loop.
    await anyio.to_thread.run_sync(google_auth_refresh, credentials)
    assert credentials.token and credentials.valid and credentials.expiry is not None
    url = f"{sim.base_url}/v1/phones/{READER}/agentMessages"
    async with session.post(
        url,
        params={"messageId": str(uuid.uuid4()), "agentId": AGENT},
        json={"contentMessage": {"text": "hi"}},
        headers={"Authorization": f"Bearer {credentials.token}"},
    ) as response:
        assert response.status == 200
        assert (await response.json())["contentMessage"] == {"text": "hi"}
    assert sim.desk.tokens_issued == 1


async def test_google_auth_is_refused_for_a_key_the_platform_does_not_know(sim: Rbm) -> None:
    stranger = make_key(EMAIL)  # same account name, another key: the signature fails
    credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        orjson.loads(stranger.json(sim.token_uri).value), scopes=[SCOPE]
    )
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        await anyio.to_thread.run_sync(google_auth_refresh, credentials)
    assert (sim.desk.tokens_issued, sim.desk.tokens_refused) == (0, 1)


async def test_herald_mints_through_the_same_path_and_caches_the_token(
    sim: Rbm, key: Key, session: aiohttp.ClientSession
) -> None:
    auth = ServiceAccountToken(key.json(sim.token_uri))
    provider = adapter(session, sim.base_url, auth)
    for n in range(1, 4):
        assert (await provider.send(outbound(mid=f"camp-c.{n}.1"))).accepted
    assert sim.desk.tokens_issued == 1
    assert sim.stats.channel("rcs").accepted == 3


async def test_an_expired_token_is_refreshed_and_the_send_repeated_once(
    sim: Rbm, key: Key, session: aiohttp.ClientSession
) -> None:
    provider = adapter(session, sim.base_url, ServiceAccountToken(key.json(sim.token_uri)))
    assert (await provider.send(outbound(mid="camp-c.1.1"))).accepted
    sim.desk.expire_tokens()  # the hour is up (or Google revoked the token)
    result = await provider.send(outbound(mid="camp-c.2.1"))
    assert result.accepted
    assert sim.desk.tokens_issued == 2
    rcs = sim.stats.channel("rcs")
    assert (rcs.rejected, rcs.accepted) == (1, 2)  # one 401, then the repeat went through


async def test_tokens_near_expiry_are_refreshed_before_a_send_meets_a_401(
    sim: Rbm, key: Key, session: aiohttp.ClientSession
) -> None:
    sim.desk.token_ttl_s = 240.0  # already inside herald's five-minute margin when issued
    provider = adapter(session, sim.base_url, ServiceAccountToken(key.json(sim.token_uri)))
    for n in range(1, 4):
        assert (await provider.send(outbound(mid=f"camp-c.{n}.1"))).accepted
    assert sim.desk.tokens_issued == 3
    assert sim.stats.channel("rcs").rejected == 0


async def test_a_deleted_key_holds_the_provider_and_fails_no_recipient(
    sim: Rbm, key: Key, session: aiohttp.ClientSession
) -> None:
    provider = adapter(session, sim.base_url, ServiceAccountToken(key.json(sim.token_uri)))
    assert (await provider.send(outbound(mid="camp-c.1.1"))).accepted
    sim.desk.distrust(EMAIL)
    sim.desk.expire_tokens()
    result = await provider.send(outbound(mid="camp-c.2.1"))
    # UNAUTHORIZED trips the breaker, which holds the account's work; nobody fails for it.
    assert (result.accepted, result.error_class, result.error_code) == (
        False,
        ErrorClass.UNAUTHORIZED,
        rbm.UNAUTHENTICATED,
    )
    assert result.error_class not in (ErrorClass.PERMANENT, ErrorClass.UNREACHABLE)
    sim.desk.trust(EMAIL, key.pem)  # the operator fixes the key: the next send goes through
    assert (await provider.send(outbound(mid="camp-c.2.1"))).accepted


# -- the request herald sends, against agentMessages.create as documented ----------------------


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[Seen]]]:
    seen: list[Seen] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(
            Seen(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=await request.read(),
            )
        )
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


class Fixed:
    async def token(self) -> str:
        return "ya29.contract"

    async def refresh(self, refused: str) -> str:
        return refused

    def secrets(self) -> tuple[str, ...]:
        return ("ya29.contract",)


@pytest.mark.parametrize("ttl_s", [None, 600])
async def test_the_create_request_is_the_documented_one(
    recorder: tuple[str, list[Seen]], session: aiohttp.ClientSession, ttl_s: int | None
) -> None:
    spec = fixture("agent_message_create.json")
    base_url, seen = recorder
    provider = RbmProvider(
        session=session, base_url=base_url, agent_id=AGENT, auth=Fixed(), timeout_s=5.0,
        ttl_s=ttl_s,
    )  # fmt: skip
    message = outbound()
    assert (await provider.send(message)).accepted
    (request,) = seen
    assert request.method == spec["http"]["method"]
    # {parent=phones/*}/agentMessages with parent phones/{E.164}
    match = re.fullmatch(r"/v1/phones/([^/]+)/agentMessages", request.path)
    assert match is not None and E164.match(match.group(1))
    # Query: the documented parameters, each required one present, nothing else.
    assert set(request.query) == set(spec["query"])
    message_id = uuid.UUID(request.query["messageId"])
    assert str(message_id) == request.query["messageId"]  # canonical RFC 4122 text
    assert message_id.variant == uuid.RFC_4122
    assert request.query["messageId"] == rbm_message_id(message.message_id)
    assert request.query["agentId"] == AGENT
    assert request.headers["Authorization"] == "Bearer ya29.contract"
    assert request.headers["Content-Type"].startswith("application/json")
    body = orjson.loads(request.body)
    (content_fields,) = spec["body"]["contentMessage"]["oneOf"]
    assert [f for f in body["contentMessage"] if f in content_fields] == ["text"]
    assert not {"ttl", "expireTime"} <= set(body)  # a oneOf: never both
    if ttl_s is None:
        assert "ttl" not in body
    else:
        assert DURATION.match(body["ttl"])
    assert isinstance(body["messageTrafficType"], str)
    assert len(request.body) < 250_000


async def test_a_resend_of_an_attempt_reuses_its_message_id_and_revoke_names_it(
    recorder: tuple[str, list[Seen]], session: aiohttp.ClientSession
) -> None:
    base_url, seen = recorder
    provider = adapter(session, base_url, Fixed())
    await provider.send(outbound(mid="camp-c.7.1"))
    await provider.send(outbound(mid="camp-c.7.1"))  # a crash-restart resend
    await provider.send(outbound(mid="camp-c.7.2"))  # the next attempt
    await provider.revoke("camp-c.7.1", READER)
    first, again, other, revoke = seen
    assert first.query["messageId"] == again.query["messageId"] != other.query["messageId"]
    # phones.agentMessages.delete: DELETE /v1/phones/{E.164}/agentMessages/{messageId}
    assert revoke.method == "DELETE"
    assert revoke.path == f"/v1/phones/{READER}/agentMessages/{first.query['messageId']}"
    assert revoke.query == {"agentId": AGENT}


# -- callbacks: every documented shape, signed as Google documents ------------------------------


def push_of(event: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The documented Pub/Sub envelope carrying event, and its documented signature."""
    envelope = fixture("pubsub_push.json")["payload"]
    data = orjson.dumps(event)
    envelope["message"]["data"] = base64.b64encode(data).decode()
    return envelope, documented_signature(CLIENT_TOKEN, data)


def event_of(name: str, message_id: str) -> dict[str, Any]:
    event = dict(fixture(name)["payload"])
    if event.get("messageId") == "{messageId}":
        event["messageId"] = message_id
    return event


MID = rbm_message_id("camp-c.7.1")


@pytest.mark.parametrize(
    ("name", "status", "fallback"),
    [
        ("user_event_delivered.json", RecipientStatus.DELIVERED, False),
        ("user_event_read.json", RecipientStatus.READ, False),
        ("server_event_ttl_revoked.json", RecipientStatus.FAILED, True),
    ],
)
def test_status_events_map_back_to_the_attempt(
    name: str, status: RecipientStatus, fallback: bool
) -> None:
    payload, signature = push_of(event_of(name, MID))
    assert rbm.verify_signature(CLIENT_TOKEN, payload, signature)
    assert not rbm.verify_signature("another-client-token", payload, signature)
    (event,) = rbm.parse_webhook(payload, 1)
    # RBM echoes only the messageId: the status consumer resolves it by the attempt row's
    # provider_message_id, which is exactly what the send returned.
    assert is_unresolved(event) and event.provider_message_id == MID
    assert (event.status, event.fallback, event.channel) == (status, fallback, "rcs")
    assert event.occurred_at_ms > 1


@pytest.mark.parametrize(
    "name",
    [
        "user_event_is_typing.json",
        "user_event_subscribe.json",
        "user_event_unsubscribe.json",
        "user_message_text.json",
        "server_event_ttl_revoke_failed.json",  # delivery may still come: wait for it
    ],
)
def test_other_documented_events_are_ignored_not_refused(name: str) -> None:
    payload, signature = push_of(event_of(name, MID))
    assert rbm.verify_signature(CLIENT_TOKEN, payload, signature)
    batch = rbm.parse_webhook(payload, 1)
    assert batch == [] and batch.skipped == 0


def test_registration_handshake_echoes_the_secret() -> None:
    spec = fixture("webhook_registration.json")
    payload = spec["payload"]
    assert rbm.registration_response(payload, payload["clientToken"]) == spec["answer"]["body"]
    assert rbm.registration_response(payload, "another-client-token") is None


def simulator_push(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    encode = sim_rbm.encoder(CLIENT_TOKEN)
    step = Step(label=event["eventType"], payload=sim_rbm.step_payload(event), delay_s=0)
    body, headers = encode("http://herald/callbacks/rbm", AGENT, [step])
    return orjson.loads(body), dict(headers)


@pytest.mark.parametrize(
    ("documented", "make"),
    [
        ("user_event_delivered.json", sim_rbm.user_event),
        ("server_event_ttl_revoked.json", sim_rbm.server_event),
    ],
)
def test_the_simulator_signs_and_shapes_events_as_documented(documented: str, make: Any) -> None:
    reference = fixture(documented)["payload"]
    event = make(phone=READER, event_type=reference["eventType"], message_id=MID, agent_id=AGENT)
    payload, headers = simulator_push(event)
    data = base64.b64decode(payload["message"]["data"])
    assert headers["X-Goog-Signature"] == documented_signature(CLIENT_TOKEN, data)
    decoded = orjson.loads(data)
    assert set(decoded) == set(reference)  # the documented fields, no others
    envelope = fixture("pubsub_push.json")["payload"]
    assert set(payload) == set(envelope)
    assert {"data", "messageId", "publishTime"} <= set(payload["message"])
    (parsed,) = rbm.parse_webhook(payload, 1)
    assert parsed.provider_message_id == MID


# -- error answers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        ("404", ErrorClass.UNREACHABLE),  # not an RCS user: the next channel now
        ("429", ErrorClass.RATE_LIMITED),  # back off; the messageId makes the repeat safe
        ("401", ErrorClass.UNAUTHORIZED),  # after the refresh: the breaker, never the recipient
        ("400", ErrorClass.PERMANENT),
    ],
)
def test_documented_error_bodies_are_classified(status: str, error_class: ErrorClass) -> None:
    answer = fixture("errors.json")["answers"][status]
    result = rbm.result_from_response(int(status), orjson.dumps(answer["body"]), "2", MID)
    assert (result.accepted, result.error_class) == (False, error_class)
    assert result.error_code == answer["body"]["error"]["status"]
    assert result.retry_after_s == (2.0 if status == "429" else None)


def _same_shape(answer: dict[str, Any], documented: dict[str, Any]) -> None:
    assert set(answer) == {"error"}
    assert {"code", "message", "status"} <= set(answer["error"])
    assert answer["error"]["code"] == documented["error"]["code"]
    assert answer["error"]["status"] == documented["error"]["status"]


@pytest.mark.parametrize("status", ["404", "429", "401"])
async def test_the_simulator_answers_errors_as_documented(
    sim: Rbm, session: aiohttp.ClientSession, status: str
) -> None:
    documented = fixture("errors.json")["answers"][status]["body"]
    to, token = READER, DEV_TOKEN
    if status == "404":
        to = NO_RCS
    elif status == "429":
        sim.desk._desk.faults.append(429)
    else:
        token = "ya29.expired"
    async with session.post(
        f"{sim.base_url}/v1/phones/{to}/agentMessages",
        params={"messageId": MID, "agentId": AGENT},
        json={"contentMessage": {"text": "hi"}},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == int(status)
        _same_shape(await response.json(), documented)
        if status == "429":
            assert response.headers["Retry-After"]
    provider = adapter(session, sim.base_url, Fixed() if status == "401" else _Dev())
    if status == "429":
        sim.desk._desk.faults.append(429)
    result = await provider.send(outbound(to=to))
    expected = {"404": ErrorClass.UNREACHABLE, "429": ErrorClass.RATE_LIMITED}
    assert result.error_class is expected.get(status, ErrorClass.UNAUTHORIZED)


async def test_a_message_id_that_is_not_a_uuid_is_invalid_argument(
    sim: Rbm, session: aiohttp.ClientSession
) -> None:
    documented = fixture("errors.json")["answers"]["400"]["body"]
    async with session.post(
        f"{sim.base_url}/v1/phones/{READER}/agentMessages",
        params={"messageId": "camp-c.7.1", "agentId": AGENT},
        json={"contentMessage": {"text": "hi"}},
        headers={"Authorization": f"Bearer {DEV_TOKEN}"},
    ) as response:
        assert response.status == 400
        answer = await response.json()
    _same_shape(answer, documented)
    assert answer["error"]["details"][0]["@type"] == documented["error"]["details"][0]["@type"]


class _Dev(Fixed):
    async def token(self) -> str:
        return DEV_TOKEN


def _all_fixtures() -> Iterator[Path]:
    return iter(sorted(FIXTURES.glob("*.json")))


@pytest.mark.parametrize("path", list(_all_fixtures()), ids=lambda p: p.name)
def test_every_fixture_names_its_source(path: Path) -> None:
    data = orjson.loads(path.read_bytes())
    assert str(data["source"]).startswith("https://")
