"""A request rate limit per API key: a token bucket, answered 429 with Retry-After.

Each key has a bucket of `burst_requests` tokens that refills at `rate_per_s`; a request takes
one token or is refused with 429 `rate_limited` and `Retry-After` (whole seconds until the
next token). The decision is a pure function over a frozen `Bucket`; `KeyedBuckets` keeps one
per key and `RateLimit` is the ASGI middleware that applies it before the request body is
read or the database is asked anything, so a flood costs neither.

Buckets live in the process. With N API replicas behind a load balancer that spreads one key's
requests evenly, that key can make up to N × rate per second in all (and N × burst at once):
set the rate to the per-key budget divided by the replica count, or route by X-API-Key to
keep a key on one replica. A restart starts every bucket full.

Keys are identified by their SHA-256, never held as text. A request without X-API-Key is not
counted here: it is refused with 401 before it reaches the database. The table holds at most
`max_keys` buckets; past that the least recently used one is dropped, which at worst gives
that key a full bucket again.

Two more budgets make inventing keys or minting many of them useless. Each failed
authentication spends a token of the client address's failure bucket (auth.py), and an
address whose bucket is empty is answered 429 here, before any key is looked up. Each
authenticated request also spends a token of its account's bucket (auth.py), so an account
spreading load over many keys gets one account's rate.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from herald import metrics
from herald.api.envelope import JsonResponse
from herald.api.errors import ErrorCode, error_body

API_KEY_HEADER = b"x-api-key"
DEFAULT_MAX_KEYS = 100_000


@dataclass(frozen=True, kw_only=True)
class Bucket:
    tokens: float
    updated_s: float


@dataclass(frozen=True, kw_only=True)
class Decision:
    allowed: bool
    retry_after_s: int = 0  # whole seconds until a token is back; 0 when allowed
    remaining: int = 0  # whole tokens left after this request


def full(*, burst_requests: int, now_s: float) -> Bucket:
    return Bucket(tokens=float(burst_requests), updated_s=now_s)


def take(
    bucket: Bucket, *, now_s: float, rate_per_s: float, burst_requests: int
) -> tuple[Bucket, Decision]:
    """The bucket after one request at now_s, and whether the request may go on."""
    elapsed_s = max(0.0, now_s - bucket.updated_s)  # a clock going back refills nothing
    tokens = min(float(burst_requests), bucket.tokens + elapsed_s * rate_per_s)
    if tokens >= 1.0:
        left = tokens - 1.0
        return Bucket(tokens=left, updated_s=now_s), Decision(allowed=True, remaining=int(left))
    wait_s = (1.0 - tokens) / rate_per_s
    refused = Bucket(tokens=tokens, updated_s=now_s)
    return refused, Decision(allowed=False, retry_after_s=max(1, math.ceil(wait_s)))


class KeyedBuckets:
    """One bucket per API key (by digest), least recently used dropped past max_keys."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst_requests: int,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst_requests < 1 or max_keys < 1:
            raise ValueError("rate_per_s must be > 0, burst_requests and max_keys >= 1")
        self.rate_per_s = rate_per_s
        self.burst_requests = burst_requests
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[bytes, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def peek(self, key: bytes) -> Decision:
        """Whether `key` has a token now, spending nothing."""
        bucket = self._buckets.get(hashlib.sha256(key).digest())
        if bucket is None:
            return Decision(allowed=True, remaining=self.burst_requests)
        _, decision = take(
            bucket,
            now_s=self._clock(),
            rate_per_s=self.rate_per_s,
            burst_requests=self.burst_requests,
        )
        return decision

    def take(self, key: bytes) -> Decision:
        """Spends one token of `key` (raw header bytes); never stores the key itself."""
        ident = hashlib.sha256(key).digest()
        now_s = self._clock()
        bucket = self._buckets.pop(ident, None)
        if bucket is None:
            bucket = full(burst_requests=self.burst_requests, now_s=now_s)
        bucket, decision = take(
            bucket, now_s=now_s, rate_per_s=self.rate_per_s, burst_requests=self.burst_requests
        )
        self._buckets[ident] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return decision


def client_address(scope: Scope) -> bytes:
    client = scope.get("client")
    return str(client[0] if client else "").encode()


class RateLimit:
    """ASGI middleware: an address that failed authentication too often gets 429 before any
    lookup; requests carrying X-API-Key spend a token of that key or get 429."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        buckets: KeyedBuckets | None,
        failures: KeyedBuckets | None = None,
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.failures is not None:
            barred = self.failures.peek(client_address(scope))
            if not barred.allowed:
                metrics.API_AUTH_FAILURES.labels(reason="throttled").inc()
                await _refuse(
                    scope,
                    receive,
                    send,
                    barred,
                    "Too many failed authentications from this address; retry in "
                    f"{barred.retry_after_s} s",
                )
                return
        if self.buckets is None:
            await self.app(scope, receive, send)
            return
        key = None
        for name, value in scope.get("headers", ()):
            if name == API_KEY_HEADER:
                key = value
                break
        if not key:
            await self.app(scope, receive, send)
            return
        decision = self.buckets.take(key)
        if decision.allowed:
            await self.app(scope, receive, send)
            return
        message = f"Too many requests for this API key; retry in {decision.retry_after_s} s"
        await _refuse(scope, receive, send, decision, message)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, decision: Decision, message: str
) -> None:
    code = ErrorCode.RATE_LIMITED
    response = JsonResponse(
        error_body(Request(scope), code, message, None),
        status_code=code.status,
        headers={"Retry-After": str(decision.retry_after_s)},
    )
    await response(scope, receive, send)
