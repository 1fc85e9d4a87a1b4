"""Dashboard lint rules as tests, and the provisioning files against the dashboards.

The rules grafana/dashboard-linter applies to Prometheus panels, re-stated for herald:
unique uids, a ${datasource} variable, a unit on every panel, $__rate_interval in every
rate, PromQL that parses, and every metric a panel reads defined in herald's registry with
the labels the panel filters on.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from herald import metrics

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PROMETHEUS = "prometheus"
POSTGRES = "grafana-postgresql-datasource"
# Grafana's interval variables, replaced by durations nothing else uses so that the parsed
# query shows which one a range came from.
RATE_INTERVAL = "7777s"
RANGE = "8888s"
# Labels the scrape adds to every herald series (see docs/metrics.md).
TARGET_LABELS = frozenset({"namespace", "pod", "instance", "job", "role"})
RANGE_FUNCTIONS = frozenset({"rate", "irate", "increase", "delta", "idelta", "deriv"})


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "herald_grafana_generate", GRAFANA / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _boards() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, json.loads(path.read_text())) for path in DASHBOARDS]


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _targets(kind: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dashboard file, panel, target) for every target of one data source type."""
    for name, board in _boards():
        for panel in _panels(board):
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == kind:
                    yield name, panel, target


def _variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


def promql(expr: str) -> str:
    """A panel expression with Grafana's variables replaced, ready for a PromQL parser."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", RANGE)
    expr = expr.replace("$__interval", "1m")
    # Dashboard variables only appear inside regex matchers; `$1` in label_replace stays.
    return re.sub(r"\$\{?([a-zA-Z_]\w*)\}?", ".*", expr)


def _selectors(expr: Any) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return True

    promql_parser.walk(expr, visit)
    return found


def _ranges(expr: Any) -> list[tuple[str, str]]:
    """(function, range) for every range vector in the expression."""
    found: list[tuple[str, str]] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.Call):
            for arg in node.args:
                if isinstance(arg, promql_parser.MatrixSelector):
                    found.append((node.func.name, f"{int(arg.range.total_seconds())}s"))
        elif isinstance(node, promql_parser.SubqueryExpr):
            found.append(("subquery", "any"))
        return True

    promql_parser.walk(expr, visit)
    return found


def registry_series() -> dict[str, frozenset[str]]:
    """Every series name herald's registry exports → the labels it may carry."""
    series: dict[str, frozenset[str]] = {}
    for info in metrics.catalogue():
        labels = frozenset(info.labels)
        if info.kind == "histogram":
            series[f"{info.name}_bucket"] = labels | {"le"}
            series[f"{info.name}_sum"] = labels
            series[f"{info.name}_count"] = labels
        else:
            series[info.name] = labels
    # The client's own collectors (process_*, python_*) as the registry exposes them.
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        for sample in family.samples:
            series.setdefault(sample.name, frozenset(sample.labels))
    return series


def test_committed_dashboards_match_the_generator() -> None:
    generator = _load_generator()
    expected = {path.name: text for path, text in generator.files()}
    committed = {path.name: path.read_text() for path in DASHBOARDS}
    assert committed == expected, "run `python grafana/generate.py` and commit the result"


def test_uids_and_titles_are_unique() -> None:
    boards = [board for _, board in _boards()]
    uids = [board["uid"] for board in boards]
    titles = [board["title"] for board in boards]
    assert len(set(uids)) == len(uids)
    assert len(set(titles)) == len(titles)
    assert all(re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids)


@pytest.mark.parametrize(("name", "board"), _boards(), ids=[p.name for p in DASHBOARDS])
def test_dashboard_shape(name: str, board: dict[str, Any]) -> None:
    variables = _variables(board)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == PROMETHEUS
    ids = [panel["id"] for panel in _panels(board)]
    assert len(set(ids)) == len(ids), f"{name}: panel ids repeat"
    for panel in _panels(board):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{name}: {panel['title']} is wider than the grid"
        if panel["type"] == "row":
            continue
        assert panel["title"], f"{name}: a panel has no title"
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit, f"{name}: {panel['title']!r} has no unit"
        assert panel["targets"], f"{name}: {panel['title']!r} has no query"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs)
        # Data sources only through variables: the JSON imports into any Grafana.
        for holder in (panel, *panel["targets"]):
            uid = holder["datasource"]["uid"]
            match = re.fullmatch(r"\$\{(\w+)\}", uid)
            assert match, f"{name}: {panel['title']!r} names data source {uid!r}"
            variable = variables[match.group(1)]
            assert variable["type"] == "datasource"
            assert variable["query"] == holder["datasource"]["type"]


