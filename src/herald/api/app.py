"""The control-plane application and its server.

`create_app` builds the FastAPI app over a pool; `serve` runs it under uvicorn until a stop
event is set (the runner's `api` role).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import asyncpg
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from herald.api import (
    account,
    auth,
    campaigns,
    contacts,
    errors,
    idempotency,
    imports,
    keys,
    lists,
    recipients,
    segments,
    stats,
    templates,
)
from herald.api.config import ApiConfig
from herald.api.envelope import ErrorEnvelope
from herald.api.errors import ApiError, ErrorCode
from herald.api.guard import storable_input
from herald.api.idempotency import Idempotency
from herald.api.middleware import BodyLimit, RequestContext, RouteTemplates
from herald.api.ratelimit import KeyedBuckets, RateLimit
from herald.metrics import ObserveASGI
from herald.settings import Settings

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": text}
    for status, text in (
        (400, "Malformed request"),
        (401, "Missing or invalid X-API-Key"),
        (404, "Not found (also for other accounts' resources)"),
        (409, "The resource's state does not allow this"),
        (413, "The request body is too large"),
        (415, "The body's content type is not accepted here"),
        (422, "Validation failed; error.field names the input"),
        (429, "Too many requests for this API key; retry after Retry-After seconds"),
    )
}
_ERROR_RESPONSES[429]["headers"] = {
    "Retry-After": {
        "description": "Whole seconds until this API key may make another request",
        "schema": {"type": "integer", "minimum": 1},
    }
}


async def _known_query(request: Request) -> None:
    """Refuses query parameters the endpoint does not declare: a typo is not a no-op."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _allowed_query(route)
    for name in request.query_params:
        if name not in allowed:
            raise ApiError(ErrorCode.UNKNOWN_PARAMETER, f"unknown parameter {name!r}", field=name)


_ALLOWED: dict[int, frozenset[str]] = {}


def _allowed_query(route: APIRoute) -> frozenset[str]:
    found = _ALLOWED.get(id(route))
    if found is None:
        found = frozenset(_query_names(route.dependant))
        _ALLOWED[id(route)] = found
    return found


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def create_app(*, pool: asyncpg.Pool, config: ApiConfig) -> FastAPI:
    app = FastAPI(
        title="Herald control-plane API",
        version=API_VERSION,
        description=(
            "Campaigns, contacts, lists, segments, templates and statistics. Authenticate "
            "with the X-API-Key header. Every response is {data, meta}; every error is "
            "{error: {code, number, message, field}, meta}. Error codes: docs/api.md."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        dependencies=[Depends(_known_query), Depends(storable_input)],
        responses=_ERROR_RESPONSES,
    )
    app.state.pool = pool
    app.state.config = config
    failures = auth_failure_buckets(config)
    app.state.guards = auth.Guards(failures=failures, accounts=rate_buckets(config))
    errors.install(app)
    # Specific paths before /v1/contacts/{id} and /v1/campaigns/{id}.
    for module in (
        imports,
        lists,
        segments,
        contacts,
        templates,
        stats,
        campaigns,
        recipients,
        keys,
        account,
    ):
        app.include_router(module.router)
    app.add_middleware(
        BodyLimit, max_bytes=config.max_body_bytes, streaming_suffixes=imports.STREAMING_PATHS
    )
    # Outside the body limit (it reads the body first, and leaves an oversize one to it).
    app.add_middleware(
        Idempotency,
        pool=pool,
        max_body_bytes=config.max_body_bytes,
        streaming_suffixes=imports.STREAMING_PATHS,
    )
    # Inside RequestContext (a 429 carries the request id), before the body is read.
    app.add_middleware(RateLimit, buckets=rate_buckets(config), failures=failures)
    app.add_middleware(RequestContext)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Outermost, so a 429 or a replayed response is counted and timed too.
    routes = RouteTemplates.of(app)
    routes.initialise()
    app.add_middleware(ObserveASGI, route_of=routes)
    return app


def auth_failure_buckets(config: ApiConfig) -> KeyedBuckets | None:
    """Failed authentications per client address; None when that limit is off."""
    if config.auth_failure_rate_per_s <= 0:
        return None
    return KeyedBuckets(
        rate_per_s=config.auth_failure_rate_per_s,
        burst_requests=max(1, config.auth_failure_burst),
    )


def rate_buckets(config: ApiConfig) -> KeyedBuckets | None:
    """The per-key request buckets the config asks for; None when the limit is off."""
    if config.rate_limit_per_s <= 0:
        return None
    return KeyedBuckets(
        rate_per_s=config.rate_limit_per_s, burst_requests=max(1, config.rate_limit_burst)
    )


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the runner owns SIGTERM and sets `stop`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    *,
    settings: Settings,
    pool: asyncpg.Pool,
    stop: anyio.Event,
    host: str,
    port: int,
    ready: anyio.Event | None = None,
    config: ApiConfig | None = None,
) -> None:
    """Serves the API on host:port until `stop` is set; `ready` is set once it listens."""
    config = config or ApiConfig.from_settings(settings)
    await auth.bootstrap(pool, account_id=config.bootstrap_account_id, key=config.bootstrap_api_key)
    app = create_app(pool=pool, config=config)
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            timeout_graceful_shutdown=max(1, int(settings.drain_timeout_s)),
        )
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        tg.start_soon(idempotency.purge_forever, pool, stop)
        while not server.started:
            if server.should_exit:
                break
            await anyio.sleep(0.01)
        if server.started:
            log.info("api listening on %s:%d", host, port, extra={"event": "api_started"})
            if ready is not None:
                ready.set()
        await stop.wait()
        server.should_exit = True
    log.info("api stopped", extra={"event": "api_stopped"})
