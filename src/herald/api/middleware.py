"""ASGI middleware: a request id on every response, and a cap on JSON body size."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herald.api.envelope import request_id_from


class RequestContext:
    """Gives each request an id (X-Request-ID in, or a new one) and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                header = value.decode("latin-1")
                break
        rid = request_id_from(header)
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyLimit:
    """Refuses bodies over max_bytes with 413, except on streaming paths (bulk import).

    The error is raised from receive(), so the app's handlers answer it in the envelope.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, streaming_suffixes: tuple[str, ...]):
        self.app = app
        self.max_bytes = max_bytes
        self.streaming_suffixes = streaming_suffixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].endswith(self.streaming_suffixes):
            await self.app(scope, receive, send)
            return
        declared = 0
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit():
                declared = int(value)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            if declared > self.max_bytes:
                raise HTTPException(status_code=413)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(status_code=413)
            return message

        await self.app(scope, counted, send)
