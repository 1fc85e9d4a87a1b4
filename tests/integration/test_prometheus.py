"""A real Prometheus scrapes a herald process, and every dashboard query runs against it.

The parser-level lint (tests/unit/test_grafana.py) cannot see evaluation errors such as
many-to-many matches or label sets that collide after aggregation; a real server can. Needs
the `prometheus` binary (Debian: `apt-get install prometheus`, which CI's .ci/run does); it
fails where that is missing rather than skipping, so a green run always means it ran.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from herald import health, metrics
from herald.embedded import free_port
from herald.settings import Settings

PROMETHEUS = shutil.which("prometheus")
DASHBOARDS = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"


def _api(port: int, path: str, **params: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as exc:  # 4xx carries the PromQL error in its body
        body = json.load(exc)
    return body


def _expressions() -> Iterator[tuple[str, str]]:
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if "expr" in target:
                    yield f"{path.name}: {panel['title']}", target["expr"]


def _like_grafana(expr: str) -> str:
    # Grafana's interval variables at a one-second scrape, and "All" namespaces.
    return (
        expr.replace("$__rate_interval", "30s")
        .replace("$__range", "1h")
        .replace("$namespace", ".*")
    )


def _exercise_every_metric() -> None:
    """One of each series the dashboards read, as the roles would produce them."""
    for outcome in ("accepted", "unreachable"):
        metrics.SENDS.labels(channel="sms", provider="twilio", outcome=outcome).inc()
    metrics.SEND_DURATION.labels(channel="sms", provider="twilio").observe(0.08)
    metrics.SENDS_IN_FLIGHT.set(3)
    metrics.AMBIGUOUS_RESENDS.labels(channel="sms", provider="twilio").inc()
    metrics.SKIPPED.labels(reason="invalid_phone").inc()
    metrics.RATE_LIMIT_WAIT.labels(channel="sms").observe(0.01)
    metrics.BATCHES_EXPANDED.inc(2)
    metrics.BATCH_SIZE.observe(1000)
    metrics.EXPANSION_DURATION.observe(0.4)
    metrics.BATCHES_DISPATCHED.inc()
    for outcome in ("accepted", "rejected"):
        metrics.CALLBACKS.labels(provider="twilio", outcome=outcome).inc()
    metrics.refuse_signature("twilio", signature="forged", secret="s")
    for route, code in (("/callbacks/twilio", "204"), ("/callbacks/twilio", "503")):
        metrics.HTTP_REQUESTS.labels(route=route, method="POST", code=code).inc()
        metrics.HTTP_REQUEST_DURATION.labels(route=route, method="POST").observe(0.003)
    for code in ("200", "404", "500"):
        metrics.HTTP_REQUESTS.labels(route="/v1/campaigns", method="GET", code=code).inc()
    metrics.HTTP_REQUEST_DURATION.labels(route="/v1/campaigns", method="GET").observe(0.02)
    metrics.STATUS_EVENTS_FOLDED.labels(outcome="changed").inc(5)
    metrics.CALLBACKS_FOLDED.labels(channel="sms", status="delivered", outcome="changed").inc()
    metrics.FOLD_DURATION.observe(0.01)
    metrics.CALLBACK_DELAY.labels(channel="sms").observe(4.0)
    metrics.FALLBACKS.labels(from_channel="sms", to_channel="email", reason="failed").inc()
    metrics.CAMPAIGNS_COMPLETED.inc()
    metrics.CAMPAIGNS_FAILED.inc()
    metrics.PROVIDER_UNAUTHORIZED.labels(provider="twilio").inc()
    metrics.set_campaign_counts({"sending": 2})
    metrics.CAMPAIGNS_STALLED.set(1)
    metrics.ERROR_BUDGET_PAUSES.inc()
    metrics.OUTBOX_PENDING.set(4)
    metrics.OUTBOX_OLDEST_AGE.set(12.5)
    for topic in ("herald.campaign-events", "herald.status-events"):
        metrics.DEAD_LETTERS.labels(topic=topic, reason="invalid").inc()
        metrics.CONSUMER_LAG.labels(topic=topic).set(7)
    metrics.set_breaker_state(provider="twilio", channel="sms", state=metrics.BreakerState.CLOSED)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(Prometheus port, herald metrics port) with a one-second scrape of the latter."""
    assert PROMETHEUS is not None, "prometheus is not installed (apt-get install prometheus)"
    herald_port, port = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: herald\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{herald_port}']}}]\n"
    )
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port, herald_port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_for_samples(port: int, timeout_s: float = 30.0) -> None:
    """Until the target is up and two scrapes are stored (a rate needs two)."""
    deadline = time.monotonic() + timeout_s
    query = 'count_over_time(up{job="herald"}[1m]) >= 2 and up{job="herald"} == 1'
    while time.monotonic() < deadline:
        try:
            body = await anyio.to_thread.run_sync(lambda: _api(port, "/api/v1/query", query=query))
            if body.get("status") == "success" and body["data"]["result"]:
                return
        except OSError:
            pass  # not listening yet
        await anyio.sleep(0.5)
    pytest.fail("Prometheus did not scrape herald in time")


async def test_every_dashboard_query_evaluates_with_data(prometheus: tuple[int, int]) -> None:
    port, herald_port = prometheus
    _exercise_every_metric()
    ready = anyio.Event()
    ready.set()
    async with health.serving(Settings(metrics_port=herald_port), ready=ready):
        await _wait_for_samples(port)
        # Move every counter once more between scrapes, so rates are not all zero.
        _exercise_every_metric()
        await anyio.sleep(1.5)
        failures = []
        for where, expr in _expressions():
            query = _like_grafana(expr)
            body = await anyio.to_thread.run_sync(
                functools.partial(_api, port, "/api/v1/query", query=query)
            )
            if body.get("status") != "success":
                failures.append(f"{where}: {body.get('error')}: {query}")
            elif not body["data"]["result"]:
                failures.append(f"{where}: no series: {query}")
        assert not failures, "\n".join(failures)

        # Prometheus found every herald metric in the scrape.
        names = await anyio.to_thread.run_sync(lambda: _api(port, "/api/v1/label/__name__/values"))
        scraped = set(names["data"])
        for info in metrics.catalogue():
            wanted = f"{info.name}_count" if info.kind == "histogram" else info.name
            assert wanted in scraped, wanted
