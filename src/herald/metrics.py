"""Prometheus metrics: one registry per process, served on HERALD_METRICS_PORT.

Labels are bounded (account, channel, provider, outcome, status, topic, reason); exact
per-campaign figures live in PostgreSQL, never in labels. docs/metrics.md is the catalogue
and a test diffs it against `catalogue()`.

One asyncio process per pod, so no multiprocess mode: every metric lives in the default
registry, which also carries the process and Python collectors (CPU, memory, GC).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from importlib import metadata
from itertools import pairwise
from socketserver import ThreadingMixIn
from typing import Any, Final, TypeVar
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

from herald.domain.campaign import PIPELINE
from herald.domain.channels import Channel, SendingMode, chain
from herald.providers.base import ErrorClass

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
BATCHES_YIELDED = Counter(
    "herald_batches_yielded_total",
    "Batches a worker handed back to the end of their partition after worker_slice_s, so "
    "other accounts' work on that partition runs in between (fair sharing).",
)
PROVIDER_UNAUTHORIZED = Counter(
    "herald_provider_unauthorized_total",
    "Sends a provider refused for herald's credential (expired or revoked); the provider "
    "account's breaker holds its work until the credential works again.",
    ["provider"],
)
RECONCILED = Counter(
    "herald_reconciled_total",
    "Work found in PostgreSQL that Kafka no longer carried, put back on its path: batches "
    "published again, fallback work published again, confirmed campaigns admitted.",
    ["kind"],
)
for _kind in ("batches", "fallbacks", "admitted"):
    RECONCILED.labels(kind=_kind)
API_AUTH_FAILURES = Counter(
    "herald_api_auth_failures_total",
    "API requests refused for their credentials: missing, invalid (no live key has it) or "
    "throttled (the client address failed too often and is refused before any lookup).",
    ["reason"],
)
for _reason in ("missing", "invalid", "throttled"):
    API_AUTH_FAILURES.labels(reason=_reason)
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
CALLBACK_SIGNATURES_REFUSED = Counter(
    "herald_callback_signatures_refused_total",
    "Callbacks refused before parsing because their signature was missing, did not verify, or "
    "could not be checked (no secret configured), by provider and reason.",
    ["provider", "reason"],
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
CAMPAIGNS_FAILED = Counter(
    "herald_campaigns_failed_total",
    "Campaigns that ended failed: no recipient taken by a provider, some failed.",
)
CAMPAIGNS = Gauge(
    "herald_campaigns",
    "Campaigns by status, read from PostgreSQL every few seconds (same value on every pod).",
    ["status"],
)
CAMPAIGNS_STALLED = Gauge(
    "herald_campaigns_stalled",
    "Campaigns in sending whose counters have not moved for longer than their fallback "
    "window, their batch delay and a grace period together (same value on every pod).",
)
ERROR_BUDGET_PAUSES = Counter(
    "herald_error_budget_pauses_total",
    "Campaigns paused because too many of their recent sends failed at the provider.",
)
OUTBOX_PENDING = Gauge(
    "herald_outbox_pending_records",
    "Outbox rows not yet published to Kafka, read from PostgreSQL (same value on every pod).",
)
OUTBOX_OLDEST_AGE = Gauge(
    "herald_outbox_oldest_pending_age_seconds",
    "Age of the oldest outbox row not yet published; 0 when none is waiting.",
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


Metric = TypeVar("Metric", Counter, Gauge, Histogram)


@functools.lru_cache(maxsize=4096)
def _child(metric: Counter | Gauge | Histogram, labels: tuple[tuple[str, str], ...]) -> Any:
    return metric.labels(**dict(labels))


def child(metric: Metric, **labels: str) -> Metric:
    """metric.labels(**labels), looked up once per label set: the hot paths (a send, a
    callback, a fold, an HTTP request) count through it, as a labels() call costs more than
    the count. Every herald label set is bounded (channels, providers, outcomes, routes)."""
    found: Metric = _child(metric, tuple(labels.items()))
    return found


def observe_all(histogram: Histogram, values: Sequence[float]) -> None:
    """histogram.observe(v) for each of many finite values, with one increment per bucket
    instead of a walk of the bounds and two locked increments per value: the status fold
    observes a callback delay per delivered attempt. It reads prometheus_client's Histogram
    internals; tests/unit/test_metrics_observe.py holds it to observe()."""
    histogram._raise_if_not_observable()  # type: ignore[no-untyped-call]
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    for value in values:
        # The first bucket whose upper bound is >= value, as observe() picks it.
        counts[bisect_left(bounds, value)] += 1
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    histogram._sum.inc(sum(values))


def set_breaker_state(*, provider: str, channel: str, state: BreakerState) -> None:
    CIRCUIT_BREAKER_STATE.labels(provider=provider, channel=channel).set(int(state))


# Statuses always exported (zero when none), so a panel shows 0 rather than "no data".
CAMPAIGN_STATUSES: Final = tuple(s.value for s in PIPELINE)

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

    async def refresh() -> None:
        set_campaign_counts(await count())

    await _refresh_forever(refresh, stop, interval_s, "campaign_counts_failed")


OutboxBacklog = Callable[[], Awaitable[tuple[int, float]]]


async def poll_outbox(
    backlog: OutboxBacklog, stop: anyio.Event, *, interval_s: float = 15.0
) -> None:
    """Refresh the outbox gauges until stop. `backlog` returns (rows not yet published, age
    in seconds of the oldest of them). Run it beside poll_campaigns, not in the relay: a
    relay that is down must still show its backlog."""

    async def refresh() -> None:
        pending, oldest_age_s = await backlog()
        OUTBOX_PENDING.set(pending)
        OUTBOX_OLDEST_AGE.set(oldest_age_s if pending else 0.0)

    await _refresh_forever(refresh, stop, interval_s, "outbox_backlog_failed")


class StallWatch:
    """Counts campaigns in `sending` whose counters have not moved for longer than their own
    quiet time plus `grace_s`. Pure: the caller supplies the clock."""

    def __init__(self, *, grace_s: float) -> None:
        self.grace_s = grace_s
        # campaign id -> (counters last seen, when they last changed)
        self._seen: dict[str, tuple[int, float]] = {}

    def observe(self, campaigns: Mapping[str, tuple[int, float]], now_s: float) -> int:
        """`campaigns`: every campaign in `sending` by id, as (a number that changes whenever
        one of its counters moves: their sum; how long it may sit still on its own: its
        fallback window plus its batch delay, in seconds)."""
        seen, stalled = {}, 0
        for campaign_id, (counters, quiet_s) in campaigns.items():
            last = self._seen.get(campaign_id)
            moved_s = now_s if last is None or last[0] != counters else last[1]
            seen[campaign_id] = (counters, moved_s)
            if now_s - moved_s > quiet_s + self.grace_s:
                stalled += 1
        self._seen = seen  # campaigns that left `sending` are forgotten
        return stalled


SendingProgress = Callable[[], Awaitable[Mapping[str, tuple[int, float]]]]


async def poll_stalls(
    progress: SendingProgress,
    stop: anyio.Event,
    *,
    interval_s: float = 30.0,
    grace_s: float = 600.0,
) -> None:
    """Refresh herald_campaigns_stalled until stop. `progress` returns what
    StallWatch.observe takes; a pod starts watching afresh, so a stall shows `grace_s` after
    its start at the earliest."""
    watch = StallWatch(grace_s=grace_s)

    async def refresh() -> None:
        CAMPAIGNS_STALLED.set(watch.observe(await progress(), time.monotonic()))

    await _refresh_forever(refresh, stop, interval_s, "campaign_stalls_failed")


async def _refresh_forever(
    refresh: Callable[[], Awaitable[None]], stop: anyio.Event, interval_s: float, event: str
) -> None:
    while not stop.is_set():
        try:
            await refresh()
        except Exception as exc:
            log.warning("%s: %s", event, exc, extra={"event": event})
        with anyio.move_on_after(interval_s):
            await stop.wait()


# Label values that form a known finite set. A role exports them at zero from its start, so
# that rate() and increase() see the first increment after a start or a scale-up (a series
# born at 1 has no earlier sample to rise from).
SEND_OUTCOMES: Final = ("accepted", *(e.value for e in ErrorClass))
# compose.py's Skip reasons and the worker's quiet-hours hold (a test keeps them in step).
SKIP_REASONS: Final = (
    "invalid_phone",
    "invalid_email",
    "missing_variable",
    "no_channel_left",
    "no_content",
    "no_provider",
    "no_viber_identity",
    "opted_out",
    "quiet_hours_held",
)
FALLBACK_PATHS: Final = tuple(
    sorted({(a.value, b.value) for mode in SendingMode for a, b in pairwise(chain(mode))})
)
WORKER_FALLBACK_REASONS: Final = ("unreachable",)
STATUS_FALLBACK_REASONS: Final = ("failed", "window_expired")
# The ingress's provider label per channel (herald_callbacks_total and its refusals).
CALLBACK_PROVIDERS: Final = {
    Channel.SMS: "twilio",
    Channel.WHATSAPP: "whatsapp",
    Channel.RCS: "rbm",
    Channel.VIBER: "viber",
    Channel.EMAIL: "email",
}
CALLBACK_OUTCOMES: Final = ("accepted", "rejected", "ignored", "unavailable")
SIGNATURE_REFUSALS: Final = ("missing", "mismatch", "unconfigured")
CALLBACK_STATUSES: Final = ("sent", "delivered", "read", "failed")
FOLD_OUTCOMES: Final = ("changed", "unchanged")
# The reason prefixes (before the first `:`) every dead-letter path uses.
DEAD_LETTER_REASONS: Final = (
    "handler",
    "store",
    "kafka",
    "invalid_event",
    "unknown_account",
    "campaign_id_taken",
    "invalid_batch",
    "unknown_campaign",
    "invalid_status",
    "unknown_recipient",
    "channel_mismatch",
    "unknown_message",
)
# The topic label of callbacks parked for an unknown message id and dead-lettered later.
PARKED: Final = "parked"
# Codes the ingress answers (success, malformed, unsigned, challenge refused, Kafka away).
INGRESS_CODES: Final = (200, 204, 400, 401, 403, 500, 503)


def initialise_worker(providers: Iterable[tuple[str, str]]) -> None:
    """A worker's series at zero; `providers` are its (channel, provider name) pairs."""
    for channel, provider in providers:
        for outcome in SEND_OUTCOMES:
            SENDS.labels(channel=channel, provider=provider, outcome=outcome)
        SEND_DURATION.labels(channel=channel, provider=provider)
        AMBIGUOUS_RESENDS.labels(channel=channel, provider=provider)
        PROVIDER_UNAUTHORIZED.labels(provider=provider)
        RATE_LIMIT_WAIT.labels(channel=channel)
        # A new breaker is closed: this is its true state, not a placeholder.
        set_breaker_state(provider=provider, channel=channel, state=BreakerState.CLOSED)
    for reason in SKIP_REASONS:
        SKIPPED.labels(reason=reason)
    _initialise_fallbacks(WORKER_FALLBACK_REASONS)


