"""Health probes and /metrics over real HTTP, on a real port, with a real event loop."""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from herald import health, metrics
from herald.bus import producer
from herald.embedded import free_port
from herald.settings import Settings
from herald.store import db
from tests.faults.hang import FreezableProxy, HungBroker, through, unix_socket


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


async def _aget(port: int, path: str) -> tuple[int, dict[str, object]]:
    status, body = await anyio.to_thread.run_sync(_get, port, path)
    return status, json.loads(body)


@pytest.mark.parametrize(
    ("age_s", "started", "draining", "unreachable", "live", "ready", "reason"),
    [
        (0.1, False, False, (), True, False, "starting"),
        (0.1, True, False, (), True, True, "ok"),
        (0.1, True, True, (), True, False, "draining"),
        (11.0, True, False, (), False, False, "event_loop_stalled"),
        (11.0, False, True, (), False, False, "event_loop_stalled"),
        # A dependency the roles need and cannot reach: not ready, still live (a restart
        # would not bring Kafka back).
        (0.1, True, False, ("kafka",), True, False, "kafka_unreachable"),
        (0.1, True, False, ("postgres", "kafka"), True, False, "postgres_unreachable"),
        # Draining and starting say more than an unreachable dependency.
        (0.1, True, True, ("kafka",), True, False, "draining"),
        (0.1, False, False, ("kafka",), True, False, "starting"),
        (11.0, True, False, ("kafka",), False, False, "event_loop_stalled"),
    ],
)
def test_verdicts(
    age_s: float,
    started: bool,
    draining: bool,
    unreachable: tuple[str, ...],
    live: bool,
    ready: bool,
    reason: str,
) -> None:
    lv = health.liveness(heartbeat_age_s=age_s, stale_after_s=10.0)
    rv = health.readiness(live=lv, started=started, draining=draining, unreachable=unreachable)
    assert (lv.ok, rv.ok, rv.reason) == (live, ready, reason)


async def test_dependencies_keep_the_last_verdict_of_each_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # True answers, False refuses, None hangs.
    answers: dict[str, bool | None] = {"postgres": True, "kafka": True}

    def check(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if answers[name] is None:
                await anyio.sleep_forever()  # hung: cut off by the timeout
            if not answers[name]:
                raise ConnectionRefusedError(111, "Connect call failed")

        return run

    deps = health.Dependencies(interval_s=60, timeout_s=0.05)
    assert deps.unreachable() == ()  # nothing checked yet: the roles connected to start
    deps.watch("postgres", check("postgres"))
    deps.watch("kafka", check("kafka"))
    with caplog.at_level(logging.INFO, logger="herald.health"):
        assert await deps.check_once() == ()
        answers["kafka"] = None
        assert await deps.check_once() == ("kafka",)
        answers["postgres"] = False
        # In the order they are watched, whichever failed first.
        assert await deps.check_once() == ("postgres", "kafka")
        assert deps.unreachable() == ("postgres", "kafka")
        answers |= {"postgres": True, "kafka": True}
        assert await deps.check_once() == ()
    # One line when a dependency goes, one when it comes back; none while nothing changes.
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "kafka unreachable: TimeoutError"),
        (
            "WARNING",
            "postgres unreachable: ConnectionRefusedError: [Errno 111] Connect call failed",
        ),
        ("INFO", "postgres reachable again"),
        ("INFO", "kafka reachable again"),
    ]


def test_heartbeat_age_follows_the_clock() -> None:
    now = [100.0]
    beat = health.Heartbeat(interval_s=1.0, clock=lambda: now[0])
    now[0] = 104.5
    assert beat.age_s() == pytest.approx(4.5)
    beat.beat()  # no loop attached: records the beat without scheduling the next one
    assert beat.age_s() == 0.0


async def test_probes_follow_startup_and_drain() -> None:
    port = free_port()
    settings = Settings(metrics_port=port)
    ready, stop = anyio.Event(), anyio.Event()
    async with health.serving(settings, ready=ready, stop=stop):
        assert await _aget(port, "/livez") == (
            200,
            {"status": "ok", "reason": "ok", "heartbeat_age_s": pytest.approx(0, abs=1)},
        )
        status, body = await _aget(port, "/readyz")
        assert (status, body["reason"]) == (503, "starting")
        ready.set()
        assert (await _aget(port, "/readyz"))[0] == 200
        assert (await _aget(port, "/healthz"))[0] == 200
        stop.set()
        status, body = await _aget(port, "/readyz")
        assert (status, body["reason"]) == (503, "draining")
        # Draining is not dying: liveness stays up until the process exits.
        assert (await _aget(port, "/livez"))[0] == 200
        assert (await anyio.to_thread.run_sync(_get, port, "/nowhere"))[0] == 404
    # The port is free again once the block ends.
    with pytest.raises(OSError):
        _get(port, "/livez")


async def test_a_wedged_loop_fails_liveness_and_recovers() -> None:
    port = free_port()
    config = health.HealthConfig(heartbeat_interval_s=0.05, stale_after_s=0.3)
    ready = anyio.Event()
    ready.set()
    async with health.serving(Settings(metrics_port=port), ready=ready, config=config):
        await anyio.sleep(0.1)
        # Block the loop on purpose; the probe thread still answers, with a 503.
        time.sleep(0.5)  # noqa: ASYNC251
        status, body = _get(port, "/livez")
        assert status == 503
        assert json.loads(body)["reason"] == "event_loop_stalled"
        assert _get(port, "/readyz")[0] == 503
        await anyio.sleep(0.2)
        assert (await _aget(port, "/livez"))[0] == 200


