"""The provider simulator's SMTP side: an aiosmtpd server with deterministic per-address outcomes.

The local part of a recipient address picks what happens (checked in this order):
`reject` → 550 5.1.1 at RCPT; `tempfail` → 451 at RCPT the first time, then as below;
`bounce` → 250, then a `bounce` event (status 5.1.1); anything else → 250, then `processed`
and `delivered` events, plus `open` when the local part contains `open`.

Events go to `events_url` the way SendGrid's Event Webhook sends them: JSON arrays gathered
for up to `callback_delay_ms`, signed with ECDSA P-256 over timestamp + body, retried with
backoff on failure. Like SendGrid, an event carries the message's X-SMTPAPI `unique_args` as
top-level fields and no other field of herald's (its X-Herald-Message-Id header is not read).
The server runs on the caller's event loop, so port 0 works and stop() leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import email
import email.policy
import logging
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Final

import aiohttp
import orjson
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.providers.email import (
    FIELD_HERALD_ID,
    HEADER_SIGNATURE,
    HEADER_SMTPAPI,
    HEADER_TIMESTAMP,
    unique_args,
)
from herald.settings import Secret
from herald.simulator.callbacks import backoff_ms

log = logging.getLogger(__name__)

SERVER_HOSTNAME: Final = "smtp.simulator.herald"
BOUNCE_STATUS: Final = "5.1.1"
BOUNCE_REASON: Final = "550 5.1.1 The email account that you tried to reach does not exist"
REJECT_REPLY: Final = "550 5.1.1 Recipient address rejected: user unknown"
TEMPFAIL_REPLY: Final = "451 4.3.0 Temporary failure, try again later"
AUTH_REQUIRED_REPLY: Final = "530 5.7.0 Authentication required"

_POST_TIMEOUT_S: Final = 10.0
_POST_CONCURRENCY: Final = 8


class AddressBehaviour(StrEnum):
    REJECT = "reject"
    TEMPFAIL = "tempfail"
    BOUNCE = "bounce"
    DELIVER = "deliver"


@dataclass(frozen=True, kw_only=True)
class EmailOutcome:
    behaviour: AddressBehaviour
    opens: bool


def email_outcome(address: str) -> EmailOutcome:
    """What the simulator does with mail for `address`, from its local part alone."""
    local = address.rpartition("@")[0].lower() if "@" in address else address.lower()
    opens = "open" in local
    for behaviour in (AddressBehaviour.REJECT, AddressBehaviour.TEMPFAIL, AddressBehaviour.BOUNCE):
        if behaviour.value in local:
            return EmailOutcome(behaviour=behaviour, opens=opens)
    return EmailOutcome(behaviour=AddressBehaviour.DELIVER, opens=opens)


def sign_events(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """The X-Twilio-Email-Event-Webhook-Signature value: base64 DER ECDSA over ts + body."""
    signature = private_key.sign(timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


def public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The public half as SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


@dataclass(kw_only=True)
class SmtpSimulatorStats:
    connections: int = 0
    quits: int = 0  # connections the client ended with QUIT
    messages: int = 0  # DATA transactions answered 250
    # Per recipient: rejected / tempfailed (at RCPT), bounced / delivered (after DATA).
    by_outcome: collections.Counter[str] = field(default_factory=collections.Counter)
    duplicates: int = 0  # messages whose unique_args herald_message_id was seen before
    event_posts: int = 0  # POSTs answered 2xx
    events_posted: int = 0
    events_failed: int = 0  # events in batches given up on after every retry


class SmtpSimulator:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        events_url: str,
        private_key_pem: bytes | None = None,
        callback_delay_ms: int = 20,
        callback_max_attempts: int = 5,
        max_events_per_post: int = 1000,
        credentials: tuple[str, Secret] | None = None,
        drain_timeout_s: float = 5.0,
    ) -> None:
        if callback_max_attempts < 1 or max_events_per_post < 1:
            raise ValueError("callback_max_attempts and max_events_per_post must be >= 1")
        self.host = host
        self.port = port
        self.events_url = events_url
        self._private_key = (
            load_private_key(private_key_pem)
            if private_key_pem is not None
            else ec.generate_private_key(ec.SECP256R1())
        )
        self.public_key_b64 = public_key_b64(self._private_key)
        self._callback_delay_s = callback_delay_ms / 1000
        self._callback_max_attempts = callback_max_attempts
        # A burst past this goes out as several POSTs (keep it within the receiver's body limit).
        self._max_events_per_post = max_events_per_post
        self._credentials = credentials
        self._drain_timeout_s = drain_timeout_s
        self.stats = SmtpSimulatorStats()
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._session_tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        self._post_slots = asyncio.Semaphore(_POST_CONCURRENCY)
        self._pending: list[dict[str, Any]] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._posts: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._seen_ids: set[str] = set()
        self._tempfailed: set[str] = set()

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("SMTP simulator already started")
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        self._server = await loop.create_server(
            lambda: _Session(self, handler, loop=loop, **self._smtp_options()),
            self.host,
            self.port,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=_POST_TIMEOUT_S))
        log.info("smtp simulator listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        # Closing the transport cancels each session's handler task; let them finish.
        await asyncio.gather(*self._session_tasks, return_exceptions=True)
        await server.wait_closed()
        # Events already gathered go out now rather than after the batching delay.
        self._flush()
        if not await self.wait_idle(self._drain_timeout_s):
            log.warning("smtp simulator stopping with %d event posts unfinished", len(self._posts))
        for task in list(self._posts):
            task.cancel()
        await asyncio.gather(*self._posts, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def open_connections(self) -> int:
        return len(self._sessions)

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once every gathered event was posted or given up on; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def __aenter__(self) -> SmtpSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _smtp_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"hostname": SERVER_HOSTNAME, "ident": "herald SMTP simulator"}
        if self._credentials is not None:
            # AUTH over plain TCP is fine on loopback; MAIL checks that it happened, so
            # auth_required (which warns without TLS) is not needed.
            options.update(auth_require_tls=False, authenticator=self._authenticate)
        return options

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if self._credentials is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, secret = self._credentials
        ok = data.login == login.encode() and data.password == secret.value.encode()
        return AuthResult(success=ok, handled=False)

    # -- SMTP hooks (called by _Handler and _Session) -------------------------------------

    def session_opened(self, session: _Session, task: asyncio.Task[None] | None) -> None:
        self.stats.connections += 1
        self._sessions.add(session)
        if task is not None:
            self._session_tasks.add(task)
            task.add_done_callback(self._session_tasks.discard)

    def session_closed(self, session: _Session) -> None:
        self._sessions.discard(session)

    def on_mail(self, session: Session) -> str | None:
        if self._credentials is not None and not session.authenticated:
            return AUTH_REQUIRED_REPLY
        return None

    def on_rcpt(self, address: str) -> str | None:
        """The refusal for this recipient, or None to take it."""
        outcome = email_outcome(address)
        if outcome.behaviour is AddressBehaviour.REJECT:
            self.stats.by_outcome["rejected"] += 1
            return REJECT_REPLY
        if outcome.behaviour is AddressBehaviour.TEMPFAIL:
            key = address.lower()
            if key not in self._tempfailed:
                self._tempfailed.add(key)
                self.stats.by_outcome["tempfailed"] += 1
                return TEMPFAIL_REPLY
        return None

    def on_data(self, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        # SendGrid reads (and removes) X-SMTPAPI; its unique_args come back in every event.
        args = unique_args(str(parsed.get(HEADER_SMTPAPI, "")))
        herald_id = args.get(FIELD_HERALD_ID) or None
        smtp_id = str(parsed.get("Message-ID", "")).strip() or None
        self.stats.messages += 1
        if herald_id is not None:
            if herald_id in self._seen_ids:
                self.stats.duplicates += 1
            self._seen_ids.add(herald_id)
        queue_id = uuid.uuid4().hex
        for index, address in enumerate(envelope.rcpt_tos):
            outcome = email_outcome(address)
            base: dict[str, Any] = {
                **args,
                "email": address,
                "sg_message_id": f"{queue_id}.filter0001.{index}",
            }
            if smtp_id is not None:
                base["smtp-id"] = smtp_id
            if outcome.behaviour is AddressBehaviour.BOUNCE:
                self.stats.by_outcome["bounced"] += 1
                self._emit(
                    base, "bounce", type="bounce", status=BOUNCE_STATUS, reason=BOUNCE_REASON
                )
                continue
            self.stats.by_outcome["delivered"] += 1
            self._emit(base, "processed")
            self._emit(base, "delivered", response="250 OK")
            if outcome.opens:
                self._emit(base, "open", useragent="herald-simulator")
        return f"250 2.0.0 Ok: queued as {queue_id}"

    # -- events --------------------------------------------------------------------------

    def _emit(self, base: dict[str, Any], kind: str, **extra: Any) -> None:
        event = {
            **base,
            **extra,
            "event": kind,
            "timestamp": int(time.time()),
            "sg_event_id": uuid.uuid4().hex,
        }
        self._pending.append(event)
        self._idle.clear()
        if self._flush_timer is None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(self._callback_delay_s, self._flush)

    def _flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self._max_events_per_post):
            batch = pending[start : start + self._max_events_per_post]
            task = asyncio.create_task(self._post(batch), name="smtp-sim-events")
            self._posts.add(task)
            task.add_done_callback(self._post_done)
        self._settle()

    def _post_done(self, task: asyncio.Task[None]) -> None:
        self._posts.discard(task)
        self._settle()

    def _settle(self) -> None:
        if not self._posts and not self._pending:
            self._idle.set()

    async def _post(self, batch: list[dict[str, Any]]) -> None:
        body = orjson.dumps(batch)
        async with self._post_slots:
            for attempt in range(1, self._callback_max_attempts + 1):
                if await self._post_once(body):
                    self.stats.event_posts += 1
                    self.stats.events_posted += len(batch)
                    return
                if attempt < self._callback_max_attempts:
                    await asyncio.sleep(backoff_ms(attempt) / 1000)
        self.stats.events_failed += len(batch)
        log.warning("smtp simulator gave up on %d events", len(batch))

    async def _post_once(self, body: bytes) -> bool:
        assert self._http is not None
        # Signed afresh on every try, so a late retry is not refused as a replay.
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            HEADER_TIMESTAMP: timestamp,
            HEADER_SIGNATURE: sign_events(self._private_key, timestamp, body),
        }
        try:
            async with self._http.post(self.events_url, data=body, headers=headers) as response:
                await response.read()
                return 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("event post failed: %s", type(exc).__name__)
            return False


class _Handler:
    """aiosmtpd's hook object; every decision is the simulator's."""

    def __init__(self, simulator: SmtpSimulator) -> None:
        self._simulator = simulator

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        refusal = self._simulator.on_mail(session)
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._simulator.on_rcpt(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self._simulator.on_data(envelope)

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._simulator.stats.quits += 1
        return "221 Bye"


class _Session(SMTP):
    """One client connection; registers itself so stop() can close it."""

    def __init__(self, owner: SmtpSimulator, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self._owner.session_opened(self, self._handler_coroutine)

    def connection_lost(self, error: Exception | None) -> None:
        self._owner.session_closed(self)
        super().connection_lost(error)


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("private_key_pem must be an unencrypted ECDSA P-256 key")
    return key