def initialise_status() -> None:
    """The status role's series at zero."""
    for outcome in FOLD_OUTCOMES:
        STATUS_EVENTS_FOLDED.labels(outcome=outcome)
        for channel in Channel:
            for status in CALLBACK_STATUSES:
                CALLBACKS_FOLDED.labels(channel=channel.value, status=status, outcome=outcome)
    for channel in Channel:
        CALLBACK_DELAY.labels(channel=channel.value)
    _initialise_fallbacks(STATUS_FALLBACK_REASONS)
    initialise_consumer(PARKED)


def initialise_consumer(topic: str) -> None:
    """herald_dead_letters_total at zero for a topic as it is labelled: the prefixed name a
    consumer reads (settings.topic(...)), or PARKED."""
    for reason in DEAD_LETTER_REASONS:
        DEAD_LETTERS.labels(topic=topic, reason=reason)


def initialise_ingress(app: web.Application, channels: Iterable[Channel]) -> None:
    """The ingress's series at zero: every route of `app` and every enabled channel's
    callbacks. Call it once the routes are added."""
    operations = [
        (route.resource.canonical, route.method, INGRESS_CODES)
        for route in app.router.routes()
        if route.resource is not None and route.method != "*"
    ]
    initialise_http(operations)
    for channel in channels:
        provider = CALLBACK_PROVIDERS[channel]
        for outcome in CALLBACK_OUTCOMES:
            CALLBACKS.labels(provider=provider, outcome=outcome)
        for reason in SIGNATURE_REFUSALS:
            CALLBACK_SIGNATURES_REFUSED.labels(provider=provider, reason=reason)