async def test_metrics_are_served_beside_the_probes() -> None:
    port = free_port()
    ready = anyio.Event()
    async with health.serving(Settings(metrics_port=port), ready=ready):
        status, body = await anyio.to_thread.run_sync(_get, port, "/metrics")
    text = body.decode()
    assert status == 200
    assert "herald_event_loop_lag_seconds_bucket" in text
    assert 'herald_build_info{version="' in text
    assert "_created" not in text


async def test_port_zero_serves_nothing() -> None:
    async with health.serving(Settings(metrics_port=0), ready=anyio.Event()) as h:
        assert h.live().ok


async def test_http_middleware_labels_by_route_template() -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=request.match_info["name"])

    def count(route: str, code: str) -> float:
        labels = {"route": route, "method": "GET", "code": code}
        return REGISTRY.get_sample_value("herald_http_requests_total", labels) or 0.0

    app = web.Application(middlewares=[metrics.observe_http])
    app.router.add_get("/hello/{name}", hello)
    ok, missing = count("/hello/{name}", "200"), count("unmatched", "404")
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/hello/ada")).status == 200
        assert (await client.get("/missing")).status == 404
    # The raw path (/hello/ada) never becomes a label value: ids would make it unbounded.
    assert count("/hello/{name}", "200") == ok + 1
    assert count("unmatched", "404") == missing + 1


async def test_asgi_middleware_labels_by_the_matched_route() -> None:
    class Route:
        path = "/v1/campaigns/{campaign_id}"

    async def app(scope: dict[str, object], receive: object, send: Callable[..., Any]) -> None:
        scope["route"] = Route()  # what Starlette's router does once a route matches
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, object]:
        return {"type": "http.request"}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    labels = {"route": Route.path, "method": "POST", "code": "201"}
    before = REGISTRY.get_sample_value("herald_http_requests_total", labels) or 0.0
    scope = {"type": "http", "method": "POST", "path": "/v1/campaigns/c-123"}
    await metrics.ObserveASGI(app)(scope, receive, send)  # type: ignore[arg-type]
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert REGISTRY.get_sample_value("herald_http_requests_total", labels) == before + 1


async def _until_ready_says(port: int, status: int, reason: str, timeout_s: float = 15) -> None:
    with anyio.fail_after(timeout_s):
        while True:
            got, body = await _aget(port, "/readyz")
            if (got, body["reason"]) == (status, reason):
                return
            await anyio.sleep(0.05)


# Checked often and cut off soon, so a test sees a freeze within a second.
QUICK_CHECKS = {"interval_s": 0.2, "timeout_s": 0.5}


async def test_readyz_fails_while_the_broker_hangs() -> None:
    with anyio.fail_after(90):
        await _broker_hangs()


async def _broker_hangs() -> None:
    port = free_port()
    async with HungBroker() as broker:
        settings = Settings.development(kafka_bootstrap=broker.bootstrap, metrics_port=port)
        ready, stop = anyio.Event(), anyio.Event()
        deps = health.Dependencies(**QUICK_CHECKS)
        async with (
            producer.producer(settings) as kafka,
            health.serving(settings, ready=ready, stop=stop, dependencies=deps),
        ):
            deps.watch(health.KAFKA, partial(producer.ping, kafka, 0.5))
            ready.set()
            await _until_ready_says(port, 200, "ok")
            broker.freeze()
            await _until_ready_says(port, 503, "kafka_unreachable")
            # Liveness does not follow the broker: a restart would not bring it back.
            assert (await _aget(port, "/livez"))[0] == 200
            broker.thaw()
            await _until_ready_says(port, 200, "ok")
            # Cut off (refused), not hung: the same answer.
            await broker.proxy.cut()
            await _until_ready_says(port, 503, "kafka_unreachable")
            await broker.proxy.restore()
            await _until_ready_says(port, 200, "ok")


async def test_readyz_fails_while_postgres_hangs(pg_url: str) -> None:
    with anyio.fail_after(60):
        await _postgres_hangs(pg_url)


async def _postgres_hangs(pg_url: str) -> None:
    port = free_port()
    settings = Settings(metrics_port=port)
    ready, stop = anyio.Event(), anyio.Event()
    deps = health.Dependencies(**QUICK_CHECKS)
    proxy = FreezableProxy("", unix_path=unix_socket(pg_url))
    async with (
        proxy,
        db.pool(through(pg_url, proxy), max_size=2) as pool,
        health.serving(settings, ready=ready, stop=stop, dependencies=deps) as probes,
    ):
        probes.watch(health.POSTGRES, partial(db.ping, pool, 0.5))
        ready.set()
        await _until_ready_says(port, 200, "ok")
        proxy.freeze()
        await _until_ready_says(port, 503, "postgres_unreachable")
        assert (await _aget(port, "/livez"))[0] == 200
        proxy.thaw()
        await _until_ready_says(port, 200, "ok")
        # The pool still serves: the pings that timed out left no broken connection behind.
        assert await pool.fetchval("SELECT 41 + 1") == 42
