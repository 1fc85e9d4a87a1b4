"""RED metrics of the control-plane API: every request counted and timed by route template,
and the Grafana API panels select series the API really exports."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import promql_parser
from fastapi import FastAPI
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from herald.api.app import create_app
from herald.api.config import ApiConfig
from herald.api.middleware import RouteTemplates
from tests.integration.api_support import Caller

DASHBOARDS = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
CAMPAIGN = "/v1/campaigns/{campaign_id}"


def _requests(route: str, method: str, code: str) -> float:
    labels = {"route": route, "method": method, "code": code}
    return REGISTRY.get_sample_value("herald_http_requests_total", labels) or 0.0


def _timed(route: str, method: str) -> float:
    labels = {"route": route, "method": method}
    return REGISTRY.get_sample_value("herald_http_request_duration_seconds_count", labels) or 0.0


async def test_requests_are_counted_and_timed_by_route_template(alice: Caller) -> None:
    listed, missing = _requests("/v1/campaigns", "GET", "200"), _requests(CAMPAIGN, "GET", "404")
    timed = _timed(CAMPAIGN, "GET")
    assert (await alice.get("/v1/campaigns")).status_code == 200
    unknown = f"c-{uuid.uuid4().hex}"
    assert (await alice.get(f"/v1/campaigns/{unknown}")).status_code == 404
    assert _requests("/v1/campaigns", "GET", "200") == listed + 1
    assert _requests(CAMPAIGN, "GET", "404") == missing + 1
    assert _timed(CAMPAIGN, "GET") == timed + 1
    # The raw path never becomes a label: ids would make the series unbounded.
    assert unknown not in generate_latest(REGISTRY).decode()


async def test_answers_before_the_router_still_name_their_route(
    api_app: FastAPI, alice: Caller
) -> None:
    # A one-request burst: the second request is refused by the rate limit, before routing.
    limited = create_app(
        pool=api_app.state.pool,
        config=ApiConfig(max_body_bytes=1024, rate_limit_per_s=0.001, rate_limit_burst=1),
    )
    before = _requests("/v1/campaigns", "GET", "429")
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as client:
        codes = [
            (await client.get("/v1/campaigns", headers={"X-API-Key": alice.key})).status_code
            for _ in range(2)
        ]
        assert (await client.request("BREW", "/v1/campaigns")).status_code in (401, 405)
    assert codes == [200, 429]
    assert _requests("/v1/campaigns", "GET", "429") == before + 1
    # A method no client should send is counted, under a bounded label.
    assert not re.search(r'method="BREW"', generate_latest(REGISTRY).decode())


def test_every_documented_operation_starts_at_zero(api_app: FastAPI) -> None:
    operations = RouteTemplates.of(api_app).operations
    assert len(operations) > 40
    for route, method, codes in operations:
        assert "500" in codes
        for code in codes:
            labels = {"route": route, "method": method, "code": code}
            assert REGISTRY.get_sample_value("herald_http_requests_total", labels) is not None
        assert _timed(route, method) is not None


def _api_selectors() -> list[tuple[str, Any]]:
    """(panel title, selector) of every dashboard query that reads the API's requests."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target.get("expr", "")
                if "herald_http_" not in expr or 'route!~"/callbacks/' not in expr:
                    continue
                expr = expr.replace("$__rate_interval", "1m").replace("$namespace", ".*")
                found += [(panel["title"], s) for s in _selectors(promql_parser.parse(expr))]
    return found


def _selectors(expr: Any) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return True

    promql_parser.walk(expr, visit)
    return found


def _matches(selector: Any, name: str, labels: dict[str, str]) -> bool:
    if selector.name != name:
        return False
    for matcher in selector.matchers.matchers:
        if matcher.name == "namespace":  # added by the scrape, not by herald
            continue
        value = labels.get(matcher.name, "")
        op = str(matcher.op).rsplit(".", 1)[-1]
        full = re.fullmatch(matcher.value, value) is not None
        ok = {
            "Equal": value == matcher.value,
            "NotEqual": value != matcher.value,
            "Re": full,
            "NotRe": not full,
        }[op]
        if not ok:
            return False
    return True


async def test_api_panels_select_series_the_api_exports(api_app: FastAPI, alice: Caller) -> None:
    assert (await alice.get("/v1/campaigns")).status_code == 200
    templates = {route for route, _, _ in RouteTemplates.of(api_app).operations}
    exported = [
        (sample.name, sample.labels)
        for family in text_string_to_metric_families(generate_latest(REGISTRY).decode())
        for sample in family.samples
        if sample.labels.get("route") in templates
    ]
    selectors = _api_selectors()
    panels = {title for title, _ in selectors}
    assert len(panels) == 3, panels  # rate, errors, duration
    for title, selector in selectors:
        assert any(_matches(selector, n, labels) for n, labels in exported), (title, selector)