def initialise_http(operations: Iterable[tuple[str, str, Iterable[int | str]]]) -> None:
    """(route template, method, the codes it answers) at zero."""
    for route, method, codes in operations:
        method = http_method(method)
        HTTP_REQUEST_DURATION.labels(route=route, method=method)
        for code in codes:
            HTTP_REQUESTS.labels(route=route, method=method, code=str(code))


def _initialise_fallbacks(reasons: Iterable[str]) -> None:
    for reason in reasons:
        for from_channel, to_channel in FALLBACK_PATHS:
            FALLBACKS.labels(from_channel=from_channel, to_channel=to_channel, reason=reason)


def refuse_signature(provider: str, *, signature: str | None, secret: str) -> None:
    """Count one callback refused for its signature, with why."""
    reason = "unconfigured" if not secret else "missing" if not signature else "mismatch"
    CALLBACK_SIGNATURES_REFUSED.labels(provider=provider, reason=reason).inc()


# Any other method a client sends is counted as "other": the label stays bounded.
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def http_method(method: str) -> str:
    return method if method in _METHODS else "other"


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
        method = http_method(request.method)
        child(HTTP_REQUESTS, route=route, method=method, code=str(code)).inc()
        child(HTTP_REQUEST_DURATION, route=route, method=method).observe(
            time.perf_counter() - started
        )


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class ObserveASGI:
    """ASGI middleware with the same two metrics as `observe_http`, for the API.

    The route template is read after the app ran: Starlette's router writes the matched
    route into the scope it was given, and that is the dict this wrapper passed down. A
    request answered before the router (a 429, a replayed idempotent request) has none;
    `route_of` then names its template from the path, or the route is "unmatched".
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        route_of: Callable[[Mapping[str, Any]], str | None] | None = None,
    ) -> None:
        self.app = app
        self.route_of = route_of

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
            route = getattr(scope.get("route"), "path", None)
            if route is None and self.route_of is not None:
                route = self.route_of(scope)
            route = route or "unmatched"
            method = http_method(str(scope.get("method", "")))
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