def test_every_expression_parses() -> None:
    for name, panel, target in _targets(PROMETHEUS):
        try:
            promql_parser.parse(promql(target["expr"]))
        except ValueError as exc:
            pytest.fail(f"{name}: {panel['title']!r}: {exc}: {target['expr']}")


def test_rates_use_rate_interval() -> None:
    for name, panel, target in _targets(PROMETHEUS):
        for function, window in _ranges(promql_parser.parse(promql(target["expr"]))):
            # increase over the whole range is how a stat panel totals its time window.
            allowed = {RATE_INTERVAL} | ({RANGE} if function == "increase" else set())
            assert window in allowed, (
                f"{name}: {panel['title']!r}: {function}(...[{window}]) must use [$__rate_interval]"
            )


def test_every_metric_exists_with_the_labels_panels_filter_on() -> None:
    series = registry_series()
    used = set()
    for name, panel, target in _targets(PROMETHEUS):
        for selector in _selectors(promql_parser.parse(promql(target["expr"]))):
            metric = selector.name
            assert metric in series, f"{name}: {panel['title']!r} reads unknown {metric}"
            used.add(metric.removesuffix("_bucket").removesuffix("_count"))
            if metric.startswith("herald_"):
                assert re.search(r"namespace=~\"\$namespace\"", target["expr"])
                for matcher in selector.matchers.matchers:
                    known = series[metric] | TARGET_LABELS
                    assert matcher.name in known, (
                        f"{name}: {panel['title']!r} filters {metric} on {matcher.name}"
                    )
    # Every metric in the list the issue asks to see is on a dashboard.
    for wanted in (
        "herald_sends_total",
        "herald_send_duration_seconds",
        "herald_callbacks_total",
        "herald_callbacks_folded_total",
        "herald_callback_delay_seconds",
        "herald_fallbacks_total",
        "herald_rate_limit_wait_seconds",
        "herald_sends_in_flight",
        "herald_batches_expanded_total",
        "herald_consumer_lag_records",
        "herald_dead_letters_total",
        "herald_circuit_breaker_state",
        "herald_campaigns",
    ):
        assert wanted in used, f"no panel shows {wanted}"


def test_sql_panels_quote_their_variables() -> None:
    targets = list(_targets(POSTGRES))
    assert targets
    for name, panel, target in targets:
        raw = target["rawSql"]
        assert target["rawQuery"] and target["format"] in {"table", "time_series"}
        assert not re.search(r"select\s+\*", raw, re.IGNORECASE), f"{name}: {panel['title']}"
        # A text variable pasted raw into SQL is an injection; Grafana quotes with :sqlstring.
        for ref in re.findall(r"\$\{?campaign[^}\s]*\}?", raw):
            assert ref == "${campaign:sqlstring}", f"{name}: {panel['title']!r} uses {ref}"


def test_the_overview_has_red_rows_use_rows_and_campaign_progress() -> None:
    board = json.loads((GRAFANA / "dashboards" / "herald-overview.json").read_text())
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert sum("(RED)" in row for row in rows) >= 4
    assert any("(USE)" in row for row in rows)
    tables = [p for p in _panels(board) if p["type"] == "table"]
    assert any(t["targets"][0]["datasource"]["type"] == POSTGRES for t in tables)


def test_provisioning_matches_the_dashboards() -> None:
    provisioning = GRAFANA / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "herald.yaml").read_text())
    assert sources["apiVersion"] == 1
    by_type = {s["type"]: s for s in sources["datasources"]}
    assert set(by_type) == {PROMETHEUS, POSTGRES}
    assert by_type[PROMETHEUS]["jsonData"]["timeInterval"]
    postgres = by_type[POSTGRES]
    # The Postgres source logs in as the SELECT-only role that postgres-readonly-role.sql
    # creates and postgres-readonly.sql grants.
    role = (GRAFANA / "postgres-readonly-role.sql").read_text()
    assert f"CREATE ROLE {postgres['user']} LOGIN" in role
    assert "default_transaction_read_only = on" in role

    # No secret in the repository: Grafana reads it from its environment.
    assert re.fullmatch(r"\$\{\w+\}", postgres["secureJsonData"]["password"])
    dashboards = yaml.safe_load((provisioning / "dashboards" / "herald.yaml").read_text())
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
