"""TwilioProvider against the local simulator, with a real callback receiver."""

from __future__ import annotations

import asyncio
import email.utils
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus, message_id
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.providers.twilio import (
    TwilioProvider,
    basic_authorization,
    parse_callback,
    verify_signature,
)
from herald.settings import Secret
from herald.simulator import Simulator
from herald.simulator.app import backoff_ms, num_segments, parse_basic_authorization

SID = "AC" + "0" * 32
TOKEN = "sim-test-token"
SENDER = "+15005550006"
DELIVERED_TO = "+15005550100"
UNREACHABLE_TO = "+15005550185"
INVALID_TO = "+15005550195"
OPTED_OUT_TO = "+15005550198"


@dataclass(frozen=True, kw_only=True)
class Received:
    url: str
    query_m: str | None
    params: dict[str, str]
    signature: str | None


@dataclass(kw_only=True)
class Receiver:
    """Records status callbacks; can answer the first few with 500 to force retries."""

    fail_first: int = 0
    attempts: int = 0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, mid: str) -> str:
        return f"http://127.0.0.1:{self.port}/callbacks/twilio?m={mid}"

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.attempts += 1
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500)
        self.received.append(
            Received(
                url=str(request.url),
                query_m=request.query.get("m"),
                params={k: v for k, v in form.items() if isinstance(v, str)},
                signature=request.headers.get("X-Twilio-Signature"),
            )
        )
        self.changed.set()
        return web.Response(status=204)

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Received]:
        async with asyncio.timeout(timeout_s):
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.received


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/callbacks/twilio", rec.handle)
    runner, rec.port = await serve(app)
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
async def sim(receiver: Receiver) -> AsyncIterator[Simulator]:
    # Depends on the receiver so it is torn down first and can drain callbacks into it.
    simulator = Simulator(
        host="127.0.0.1",
        port=0,
        account_sid=SID,
        auth_token=Secret(TOKEN),
        callback_delay_ms=5,
        callback_concurrency=4,
        callback_max_attempts=4,
    )
    async with simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def provider(
    session: aiohttp.ClientSession, base_url: str, *, token: str = TOKEN, timeout_s: float = 5.0
) -> TwilioProvider:
    return TwilioProvider(
        session=session,
        base_url=base_url,
        account_sid=SID,
        auth_token=Secret(token),
        timeout_s=timeout_s,
    )


def outbound(to: str, callback_url: str = "", recipient: int = 1) -> OutboundMessage:
    return OutboundMessage(
        message_id=message_id("camp-1", recipient, 1),
        channel=Channel.SMS,
        to=to,
        sender=SENDER,
        body="Hello from herald",
        callback_url=callback_url,
    )


def assert_rejected(result: SendResult, error_class: ErrorClass, code: str) -> None:
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code == code
    assert result.provider_message_id is None


