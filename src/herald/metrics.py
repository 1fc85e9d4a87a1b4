"""Prometheus metrics: one registry per process, served on HERALD_METRICS_PORT.

Labels are bounded (account, channel, provider, outcome, status, topic, reason); exact
per-campaign figures live in PostgreSQL, never in labels. docs/metrics.md is the catalogue
and a test diffs it against `catalogue()`.

One asyncio process per pod, so no multiprocess mode: every metric lives in the default
registry, which also carries the process and Python collectors (CPU, memory, GC).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from enum import IntEnum
from importlib import metadata
from socketserver import ThreadingMixIn
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import anyio
from aiohttp import web
from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.metrics import MetricWrapperBase

log = logging.getLogger(__name__)

# `_created` series double the series count and no herald panel or alert reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELAY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# A healthy loop wakes within a few ms; seconds mean a blocking call or CPU starvation.
_LOOP_LAG_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

SENDS = Counter(
    "herald_sends_total",
    "Provider send requests by outcome (accepted, rejected, retryable, ambiguous).",
    ["channel", "provider", "outcome"],
)
SEND_DURATION = Histogram(
    "herald_send_duration_seconds",
    "Time from request start to provider answer.",
    ["channel", "provider"],
    buckets=_LATENCY_BUCKETS_S,
)
SENDS_IN_FLIGHT = Gauge("herald_sends_in_flight", "Provider requests awaiting an answer.")
AMBIGUOUS_RESENDS = Counter(
    "herald_ambiguous_resends_total",
    "Sends repeated because the first one's outcome was lost (at most one per attempt).",
    ["channel", "provider"],
)
SKIPPED = Counter(
    "herald_recipients_skipped_total", "Recipients skipped before any send, by reason.", ["reason"]
)
RATE_LIMIT_WAIT = Histogram(
    "herald_rate_limit_wait_seconds",
    "Time a send waited for a token of its account and channel.",
    ["channel"],
    buckets=_LATENCY_BUCKETS_S,
)
BATCHES_EXPANDED = Counter("herald_batches_expanded_total", "Dispatch batches created.")
BATCH_SIZE = Histogram(
    "herald_batch_size_recipients",
    "Recipients per dispatch batch.",
    buckets=(10, 100, 1_000, 10_000, 50_000, 100_000),
)
EXPANSION_DURATION = Histogram(
    "herald_expansion_duration_seconds",
    "Time to expand one campaign's audience into recipient rows.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCHES_DISPATCHED = Counter("herald_batches_dispatched_total", "Batches a worker finished.")
CALLBACKS = Counter(
    "herald_callbacks_total",
    "Provider callbacks received by the ingress, by result (accepted, rejected, ignored).",
    ["provider", "outcome"],
)
STATUS_EVENTS_FOLDED = Counter(
    "herald_status_events_folded_total",
    "Status events folded, by whether they changed a recipient (changed, unchanged).",
    ["outcome"],
)
CALLBACKS_FOLDED = Counter(
    "herald_callbacks_folded_total",
    "Provider callback events folded by the status consumer, by the status they report and "
    "whether they changed a recipient (changed, unchanged: duplicate or late).",
    ["channel", "status", "outcome"],
)
FOLD_DURATION = Histogram(
    "herald_fold_duration_seconds",
    "Time to fold one batch of status events in one transaction.",
    buckets=_LATENCY_BUCKETS_S,
)
CALLBACK_DELAY = Histogram(
    "herald_callback_delay_seconds",
    "Time from a send being recorded to its delivered or read callback being folded.",
    ["channel"],
    buckets=_DELAY_BUCKETS_S,
)
FALLBACKS = Counter(
    "herald_fallbacks_total",
    "Recipients moved to the next channel of their chain, by channels and cause "
    "(unreachable, failed, window_expired).",
    ["from_channel", "to_channel", "reason"],
)
CAMPAIGNS_COMPLETED = Counter("herald_campaigns_completed_total", "Campaigns completed.")
CAMPAIGNS = Gauge(
    "herald_campaigns",
    "Campaigns by status, read from PostgreSQL every few seconds (same value on every pod).",
    ["status"],
)
DEAD_LETTERS = Counter(
    "herald_dead_letters_total", "Records sent to the dead-letter topic.", ["topic", "reason"]
)
CONSUMER_LAG = Gauge(
    "herald_consumer_lag_records",
    "Records between the last committed offset and the partition's end, last seen.",
    ["topic"],
)
CIRCUIT_BREAKER_STATE = Gauge(
    "herald_circuit_breaker_state",
    "Provider circuit breaker: 0 closed (sending), 1 half-open (probing), 2 open (not sending).",
    ["provider", "channel"],
)
HTTP_REQUESTS = Counter(
    "herald_http_requests_total",
    "HTTP requests served by herald's listeners (ingress, API), by route and status code.",
    ["route", "method", "code"],
)
HTTP_REQUEST_DURATION = Histogram(
    "herald_http_request_duration_seconds",
    "Time to answer one HTTP request, by route.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS_S,
)
EVENT_LOOP_LAG = Histogram(
    "herald_event_loop_lag_seconds",
    "How late the event loop ran the once-a-second heartbeat.",
    buckets=_LOOP_LAG_BUCKETS_S,
)
BUILD_INFO = Gauge("herald_build_info", "Always 1; the running herald version.", ["version"])


def _version() -> str:
    try:
        return metadata.version("herald")
    except metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.labels(version=_version()).set(1)


class BreakerState(IntEnum):
    """Values of herald_circuit_breaker_state; the dashboard maps them back to names."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


