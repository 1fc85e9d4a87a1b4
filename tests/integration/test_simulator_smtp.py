"""SmtpEmailProvider against the SMTP simulator over real sockets, with a real event receiver.

A second, scripted SMTP server misbehaves on cue (drops, stalls, odd replies) to pin down how
failures at each step of a transaction are classified.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus, StatusEvent
from herald.providers.base import ErrorClass, OutboundMessage
from herald.providers.email import (
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    SmtpEmailProvider,
    parse_events,
    verify_signature,
)
from herald.settings import Secret
from herald.simulator.smtp import SmtpSimulator

SENDER = "Herald <news@herald.example>"
LOGIN = "herald"
PASSWORD = "smtp-test-password"


def outbound(to: str, recipient_id: int, *, attempt: int = 1) -> OutboundMessage:
    return OutboundMessage(
        message_id=f"camp-9.{recipient_id}.{attempt}",
        channel=Channel.EMAIL,
        to=to,
        sender=SENDER,
        body=f"Hello recipient {recipient_id}\n",
        callback_url="",
        subject="Spring sale",
    )


# -- event receiver ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Post:
    timestamp: str
    signature: str | None
    body: bytes


@dataclass(kw_only=True)
class Receiver:
    """Records event webhook POSTs; can answer the first few with 500 to force retries."""

    fail_first: int = 0
    attempts: int = 0
    posts: list[Post] = field(default_factory=list)
    port: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callbacks/email"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500)
        self.posts.append(
            Post(
                timestamp=request.headers.get(HEADER_TIMESTAMP, ""),
                signature=request.headers.get(HEADER_SIGNATURE),
                body=body,
            )
        )
        self.changed.set()
        return web.Response(status=204)

    def events(self, public_key_b64: str) -> list[StatusEvent]:
        """Every POST verified the way ingress will, then parsed."""
        events: list[StatusEvent] = []
        for post in self.posts:
            assert verify_signature(
                public_key_b64, post.timestamp, post.body, post.signature, now_s=time.time()
            )
            events.extend(parse_events(orjson.loads(post.body), int(time.time() * 1000)))
        return events

    def raw_events(self) -> list[dict[str, Any]]:
        return [event for post in self.posts for event in orjson.loads(post.body)]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/callbacks/email", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.port = int(runner.addresses[0][1])
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
async def sim(receiver: Receiver) -> AsyncIterator[SmtpSimulator]:
    # Depends on the receiver so it is stopped first and can drain its events into it.
    simulator = SmtpSimulator(
        host="127.0.0.1", port=0, events_url=receiver.url, callback_delay_ms=20
    )
    async with simulator:
        yield simulator


@pytest.fixture
async def provider(sim: SmtpSimulator) -> AsyncIterator[SmtpEmailProvider]:
    client = SmtpEmailProvider(
        host="127.0.0.1", port=sim.port, username=None, password=None, timeout_s=5.0
    )
    try:
        yield client
    finally:
        await client.close()


def by_recipient(events: list[StatusEvent], recipient_id: int) -> list[RecipientStatus]:
    return [e.status for e in events if e.recipient_id == recipient_id]


# -- outcomes ----------------------------------------------------------------------------


async def test_delivered_and_opened(
    sim: SmtpSimulator, provider: SmtpEmailProvider, receiver: Receiver
) -> None:
    plain = await provider.send(outbound("ada@example.org", 1))
    opened = await provider.send(outbound("grace-open@example.org", 2))
    assert plain.accepted and plain.provider_message_id == "<camp-9.1.1@herald>"
    assert opened.accepted and opened.provider_message_id == "<camp-9.2.1@herald>"
    assert await sim.wait_idle(5.0)

    events = receiver.events(sim.public_key_b64)
    assert by_recipient(events, 1) == [RecipientStatus.SENT, RecipientStatus.DELIVERED]
    assert by_recipient(events, 2) == [
        RecipientStatus.SENT,
        RecipientStatus.DELIVERED,
        RecipientStatus.READ,
    ]
    assert all(e.accepted and e.campaign_id == "camp-9" and e.channel == "email" for e in events)
    assert {e.provider_message_id for e in events if e.recipient_id == 2} == {"<camp-9.2.1@herald>"}
    raw = receiver.raw_events()
    assert {e["email"] for e in raw} == {"ada@example.org", "grace-open@example.org"}
    assert len({e["sg_event_id"] for e in raw}) == len(raw)
    assert sim.stats.messages == 2
    assert sim.stats.by_outcome == {"delivered": 2}


async def test_bounce_is_accepted_then_fails(
    sim: SmtpSimulator, provider: SmtpEmailProvider, receiver: Receiver
) -> None:
    result = await provider.send(outbound("bounce@example.org", 3))
    assert result.accepted
    assert await sim.wait_idle(5.0)
    [event] = receiver.events(sim.public_key_b64)
    assert event.status is RecipientStatus.FAILED
    assert event.accepted is True
    assert event.error_code == "5.1.1"
    assert event.error_description and "does not exist" in event.error_description
    assert event.fallback is True
    assert sim.stats.by_outcome == {"bounced": 1}


async def test_reject_at_rcpt_is_unreachable(
    sim: SmtpSimulator, provider: SmtpEmailProvider, receiver: Receiver
) -> None:
    result = await provider.send(outbound("reject@example.org", 4))
    assert not result.accepted
    assert result.error_class is ErrorClass.UNREACHABLE
    assert result.error_code == "5.1.1"
    # The connection survives a refused recipient (RSET) and carries the next message.
    assert (await provider.send(outbound("ada@example.org", 5))).accepted
    assert await sim.wait_idle(5.0)
    assert by_recipient(receiver.events(sim.public_key_b64), 4) == []
    assert sim.stats.by_outcome == {"rejected": 1, "delivered": 1}
    assert sim.stats.messages == 1
    assert sim.stats.connections == 1


async def test_tempfail_then_accepted(
    sim: SmtpSimulator, provider: SmtpEmailProvider, receiver: Receiver
) -> None:
    first = await provider.send(outbound("tempfail@example.org", 6))
    assert first.error_class is ErrorClass.RETRYABLE
    assert first.error_code == "4.3.0"
    second = await provider.send(outbound("tempfail@example.org", 6, attempt=2))
    assert second.accepted
    assert await sim.wait_idle(5.0)
    events = receiver.events(sim.public_key_b64)
    assert [(e.attempt, e.status) for e in events] == [
        (2, RecipientStatus.SENT),
        (2, RecipientStatus.DELIVERED),
    ]
    assert sim.stats.by_outcome == {"tempfailed": 1, "delivered": 1}


# -- connections -------------------------------------------------------------------------


async def test_fifty_sequential_sends_share_one_connection(
    sim: SmtpSimulator, provider: SmtpEmailProvider, receiver: Receiver
) -> None:
    for recipient_id in range(1, 51):
        assert (
            await provider.send(outbound(f"user{recipient_id}@example.org", recipient_id))
        ).accepted
    assert sim.stats.connections == 1
    assert sim.stats.messages == 50
    assert await sim.wait_idle(5.0)
    events = receiver.events(sim.public_key_b64)
    assert len(events) == 100
    assert {e.recipient_id for e in events if e.status is RecipientStatus.DELIVERED} == set(
        range(1, 51)
    )


async def test_fifty_concurrent_sends_stay_within_the_pool(
    sim: SmtpSimulator, receiver: Receiver
) -> None:
    client = SmtpEmailProvider(
        host="127.0.0.1", port=sim.port, username=None, password=None, timeout_s=5.0, pool_size=4
    )
    try:
        results = await asyncio.gather(
            *(client.send(outbound(f"user{i}@example.org", i)) for i in range(1, 51))
        )
        assert all(r.accepted for r in results)
        assert 1 <= sim.stats.connections <= 4
        assert sim.open_connections == sim.stats.connections
    finally:
        await client.close()
    assert await sim.wait_idle(5.0)
    assert len(receiver.events(sim.public_key_b64)) == 100
    # Events are gathered into arrays, not posted one by one.
    assert len(receiver.posts) < 50
    # close() said QUIT on every pooled connection.
    assert sim.stats.quits == sim.stats.connections


async def test_reconnects_after_the_server_restarts(
    sim: SmtpSimulator, provider: SmtpEmailProvider
) -> None:
    assert (await provider.send(outbound("ada@example.org", 1))).accepted
    await sim.stop()  # drops the pooled connection
    await sim.start()  # same port
    assert (await provider.send(outbound("ada@example.org", 2))).accepted
    assert sim.stats.connections == 2


async def test_duplicates_are_counted(sim: SmtpSimulator, provider: SmtpEmailProvider) -> None:
    message = outbound("ada@example.org", 8)
    assert (await provider.send(message)).accepted
    assert (await provider.send(message)).accepted
    assert (await provider.send(outbound("ada@example.org", 8, attempt=2))).accepted
    assert sim.stats.messages == 3
    assert sim.stats.duplicates == 1


async def test_closed_provider_refuses_to_send(provider: SmtpEmailProvider) -> None:
    await provider.close()
    result = await provider.send(outbound("ada@example.org", 1))
    assert result.error_class is ErrorClass.RETRYABLE
    assert result.error_code == "closed"


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = SmtpEmailProvider(
        host="127.0.0.1", port=port, username=None, password=None, timeout_s=2.0
    )
    try:
        result = await client.send(outbound("ada@example.org", 1))
    finally:
        await client.close()
    assert result.error_class is ErrorClass.RETRYABLE
    assert result.error_code == "connect_failed"


async def test_bad_address_is_permanent_without_touching_the_server(
    sim: SmtpSimulator, provider: SmtpEmailProvider
) -> None:
    for to in ("not-an-address", "ada@example.org\r\nRCPT TO:<x@y.z>", "adä@example.org"):
        result = await provider.send(outbound(to, 1))
        assert result.error_class is ErrorClass.PERMANENT, to
    assert sim.stats.messages == 0


# -- event delivery ----------------------------------------------------------------------


async def test_event_posts_are_retried_and_resigned(
    sim: SmtpSimulator, provider: SmtpEmailProvider, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    assert (await provider.send(outbound("ada-open@example.org", 1))).accepted
    assert await sim.wait_idle(5.0)
    assert receiver.attempts == 3
    assert len(receiver.posts) == 1  # one batch: processed, delivered, open
    assert by_recipient(receiver.events(sim.public_key_b64), 1) == [
        RecipientStatus.SENT,
        RecipientStatus.DELIVERED,
        RecipientStatus.READ,
    ]
    assert sim.stats.event_posts == 1
    assert sim.stats.events_posted == 3
    assert sim.stats.events_failed == 0


async def test_large_batches_are_split(receiver: Receiver) -> None:
    simulator = SmtpSimulator(
        host="127.0.0.1", port=0, events_url=receiver.url, max_events_per_post=2
    )
    async with simulator:
        client = SmtpEmailProvider(
            host="127.0.0.1", port=simulator.port, username=None, password=None, timeout_s=5.0
        )
        try:
            assert (await client.send(outbound("ada-open@example.org", 1))).accepted
        finally:
            await client.close()
        assert await simulator.wait_idle(5.0)
    # The two POSTs go out concurrently, so either may land first.
    assert sorted(len(orjson.loads(post.body)) for post in receiver.posts) == [1, 2]
    assert set(by_recipient(receiver.events(simulator.public_key_b64), 1)) == {
        RecipientStatus.SENT,
        RecipientStatus.DELIVERED,
        RecipientStatus.READ,
    }


async def test_events_signed_by_a_given_key(receiver: Receiver) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    simulator = SmtpSimulator(
        host="127.0.0.1", port=0, events_url=receiver.url, private_key_pem=pem
    )
    async with simulator:
        client = SmtpEmailProvider(
            host="127.0.0.1", port=simulator.port, username=None, password=None, timeout_s=5.0
        )
        try:
            assert (await client.send(outbound("ada@example.org", 1))).accepted
        finally:
            await client.close()
        assert await simulator.wait_idle(5.0)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert simulator.public_key_b64 == base64.b64encode(der).decode()
    assert len(receiver.events(simulator.public_key_b64)) == 2


# -- authentication ----------------------------------------------------------------------


@pytest.fixture
async def auth_sim(receiver: Receiver) -> AsyncIterator[SmtpSimulator]:
    simulator = SmtpSimulator(
        host="127.0.0.1",
        port=0,
        events_url=receiver.url,
        credentials=(LOGIN, Secret(PASSWORD)),
    )
    async with simulator:
        yield simulator


@pytest.mark.parametrize(
    ("username", "password", "error_class", "error_code"),
    [
        (LOGIN, PASSWORD, None, None),
        (LOGIN, "wrong", ErrorClass.PERMANENT, "5.7.8"),
        (None, None, ErrorClass.PERMANENT, "5.7.0"),  # MAIL refused: authentication required
    ],
)
async def test_authentication(
    auth_sim: SmtpSimulator,
    username: str | None,
    password: str | None,
    error_class: ErrorClass | None,
    error_code: str | None,
) -> None:
    client = SmtpEmailProvider(
        host="127.0.0.1",
        port=auth_sim.port,
        username=username,
        password=Secret(password) if password is not None else None,
        timeout_s=5.0,
    )
    try:
        result = await client.send(outbound("ada@example.org", 1))
    finally:
        await client.close()
    assert result.accepted is (error_class is None)
    assert result.error_class is error_class
    assert result.error_code == error_code
    assert PASSWORD not in repr(client)


# -- a scripted server for failures the simulator does not make --------------------------

DROP = "DROP"
STALL = "STALL"


class ScriptedSmtp:
    """A bare-bones SMTP server; `script` overrides replies by "VERB#n" (n: the transaction
    number on that connection; DOT is the end of the message data). DROP closes the
    connection instead of replying; STALL never replies."""

    def __init__(self, script: dict[str, str]) -> None:
        self.script = script
        self.connections = 0
        self.messages = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._release = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> ScriptedSmtp:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._release.set()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        async with asyncio.timeout(2.0):
            await asyncio.gather(*self._tasks)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._converse(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._writers.discard(writer)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transaction = 1
        writer.write(b"220 scripted ESMTP\r\n")
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper().decode()
            if verb == "EHLO":
                writer.write(b"250 scripted\r\n")
                continue
            if verb == "QUIT":
                writer.write(b"221 bye\r\n")
                return
            if verb == "RSET":
                writer.write(b"250 OK\r\n")
                continue
            default = {"MAIL": "250 OK", "RCPT": "250 OK", "DATA": "354 go ahead"}.get(verb)
            if default is None:
                writer.write(b"502 not implemented\r\n")
                continue
            key = f"{verb}#{transaction}"
            if not await self._reply(writer, key, default):
                return
            if verb == "DATA" and self.script.get(key, default).startswith("354"):
                while await reader.readline() not in (b".\r\n", b""):
                    pass
                self.messages += 1
                if not await self._reply(writer, f"DOT#{transaction}", "250 2.0.0 queued"):
                    return
                transaction += 1

    async def _reply(self, writer: asyncio.StreamWriter, key: str, default: str) -> bool:
        """Send the scripted reply; False when the connection is to end."""
        reply = self.script.get(key, default)
        if reply == STALL:
            await self._release.wait()
            return False
        if reply == DROP:
            return False
        writer.write(reply.encode() + b"\r\n")
        await writer.drain()
        return not reply.startswith("421")


@pytest.mark.parametrize(
    ("script", "timeout_s", "error_class", "error_code"),
    [
        # Lost after the data went out: the server may have queued it.
        ({"DOT#1": DROP}, 5.0, ErrorClass.AMBIGUOUS, "no_reply"),
        ({"DOT#1": STALL}, 0.3, ErrorClass.AMBIGUOUS, "no_reply"),
        # Lost before DATA: nothing was taken.
        ({"MAIL#1": DROP}, 5.0, ErrorClass.RETRYABLE, "no_reply"),
        ({"RCPT#1": STALL}, 0.3, ErrorClass.RETRYABLE, "no_reply"),
        # Definite answers at the end of the data.
        ({"DOT#1": "554 5.7.1 rejected as spam"}, 5.0, ErrorClass.PERMANENT, "5.7.1"),
        ({"DOT#1": "451 4.3.0 try later"}, 5.0, ErrorClass.RETRYABLE, "4.3.0"),
        ({"DATA#1": "554 no valid recipients"}, 5.0, ErrorClass.PERMANENT, "554"),
        ({"MAIL#1": "553 5.1.8 bad sender domain"}, 5.0, ErrorClass.PERMANENT, "5.1.8"),
        ({"MAIL#1": "550 sender refused"}, 5.0, ErrorClass.PERMANENT, "550"),
    ],
)
async def test_failures_by_phase(
    script: dict[str, str], timeout_s: float, error_class: ErrorClass, error_code: str
) -> None:
    async with ScriptedSmtp(script) as server:
        client = SmtpEmailProvider(
            host="127.0.0.1", port=server.port, username=None, password=None, timeout_s=timeout_s
        )
        try:
            result = await client.send(outbound("ada@example.org", 1))
        finally:
            await client.close()
    assert not result.accepted
    assert result.error_class is error_class
    assert result.error_code == error_code


async def test_refused_message_keeps_the_connection() -> None:
    async with ScriptedSmtp({"DOT#1": "554 5.7.1 rejected as spam"}) as server:
        client = SmtpEmailProvider(
            host="127.0.0.1", port=server.port, username=None, password=None, timeout_s=5.0
        )
        try:
            assert not (await client.send(outbound("ada@example.org", 1))).accepted
            assert (await client.send(outbound("ada@example.org", 2))).accepted
        finally:
            await client.close()
    assert server.connections == 1


async def test_stale_pooled_connection_is_replaced_once() -> None:
    # The second transaction on the first connection is refused with 421 (the server is
    # closing an idle connection): nothing was sent, so the provider retries on a new one.
    async with ScriptedSmtp({"MAIL#2": "421 4.4.2 idle too long"}) as server:
        client = SmtpEmailProvider(
            host="127.0.0.1", port=server.port, username=None, password=None, timeout_s=5.0
        )
        try:
            assert (await client.send(outbound("ada@example.org", 1))).accepted
            assert (await client.send(outbound("ada@example.org", 2))).accepted
        finally:
            await client.close()
    assert server.connections == 2
    assert server.messages == 2


async def test_421_on_a_fresh_connection_is_retryable() -> None:
    async with ScriptedSmtp({"MAIL#1": "421 4.3.2 shutting down"}) as server:
        client = SmtpEmailProvider(
            host="127.0.0.1", port=server.port, username=None, password=None, timeout_s=5.0
        )
        try:
            result = await client.send(outbound("ada@example.org", 1))
        finally:
            await client.close()
    assert result.error_class is ErrorClass.RETRYABLE
    assert server.connections == 1
