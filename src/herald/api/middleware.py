"""ASGI middleware: a request id on every response, a cap on JSON body size, and the route
templates the request metrics are labelled with."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, HTTPException
from starlette.routing import Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from herald import metrics
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


class RouteTemplates:
    """The documented operations of the API: what request metrics start at zero, and the
    template of a path the router never saw (a 429, a replayed idempotent request)."""

    def __init__(self, operations: Iterable[tuple[str, str, tuple[str, ...]]]) -> None:
        self.operations = list(operations)
        # Literal paths before templated ones: /v1/contacts/import is not /v1/contacts/{id}.
        ordered = sorted(self.operations, key=lambda op: op[0].count("{"))
        self._patterns: list[tuple[re.Pattern[str], str, str]] = [
            (compile_path(path)[0], path, method) for path, method, _ in ordered
        ]

    @classmethod
    def of(cls, app: FastAPI) -> RouteTemplates:
        """Every operation in the app's OpenAPI document, with the codes it documents and
        500 (what any handler answers when it fails), then the routes the document leaves
        out (/healthz, /docs, /openapi.json) with 200 and 500."""
        operations = []
        for path, item in app.openapi().get("paths", {}).items():
            for method, operation in item.items():
                codes = {c for c in operation.get("responses", {}) if c.isdigit()} | {"500"}
                operations.append((path, method.upper(), tuple(sorted(codes))))
        documented = {(path, method) for path, method, _ in operations}
        for route in app.router.routes:
            if isinstance(route, Route):
                for method in sorted(route.methods or ()):
                    if (route.path, method) not in documented and method != "HEAD":
                        operations.append((route.path, method, ("200", "500")))
        return cls(operations)

    def initialise(self) -> None:
        metrics.initialise_http(self.operations)

    def __call__(self, scope: Mapping[str, Any]) -> str | None:
        path, method = scope.get("path", ""), scope.get("method", "")
        matching = [(t, allowed) for regex, t, allowed in self._patterns if regex.match(path)]
        for template, allowed in matching:
            if allowed == method:
                return template
        # A method the path does not take (405) still names the path's template.
        return matching[0][0] if matching else None
