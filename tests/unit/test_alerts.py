"""Herald's PrometheusRule: schema, `promtool check rules`, `promtool test rules` (a firing and
a quiet case per alert), metrics that herald exports, and an entry in docs/alerts.md each.

Needs promtool (Debian: `apt-get install prometheus`); CI installs it, so these run there.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import pytest
import yaml

from herald import metrics

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "deploy" / "components" / "prometheus-operator"
RULE = COMPONENT / "prometheusrule.yaml"
SCHEMA = ROOT / "deploy" / "schemas" / "prometheusrule.schema.json"
CASES = ROOT / "tests" / "alerts" / "herald.test.yaml"
ALERTS_DOC = ROOT / "docs" / "alerts.md"
PROMTOOL = shutil.which("promtool")
# Labels the scrape adds (docs/metrics.md); rules may keep or match them.
TARGET_LABELS = frozenset({"namespace", "pod", "instance", "job", "role"})
SEVERITIES = frozenset({"warning", "critical"})
ANNOTATIONS = frozenset({"summary", "description", "runbook"})


def _rule() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(RULE.read_text())
    return doc


def _alerts() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for group in _rule()["spec"]["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] not in found, f"{rule['alert']} defined twice"
            found[rule["alert"]] = rule
    return found


def _promtool(*args: str, cwd: Path) -> None:
    assert PROMTOOL is not None, "promtool is not installed (apt-get install prometheus)"
    done = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _extract(directory: Path) -> Path:
    """spec.groups of the PrometheusRule as a plain Prometheus rule file."""
    rules = directory / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": _rule()["spec"]["groups"]}, sort_keys=False))
    return rules


def test_the_rule_validates_and_the_component_lists_it() -> None:
    # The validator as such, not jsonschema.validate: that also lints the schema, whose
    # copied CRD patterns use Go's inline flags ((?i)), which Python's re refuses mid-pattern.
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(_rule())
    kustomization = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert RULE.name in kustomization["resources"]


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    _promtool("check", "rules", str(_extract(tmp_path)), cwd=tmp_path)


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    _extract(tmp_path)
    alerts = _alerts()
    cases = yaml.safe_load(CASES.read_text())
    for group in cases["tests"]:
        for case in group.get("alert_rule_test", []):
            # The fixed annotations (the runbook) come from the rule; a case spells out the
            # rendered ones.
            fixed = {
                key: value
                for key, value in alerts[case["alertname"]]["annotations"].items()
                if "{{" not in value
            }
            for expected in case.get("exp_alerts") or []:
                expected["exp_annotations"] = {**fixed, **expected.get("exp_annotations", {})}
    (tmp_path / CASES.name).write_text(yaml.safe_dump(cases, sort_keys=False))
    _promtool("test", "rules", CASES.name, cwd=tmp_path)


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for group in yaml.safe_load(CASES.read_text())["tests"]:
        for case in group.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fires == set(_alerts()), "alerts without a firing case"
    assert quiet == set(_alerts()), "alerts without a quiet case"


@pytest.mark.parametrize("name", sorted(_alerts()))
def test_every_alert_says_how_bad_what_and_what_to_do(name: str) -> None:
    rule = _alerts()[name]
    assert name.startswith("Herald")
    assert rule["labels"]["severity"] in SEVERITIES
    assert set(rule["annotations"]) >= ANNOTATIONS
    for key in ANNOTATIONS:
        assert len(rule["annotations"][key].split()) >= (4 if key == "summary" else 12), key


def _selectors(expr: Any) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)
        return True

    promql_parser.walk(expr, visit)
    return found


@pytest.mark.parametrize("name", sorted(_alerts()))
def test_every_alert_reads_metrics_herald_exports(name: str) -> None:
    exported = {m.name: frozenset(m.labels) for m in metrics.catalogue()}
    expr = _alerts()[name]["expr"]
    selectors = _selectors(promql_parser.parse(expr))
    assert selectors
    for selector in selectors:
        assert selector.name in exported, f"{name}: {selector.name} is not a herald metric"
        labels = exported[selector.name] | TARGET_LABELS
        for matcher in selector.matchers.matchers:
            assert matcher.name in labels, f"{name}: {selector.name} has no {matcher.name}"
    # Grouping labels must exist on what is grouped.
    known = frozenset().union(*(exported[s.name] for s in selectors)) | TARGET_LABELS
    for grouping in re.findall(r"by \(([^)]*)\)", expr):
        for label in (part.strip() for part in grouping.split(",")):
            assert label in known, f"{name}: grouped by {label}, which no series carries"


def test_docs_explain_every_alert() -> None:
    text = ALERTS_DOC.read_text()
    for name, rule in _alerts().items():
        assert f"## {name}" in text, f"docs/alerts.md has no section for {name}"
        row = re.search(rf"^\| `{name}` \| (\w+) \|", text, re.MULTILINE)
        assert row, f"docs/alerts.md's table has no row for {name}"
        assert row.group(1) == rule["labels"]["severity"], name