async def test_delivered_number_gets_signed_callbacks_in_order(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    mid = message_id("camp-1", 7, 1)
    callback_url = receiver.url(mid)
    result = await provider(session, sim.base_url).send(outbound(DELIVERED_TO, callback_url, 7))

    assert result.accepted
    assert result.error_class is None
    assert result.provider_message_id is not None
    assert re.fullmatch(r"SM[0-9a-f]{32}", result.provider_message_id)

    got = await receiver.wait_for(2)
    assert [r.params["MessageStatus"] for r in got] == ["sent", "delivered"]
    for r in got:
        assert r.url == callback_url
        assert r.query_m == mid
        assert r.params["MessageSid"] == r.params["SmsSid"] == result.provider_message_id
        assert r.params["MessageStatus"] == r.params["SmsStatus"]
        assert r.params["AccountSid"] == SID
        assert r.params["To"] == DELIVERED_TO
        assert r.params["From"] == SENDER
        assert r.params["ApiVersion"] == "2010-04-01"
        assert "ErrorCode" not in r.params
        assert verify_signature(callback_url, r.params, TOKEN, r.signature)
        assert not verify_signature(callback_url, r.params, "other-token", r.signature)

    event = parse_callback(got[-1].params, got[-1].query_m or "", 123)
    assert event is not None
    assert (event.campaign_id, event.recipient_id, event.attempt) == ("camp-1", 7, 1)
    assert event.status is RecipientStatus.DELIVERED

    assert await sim.wait_idle(5.0)
    assert sim.stats.requests == 1
    assert sim.stats.accepted == 1
    assert sim.stats.rejected == 0
    assert sim.stats.callbacks_sent == 2
    assert sim.stats.callbacks_failed == 0
    assert sim.sent_to == {DELIVERED_TO: 1}


async def test_undelivered_number_reports_error_code(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    mid = message_id("camp-1", 3, 1)
    result = await provider(session, sim.base_url).send(
        outbound(UNREACHABLE_TO, receiver.url(mid), 3)
    )
    assert result.accepted
    got = await receiver.wait_for(2)
    assert [(r.params["MessageStatus"], r.params.get("ErrorCode")) for r in got] == [
        ("sent", None),
        ("undelivered", "30003"),
    ]
    event = parse_callback(got[-1].params, mid, 0)
    assert event is not None
    assert event.status is RecipientStatus.FAILED
    assert event.accepted
    assert event.error_description == "handset unreachable"


async def test_invalid_number_is_permanent(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    result = await provider(session, sim.base_url).send(
        outbound(INVALID_TO, receiver.url("camp-1.1.1"))
    )
    assert_rejected(result, ErrorClass.PERMANENT, "21211")
    assert sim.stats.rejected == 1
    assert sim.stats.accepted == 0
    assert not sim.sent_to
    await asyncio.sleep(0.05)
    assert receiver.attempts == 0


async def test_unsubscribed_number_is_opted_out(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    result = await provider(session, sim.base_url).send(outbound(OPTED_OUT_TO))
    assert_rejected(result, ErrorClass.OPTED_OUT, "21610")
    assert result.error_description


async def test_wrong_auth_token_is_rejected_without_leaking_it(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    wrong = "wrong-token-value"
    result = await provider(session, sim.base_url, token=wrong).send(outbound(DELIVERED_TO))
    assert_rejected(result, ErrorClass.UNAUTHORIZED, "20003")
    assert wrong not in (result.error_description or "")
    assert TOKEN not in (result.error_description or "")
    assert sim.stats.accepted == 0
    assert sim.stats.rejected == 1


async def test_fault_hook_503_is_retryable(sim: Simulator, session: aiohttp.ClientSession) -> None:
    twilio = provider(session, sim.base_url)
    sim.fail_next(1, 503)
    result = await twilio.send(outbound(DELIVERED_TO))
    assert_rejected(result, ErrorClass.RETRYABLE, "20503")
    # Only the next request fails.
    assert (await twilio.send(outbound(DELIVERED_TO))).accepted
    assert sim.sent_to[DELIVERED_TO] == 1


async def test_fault_hook_429_is_rate_limited(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.fail_next(1, 429)
    result = await provider(session, sim.base_url).send(outbound(DELIVERED_TO))
    assert_rejected(result, ErrorClass.RATE_LIMITED, "20429")
    assert result.retry_after_s == 1.0


async def test_nothing_listening_is_retryable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await provider(session, f"http://127.0.0.1:{port}").send(outbound(DELIVERED_TO))
    assert_rejected(result, ErrorClass.RETRYABLE, "connect_failed")


async def test_read_timeout_is_ambiguous(session: aiohttp.ClientSession) -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await request.post()
        await release.wait()
        return web.Response(status=201)

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", stall)
    runner, port = await serve(app)
    try:
        twilio = provider(session, f"http://127.0.0.1:{port}", timeout_s=0.3)
        result = await twilio.send(outbound(DELIVERED_TO))
    finally:
        release.set()
        await runner.cleanup()
    assert_rejected(result, ErrorClass.AMBIGUOUS, "timeout")


async def test_dropped_connection_is_ambiguous(session: aiohttp.ClientSession) -> None:
    async def drop(request: web.Request) -> web.Response:
        await request.post()
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=201)

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", drop)
    runner, port = await serve(app)
    try:
        result = await provider(session, f"http://127.0.0.1:{port}").send(outbound(DELIVERED_TO))
    finally:
        await runner.cleanup()
    assert_rejected(result, ErrorClass.AMBIGUOUS, "connection_lost")


async def test_provider_scrubs_token_echoed_by_server(session: aiohttp.ClientSession) -> None:
    async def echo(request: web.Request) -> web.Response:
        body = {"code": 21211, "message": f"bad request for {TOKEN}", "status": 400}
        return web.json_response(body, status=400)

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", echo)
    runner, port = await serve(app)
    try:
        result = await provider(session, f"http://127.0.0.1:{port}").send(outbound(DELIVERED_TO))
    finally:
        await runner.cleanup()
    assert result.error_description is not None
    assert TOKEN not in result.error_description
    assert TOKEN not in repr(result)


async def test_message_resource_and_validation(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    url = f"{sim.base_url}/2010-04-01/Accounts/{SID}/Messages.json"
    auth = {"Authorization": basic_authorization(SID, TOKEN)}

    form = {"To": DELIVERED_TO, "From": SENDER, "Body": "hi"}
    async with session.post(url, data=form, headers=auth) as response:
        assert response.status == 201
        resource = await response.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", resource["sid"])
    assert resource["status"] == "queued"
    assert resource["to"] == DELIVERED_TO
    assert resource["from"] == SENDER
    assert resource["body"] == "hi"
    assert resource["num_segments"] == "1"
    assert resource["account_sid"] == SID
    assert resource["uri"].endswith(f"/Messages/{resource['sid']}.json")
    assert email.utils.parsedate_to_datetime(resource["date_created"]).tzinfo is not None

    cases = [
        ({"To": "5005550100", "From": SENDER, "Body": "hi"}, 400, 21211),
        ({"To": "+1234567", "From": SENDER, "Body": "hi"}, 400, 21211),
        ({"To": DELIVERED_TO, "From": SENDER}, 400, 21602),
        ({"To": DELIVERED_TO, "Body": "hi"}, 400, 21603),
        ({"To": DELIVERED_TO, "From": SENDER, "Body": "x" * 1601}, 400, 21617),
        ({**form, "StatusCallback": "not a url"}, 400, 21609),
    ]
    for data, status, code in cases:
        async with session.post(url, data=data, headers=auth) as response:
            assert response.status == status
            error = await response.json()
        assert error["code"] == code
        assert error["status"] == status
        assert error["more_info"].endswith(str(code))

    other = f"{sim.base_url}/2010-04-01/Accounts/AC{'1' * 32}/Messages.json"
    other_auth = {"Authorization": basic_authorization(f"AC{'1' * 32}", TOKEN)}
    async with session.post(other, data=form, headers=other_auth) as r:
        assert r.status == 401
        assert (await r.json())["code"] == 20003
    async with session.post(url, data=form) as response:
        assert response.status == 401
    assert sim.stats.requests == 9
    assert sim.stats.accepted == 1
    assert sim.stats.rejected == 8


async def test_callbacks_are_retried_until_2xx(
    sim: Simulator, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.fail_first = 2
    result = await provider(session, sim.base_url).send(
        outbound(DELIVERED_TO, receiver.url("camp-1.1.1"))
    )
    assert result.accepted
    got = await receiver.wait_for(2)
    assert [r.params["MessageStatus"] for r in got] == ["sent", "delivered"]
    assert receiver.attempts == 4
    assert await sim.wait_idle(5.0)
    assert sim.stats.callbacks_sent == 2
    assert sim.stats.callbacks_failed == 0


async def test_undeliverable_callbacks_are_dropped_after_max_attempts(
    session: aiohttp.ClientSession,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    simulator = Simulator(
        host="127.0.0.1",
        port=0,
        account_sid=SID,
        auth_token=Secret(TOKEN),
        callback_delay_ms=1,
        callback_max_attempts=2,
    )
    async with simulator:
        result = await provider(session, simulator.base_url).send(
            outbound(DELIVERED_TO, f"http://127.0.0.1:{dead_port}/cb?m=camp-1.1.1")
        )
        assert result.accepted
        assert await simulator.wait_idle(5.0)
    assert simulator.stats.callbacks_sent == 0
    assert simulator.stats.callbacks_failed == 2


async def test_stop_drains_queued_callbacks(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    simulator = Simulator(
        host="127.0.0.1",
        port=0,
        account_sid=SID,
        auth_token=Secret(TOKEN),
        callback_delay_ms=50,
    )
    await simulator.start()
    try:
        twilio = provider(session, simulator.base_url)
        for recipient in range(1, 6):
            mid = message_id("camp-1", recipient, 1)
            result = await twilio.send(outbound(DELIVERED_TO, receiver.url(mid), recipient))
            assert result.accepted
    finally:
        await simulator.stop()
    assert len(receiver.received) == 10
    assert simulator.stats.callbacks_sent == 10
    assert simulator.sent_to[DELIVERED_TO] == 5
    # The port is closed after stop.
    result = await provider(session, simulator.base_url).send(outbound(DELIVERED_TO))
    assert result.error_class is ErrorClass.RETRYABLE


@pytest.mark.parametrize(
    ("attempt", "expected_ms"),
    [(1, 100), (2, 200), (3, 400), (6, 3200), (7, 5000), (50, 5000)],
)
def test_backoff_ms(attempt: int, expected_ms: int) -> None:
    assert backoff_ms(attempt) == expected_ms


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("{" * 80, 1),
        ("{" * 81, 2),
        ("ü" * 70, 1),
        ("✓" * 70, 1),
        ("✓" * 71, 2),
        ("😀" * 35, 1),
        ("😀" * 36, 2),
    ],
)
def test_num_segments(body: str, segments: int) -> None:
    assert num_segments(body) == segments


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic_authorization(SID, TOKEN), (SID, TOKEN)),
        (basic_authorization(SID, "pa:ss"), (SID, "pa:ss")),
        ("basic " + basic_authorization(SID, "").split(" ", 1)[1], (SID, "")),
        (None, None),
        ("", None),
        ("Bearer abc", None),
        ("Basic !!!", None),
        ("Basic bm9jb2xvbg==", None),  # "nocolon"
    ],
)
def test_parse_basic_authorization(header: str | None, expected: tuple[str, str] | None) -> None:
    assert parse_basic_authorization(header) == expected
