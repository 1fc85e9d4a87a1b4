"""docs/metrics.md against the registry, Prometheus naming rules, and the metric helpers."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import anyio
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from herald import metrics

CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
# Units a name carries as its suffix; the catalogue must then give the same unit.
NAMED_UNITS = ("seconds", "bytes", "ratio", "records", "recipients")
# Base units a name must carry whenever the catalogue gives them.
BASE_UNITS = ("seconds", "bytes", "ratio")
# Unbounded or personal values: never a label.
FORBIDDEN_LABELS = frozenset(
    {
        "campaign",
        "campaign_id",
        "recipient",
        "recipient_id",
        "contact",
        "contact_id",
        "message_id",
        "phone",
        "email",
        "to",
        "path",
        "url",
        "user",
        "ip",
    }
)
_ROW = re.compile(r"^\| `(herald_[a-z_]+)` \| (\w+) \| (\w*) \|([^|]*)\|")


def _documented() -> dict[str, tuple[str, str, tuple[str, ...]]]:
    rows: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for line in CATALOGUE.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            name, kind, unit, labels = match.groups()
            assert name not in rows, f"{name} listed twice"
            rows[name] = (kind, unit, tuple(re.findall(r"`([a-z_]+)`", labels)))
    return rows


def test_catalogue_matches_the_registry() -> None:
    documented = _documented()
    defined = {m.name: m for m in metrics.catalogue()}
    missing = sorted(set(defined) - set(documented))
    stale = sorted(set(documented) - set(defined))
    assert not missing, f"in herald.metrics but not in docs/metrics.md: {missing}"
    assert not stale, f"in docs/metrics.md but not in herald.metrics: {stale}"
    for name, info in defined.items():
        kind, _, labels = documented[name]
        assert (kind, labels) == (info.kind, info.labels), name


def test_catalogue_units_agree_with_names() -> None:
    for name, (_, unit, _) in _documented().items():
        assert unit, f"{name} has no unit"
        for base in NAMED_UNITS:
            if f"_{base}" in name:
                assert unit == base, f"{name}: unit {unit!r}"
        if unit in BASE_UNITS:
            assert f"_{unit}" in name, f"{name}: unit {unit} missing from the name"


def test_every_metric_follows_prometheus_naming() -> None:
    for info in metrics.catalogue():
        assert re.fullmatch(r"herald_[a-z][a-z0-9_]*", info.name), info.name
        assert info.name.endswith("_total") == (info.kind == "counter"), info.name
        if info.kind == "histogram":
            assert info.name.rsplit("_", 1)[1] in NAMED_UNITS, f"{info.name} has no unit"
        assert info.help.strip(), f"{info.name} has no help text"
        for label in info.labels:
            assert label not in FORBIDDEN_LABELS, f"{info.name}: unbounded label {label}"
            assert re.fullmatch(r"[a-z][a-z_]*", label), f"{info.name}: label {label}"


def test_exposition_parses_and_carries_no_created_series() -> None:
    text = generate_latest(REGISTRY).decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    # The parser reports counters without `_total`.
    expected = {m.name.removesuffix("_total") for m in metrics.catalogue()}
    assert expected <= names
    assert "_created" not in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_exposition() -> None:
    # Touch every labelled metric once so its samples, not just its header, are linted.
    touched = []
    for info in metrics.catalogue():
        if info.labels:
            metric = getattr(metrics, _attr(info.name))
            values = ["lint"] * len(info.labels)
            metric.labels(*values)
            touched.append((metric, values))
    try:
        checked = subprocess.run(
            ["promtool", "check", "metrics"],
            input=generate_latest(REGISTRY),
            capture_output=True,
            timeout=30,
            check=False,
        )
    finally:
        # Later tests read this registry (the Prometheus check): leave no fake series behind.
        for metric, values in touched:
            metric.remove(*values)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def _attr(name: str) -> str:
    for attr, value in vars(metrics).items():
        if getattr(value, "_name", None) == name.removesuffix("_total"):
            return attr
    raise AssertionError(name)


def _campaigns(status: str) -> float | None:
    return REGISTRY.get_sample_value("herald_campaigns", {"status": status})


async def test_poll_campaigns_fills_every_status_and_keeps_values_on_failure() -> None:
    answers: list[dict[str, int] | Exception] = [
        {"sending": 3, "draft": 1},
        RuntimeError("database down"),
    ]
    stop = anyio.Event()

    async def count() -> dict[str, int]:
        answer = answers.pop(0)
        if not answers:
            stop.set()
        if isinstance(answer, Exception):
            raise answer
        return answer

    with anyio.fail_after(5):
        await metrics.poll_campaigns(count, stop, interval_s=0.01)
    assert _campaigns("sending") == 3
    assert _campaigns("draft") == 1  # a status herald did not know of still shows
    assert _campaigns("paused") == 0


def test_breaker_state_is_a_number_per_provider_and_channel() -> None:
    metrics.set_breaker_state(provider="twilio", channel="sms", state=metrics.BreakerState.OPEN)
    labels = {"provider": "twilio", "channel": "sms"}
    assert REGISTRY.get_sample_value("herald_circuit_breaker_state", labels) == 2
