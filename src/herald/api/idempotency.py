"""Idempotency-Key on POST: a retried request gets the first one's answer, not a second effect.

The key belongs to the caller's account. The first request with a key runs; a retry with the
same key and the same request (method, path, query and body) within the retention gets the
stored answer with `Idempotent-Replayed: true`; the same key on a different request is 422,
and a retry while the first still runs is 409. Only successful (2xx) answers are kept: a
failed request frees its key, so a retry runs it again. Bulk imports are streamed, so they
take no key.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Final

import anyio
import asyncpg
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herald.api.errors import ApiError, ErrorCode, error_response
from herald.store import api_keys, idempotency
from herald.store.db import LOOP_ERRORS

log = logging.getLogger(__name__)

HEADER: Final = b"idempotency-key"
MAX_KEY_LENGTH: Final = 255
RETENTION_S: Final = 24 * 3600
# A first request that has not answered in this long died with its process: a retry runs.
ABANDONED_S: Final = 60
# Larger answers (none of herald's POSTs gives one) are not kept.
MAX_STORED_BYTES: Final = 1024 * 1024


def request_hash(method: str, path: str, query: bytes, body: bytes) -> bytes:
    return hashlib.sha256(b"\0".join([method.encode(), path.encode(), query, body])).digest()


def valid_key(value: str) -> bool:
    return 0 < len(value) <= MAX_KEY_LENGTH and value.isprintable() and value.isascii()


class Idempotency:
    def __init__(
        self,
        app: ASGIApp,
        *,
        pool: asyncpg.Pool,
        max_body_bytes: int,
        streaming_suffixes: tuple[str, ...],
    ) -> None:
        self.app = app
        self.pool = pool
        self.max_body_bytes = max_body_bytes
        self.streaming_suffixes = streaming_suffixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"].endswith(self.streaming_suffixes)
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        raw_key = headers.get(HEADER)
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        request = Request(scope)
        if not valid_key(key):
            await _error(
                request,
                send,
                ApiError(
                    ErrorCode.VALIDATION_FAILED,
                    f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
                    field="Idempotency-Key",
                ),
            )
            return
        body, complete = await _read(receive, self.max_body_bytes)
        replay = _replaying(body, receive, more=not complete)
        if not complete:  # too large: the body limit answers it
            await self.app(scope, replay, send)
            return
        try:
            api_key = headers.get(b"x-api-key", b"").decode("latin-1")
            account = await api_keys.account_for(self.pool, api_key) if api_key else None
            digest = request_hash(scope["method"], scope["path"], scope["query_string"], body)
            claimed, stored = False, None
            # Twice at most: the key may be freed between a refused claim and the look.
            for _ in range(2):
                if account is None:
                    break
                claimed = await idempotency.claim(
                    self.pool,
                    account,
                    key,
                    digest,
                    retention_s=RETENTION_S,
                    abandoned_s=ABANDONED_S,
                )
                stored = None if claimed else await idempotency.find(self.pool, account, key)
                if claimed or stored is not None:
                    break
        except LOOP_ERRORS as exc:
            log.warning(
                "idempotency key lookup failed: %s", exc, extra={"event": "api_store_error"}
            )
            await _error(request, send, ApiError(ErrorCode.UNAVAILABLE))
            return
        if account is None:  # the app answers 401
            await self.app(scope, replay, send)
            return
        if not claimed:
            if stored is not None and stored.request_hash != digest:
                await _error(
                    request,
                    send,
                    ApiError(ErrorCode.IDEMPOTENCY_KEY_REUSED, field="Idempotency-Key"),
                )
            elif stored is None or stored.status_code is None:
                await _error(
                    request,
                    send,
                    ApiError(ErrorCode.IDEMPOTENCY_KEY_IN_FLIGHT, field="Idempotency-Key"),
                )
            else:
                await _replay(send, stored)
            return
        await self._run(scope, replay, send, account, key, digest)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, account: str, key: str, digest: bytes
    ) -> None:
        status = 500
        content_type: str | None = None
        parts: list[bytes] = []
        size = 0

        async def capture(message: Message) -> None:
            nonlocal status, content_type, size
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                size += len(chunk)
                if size <= MAX_STORED_BYTES:
                    parts.append(chunk)
            await send(message)

        kept = False
        try:
            await self.app(scope, receive, capture)
            if 200 <= status < 300 and size <= MAX_STORED_BYTES:
                await idempotency.complete(
                    self.pool,
                    account,
                    key,
                    digest,
                    status_code=status,
                    content_type=content_type,
                    body=b"".join(parts),
                )
                kept = True
        finally:
            if not kept:
                with anyio.CancelScope(shield=True):
                    try:
                        await idempotency.release(self.pool, account, key, digest)
                    except LOOP_ERRORS as exc:
                        # The key frees itself after ABANDONED_S.
                        log.warning(
                            "idempotency key not released: %s",
                            exc,
                            extra={"event": "api_store_error"},
                        )


async def _read(receive: Receive, max_bytes: int) -> tuple[bytes, bool]:
    """The request body, and whether it was read whole within max_bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), False
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return b"".join(parts), False
        if not message.get("more_body", False):
            return b"".join(parts), True


def _replaying(body: bytes, receive: Receive, *, more: bool) -> Receive:
    """A receive that gives the app what was read first, then whatever is left."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


async def _replay(send: Send, stored: idempotency.Stored) -> None:
    headers = [(b"idempotent-replayed", b"true")]
    if stored.content_type:
        headers.append((b"content-type", stored.content_type.encode("latin-1")))
    body = stored.body or b""
    headers.append((b"content-length", str(len(body)).encode()))
    status = stored.status_code or 200
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(request: Request, send: Send, error: ApiError) -> None:
    response = error_response(request, error.code, error.message, error.field)
    await response(request.scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


PURGE_EVERY_S: Final = 3600.0


async def purge_forever(pool: asyncpg.Pool, stop: anyio.Event) -> None:
    """Deletes keys past retention every hour until stopped (a stale key is never used:
    claim takes it over; this only keeps the table small)."""
    while not stop.is_set():
        with anyio.move_on_after(PURGE_EVERY_S):
            await stop.wait()
        if stop.is_set():
            return
        try:
            removed = await idempotency.purge(pool, RETENTION_S)
        except LOOP_ERRORS as exc:
            log.warning("idempotency purge failed: %s", exc, extra={"event": "api_store_error"})
            continue
        if removed:
            log.info("idempotency keys purged: %d", removed, extra={"event": "idempotency_purged"})