def set_breaker_state(*, provider: str, channel: str, state: BreakerState) -> None:
    CIRCUIT_BREAKER_STATE.labels(provider=provider, channel=channel).set(int(state))


# Statuses always exported (zero when none), so a panel shows 0 rather than "no data".
CAMPAIGN_STATUSES: Final = ("scheduled", "sending", "paused", "completed", "cancelled")

CampaignCounter = Callable[[], Awaitable[Mapping[str, int]]]


def set_campaign_counts(counts: Mapping[str, int]) -> None:
    for status in (*CAMPAIGN_STATUSES, *counts):
        CAMPAIGNS.labels(status=status).set(counts.get(status, 0))


async def poll_campaigns(
    count: CampaignCounter, stop: anyio.Event, *, interval_s: float = 15.0
) -> None:
    """Refresh herald_campaigns from PostgreSQL until stop; one role per deployment runs it.

    `count` returns {status: campaigns}. A failed read keeps the last values: an outage of
    PostgreSQL shows in its own metrics, not as campaigns dropping to zero.
    """
    while not stop.is_set():
        try:
            set_campaign_counts(await count())
        except Exception as exc:
            log.warning("campaign counts: %s", exc, extra={"event": "campaign_counts_failed"})
        with anyio.move_on_after(interval_s):
            await stop.wait()


@web.middleware
async def observe_http(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp middleware: request count and duration by route template (never the raw path,
    which would carry ids)."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    code = 500
    try:
        response = await handler(request)
        code = response.status
        return response
    except web.HTTPException as exc:
        code = exc.status
        raise
    finally:
        HTTP_REQUESTS.labels(route=route, method=request.method, code=str(code)).inc()
        HTTP_REQUEST_DURATION.labels(route=route, method=request.method).observe(
            time.perf_counter() - started
        )


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class ObserveASGI:
    """ASGI middleware with the same two metrics as `observe_http`, for the API.

    The route template is read after the app ran: Starlette's router writes the matched
    route into the scope it was given, and that is the dict this wrapper passed down.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 500

        async def send_and_note(message: Any) -> None:
            nonlocal code
            if message.get("type") == "http.response.start":
                code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            HTTP_REQUESTS.labels(route=route, method=method, code=str(code)).inc()
            HTTP_REQUEST_DURATION.labels(route=route, method=method).observe(
                time.perf_counter() - started
            )


@dataclass(frozen=True, kw_only=True)
class MetricInfo:
    """One herald metric as exported: what docs/metrics.md must list."""

    name: str
    kind: str
    labels: tuple[str, ...]
    help: str


def catalogue() -> list[MetricInfo]:
    """Every herald_ metric defined in this module, by exported name."""
    found = []
    for value in globals().values():
        if not isinstance(value, MetricWrapperBase):
            continue
        kind = str(value._type)
        # prometheus-client keeps a counter's name without `_total` and adds it on export.
        name = f"{value._name}_total" if kind == "counter" else value._name
        found.append(
            MetricInfo(
                name=name,
                kind=kind,
                labels=tuple(value._labelnames),
                help=value._documentation,
            )
        )
    return sorted(found, key=lambda m: m.name)


# One probe answers with an HTTP status code and a JSON body.
Probe = Callable[[], tuple[int, bytes]]
_REASONS: Final = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds would drown the logs


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    # One slow scrape must not hold up a probe.
    daemon_threads = True


class MetricsServer:
    """/metrics and the health probes on their own port, answered from a thread.

    A thread, not the event loop: when the loop is wedged, /metrics still shows why (the loop
    lag histogram) and the liveness probe answers 503 instead of timing out.
    """

    def __init__(self, port: int, host: str, probes: Mapping[str, Probe]) -> None:
        metrics_app = make_wsgi_app(REGISTRY)
        self._probes = dict(probes)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                return metrics_app(environ, start_response)  # type: ignore[no-any-return]
            probe = self._probes.get(path)
            status, body = probe() if probe else (404, b'{"error": "not found"}')
            reason = _REASONS.get(status, "Service Unavailable")
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response(f"{status} {reason}", headers)
            return [body]

        self._server = make_server(
            host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="herald-metrics",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop answering and free the port; blocks for up to one poll interval."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve(
    port: int, host: str = "0.0.0.0", *, probes: Mapping[str, Probe] | None = None
) -> MetricsServer | None:
    """Expose /metrics (and any probes, by path) on their own port; port 0 disables it."""
    if not port:
        return None
    return MetricsServer(port, host, probes or {})
