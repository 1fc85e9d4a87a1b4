"""A local Twilio Messaging simulator: the real wire format, deterministic outcomes.

Sends are answered from `sms_outcome(To)`; accepted messages get signed StatusCallbacks
posted back in order by a bounded worker pool, so the HTTP handler never waits on them.
Counters and a fault hook let tests assert exact totals and exercise error paths.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import email.utils
import hmac
import logging
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from herald.providers.twilio import API_VERSION, signature
from herald.settings import Secret
from herald.simulator.outcomes import sms_outcome

log = logging.getLogger(__name__)

MESSAGES_PATH: Final = f"/{API_VERSION}/Accounts/{{sid}}/Messages.json"

_E164: Final = re.compile(r"^\+\d{8,15}$")
_MAX_BODY_CHARS: Final = 1600
_BACKOFF_START_MS: Final = 100
_BACKOFF_CAP_MS: Final = 5000
_CALLBACK_TIMEOUT_S: Final = 10.0
# In-flight send handlers are short; don't let a stuck client hold up stop().
_SHUTDOWN_TIMEOUT_S: Final = 2.0

_ERROR_MESSAGES: Final[Mapping[int, str]] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number is not a valid phone number.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21609: "Invalid StatusCallback URL.",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}

# GSM 03.38 default alphabet and its extension table (extension characters cost two septets).
_GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED: Final = frozenset("^{}\\[~]|€\f")


@dataclass(kw_only=True)
class SimulatorStats:
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    callbacks_sent: int = 0
    callbacks_failed: int = 0


@dataclass(frozen=True, kw_only=True)
class _Step:
    params: Mapping[str, str]
    # Same token on every retry of one callback, like Twilio's I-Twilio-Idempotency-Token.
    idempotency_token: str


@dataclass(frozen=True, kw_only=True)
class _Chain:
    """The ordered callbacks of one message; `index` is the one to post next."""

    url: str
    steps: tuple[_Step, ...]
    index: int = 0
    attempt: int = 1


def backoff_ms(attempt: int) -> int:
    """Wait before retry number `attempt` (1-based) of a callback: 100 ms doubling, 5 s cap."""
    doublings = min(max(0, attempt - 1), 16)  # bounded shift; the cap applies long before
    return min(_BACKOFF_CAP_MS, _BACKOFF_START_MS << doublings)


def num_segments(body: str) -> int:
    """SMS segments for body: GSM-7 when every character fits, otherwise UCS-2."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in body):
        units = sum(2 if ch in _GSM_EXTENDED else 1 for ch in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2  # astral characters take two units
        single, multi = 70, 67
    if units <= single:
        return 1
    return math.ceil(units / multi)


def twilio_error(status: int, code: int, message: str | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "message": message or _ERROR_MESSAGES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def fault_code(status: int) -> int:
    """The Twilio error code that goes with an HTTP status the fault hook injects."""
    return {401: 20003}.get(status, 20000 + status)


def parse_basic_authorization(header: str | None) -> tuple[str, str] | None:
    """(login, password) from a Basic Authorization header; None when absent or malformed."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, colon, password = decoded.partition(":")
    return (login, password) if colon else None


def is_callback_url(url: str) -> bool:
    try:
        parsed = URL(url, encoded=True)
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


class Simulator:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        account_sid: str,
        auth_token: Secret,
        callback_delay_ms: int = 20,
        callback_concurrency: int = 64,
        callback_max_attempts: int = 8,
        drain_timeout_s: float = 5.0,
    ) -> None:
        if callback_concurrency < 1 or callback_max_attempts < 1:
            raise ValueError("callback_concurrency and callback_max_attempts must be >= 1")
        self.host = host
        self.port = port
        self.account_sid = account_sid
        self._auth_token = auth_token
        self._callback_delay_s = callback_delay_ms / 1000
        self._callback_concurrency = callback_concurrency
        self._callback_max_attempts = callback_max_attempts
        self._drain_timeout_s = drain_timeout_s
        self.stats = SimulatorStats()
        self.sent_to: collections.Counter[str] = collections.Counter()
        self._faults: collections.deque[int] = collections.deque()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._queue: asyncio.Queue[_Chain] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._open_chains = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next n send requests with `status` and a Twilio error body."""
        self._faults.extend([status] * n)

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        app = web.Application()
        app.router.add_post(MESSAGES_PATH, self._handle_send)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._callback_concurrency),
            timeout=aiohttp.ClientTimeout(total=_CALLBACK_TIMEOUT_S),
        )
        self._workers = [
            asyncio.create_task(self._callback_worker(), name=f"sim-callback-{i}")
            for i in range(self._callback_concurrency)
        ]
        log.info("twilio simulator listening on %s", self.base_url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        # Stop taking sends first (in-flight handlers finish and may queue callbacks).
        await runner.cleanup()
        if not await self.wait_idle(self._drain_timeout_s):
            log.warning("simulator stopping with %d callback chains unfinished", self._open_chains)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once every queued callback was posted or dropped; False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- send endpoint -------------------------------------------------------------------

    async def _handle_send(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        if self._faults:
            status = self._faults.popleft()
            headers = {"Retry-After": "1"} if status == 429 else None
            return self._reject(status, fault_code(status), headers=headers)
        if not self._authorized(request.headers.get("Authorization")):
            return self._reject(
                401, 20003, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        if request.match_info["sid"] != self.account_sid:
            return self._reject(404, 20404)

        form = await request.post()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        to = fields.get("To", "")
        sender = fields.get("From", "")
        body = fields.get("Body", "")
        callback_url = fields.get("StatusCallback", "")
        if not _E164.match(to):
            return self._reject(
                400, 21211, f"The 'To' number {to[:32]} is not a valid phone number."
            )
        if not sender:
            return self._reject(400, 21603)
        if not body:
            return self._reject(400, 21602)
        if len(body) > _MAX_BODY_CHARS:
            return self._reject(400, 21617)
        if callback_url and not is_callback_url(callback_url):
            return self._reject(400, 21609)

        outcome = sms_outcome(to)
        if not outcome.accepted:
            code = outcome.error_code or 21211
            return self._reject(outcome.http_status, code)

        sid = "SM" + uuid.uuid4().hex
        self.stats.accepted += 1
        self.sent_to[to] += 1
        if callback_url and outcome.callbacks:
            steps = tuple(
                _Step(
                    params=self._callback_params(sid, to, sender, status, error_code),
                    idempotency_token=f"{self.account_sid}-{uuid.uuid4().hex}",
                )
                for status, error_code in outcome.callbacks
            )
            self._open_chains += 1
            self._idle.clear()
            self._schedule(_Chain(url=callback_url, steps=steps), self._callback_delay_s)
        resource = self._message_resource(sid=sid, to=to, sender=sender, body=body)
        return web.Response(
            status=201, body=orjson.dumps(resource), content_type="application/json"
        )

    def _authorized(self, header: str | None) -> bool:
        credentials = parse_basic_authorization(header)
        if credentials is None:
            return False
        login, password = credentials
        sid_ok = hmac.compare_digest(login.encode(), self.account_sid.encode())
        token_ok = hmac.compare_digest(password.encode(), self._auth_token.value.encode())
        return sid_ok and token_ok

    def _reject(
        self,
        status: int,
        code: int,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        self.stats.rejected += 1
        return web.Response(
            status=status,
            body=orjson.dumps(twilio_error(status, code, message)),
            content_type="application/json",
            headers=headers,
        )

    def _message_resource(self, *, sid: str, to: str, sender: str, body: str) -> dict[str, Any]:
        now = email.utils.format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(num_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }

    def _callback_params(
        self, sid: str, to: str, sender: str, status: str, error_code: str | None
    ) -> dict[str, str]:
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": self.account_sid,
            "From": sender,
            "To": to,
            "ApiVersion": API_VERSION,
        }
        if error_code is not None:
            params["ErrorCode"] = error_code
        return params

    # -- callbacks -----------------------------------------------------------------------

    def _schedule(self, chain: _Chain, delay_s: float) -> None:
        # A timer rather than a sleeping worker: waits cost no pool slot.
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self._queue.put_nowait(chain)

        handle = loop.call_later(delay_s, fire)
        self._timers.add(handle)

    def _finish_chain(self) -> None:
        self._open_chains -= 1
        if self._open_chains == 0:
            self._idle.set()

    async def _callback_worker(self) -> None:
        while True:
            chain = await self._queue.get()
            try:
                await self._deliver(chain)
            except Exception:
                # A bug must not silently shrink the pool; count the callback as lost.
                log.exception("simulator callback worker error")
                self.stats.callbacks_failed += 1
                self._finish_chain()
            finally:
                self._queue.task_done()

    async def _deliver(self, chain: _Chain) -> None:
        if await self._post(chain):
            self.stats.callbacks_sent += 1
        elif chain.attempt < self._callback_max_attempts:
            retry = replace(chain, attempt=chain.attempt + 1)
            self._schedule(retry, backoff_ms(chain.attempt) / 1000)
            return
        else:
            self.stats.callbacks_failed += 1
            log.warning(
                "dropping %s callback after %d attempts",
                chain.steps[chain.index].params["MessageStatus"],
                chain.attempt,
            )
        # Like Twilio, a lost callback does not hold back the later ones.
        if chain.index + 1 < len(chain.steps):
            following = replace(chain, index=chain.index + 1, attempt=1)
            self._schedule(following, self._callback_delay_s)
        else:
            self._finish_chain()

    async def _post(self, chain: _Chain) -> bool:
        assert self._session is not None
        step = chain.steps[chain.index]
        headers = {
            "X-Twilio-Signature": signature(chain.url, step.params, self._auth_token.value),
            "I-Twilio-Idempotency-Token": step.idempotency_token,
            "User-Agent": "TwilioProxy/1.1",
        }
        try:
            # encoded=True: post to exactly the URL that was signed, without requoting.
            async with self._session.post(
                URL(chain.url, encoded=True), data=dict(step.params), headers=headers
            ) as response:
                await response.read()
                return 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False
