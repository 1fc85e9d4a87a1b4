"""docs/metrics.md against the registry, Prometheus naming rules, and the metric helpers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
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


def test_promtool_accepts_the_exposition() -> None:
    # Not skipped when missing: CI installs Debian's prometheus, and so should a laptop.
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian: apt-get install prometheus)"
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
            [promtool, "check", "metrics"],
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


ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "herald"
_FRESH = """
import sys
from aiohttp import web
from prometheus_client import REGISTRY, generate_latest
from herald import metrics
from herald.domain.channels import Channel

async def ok(request):
    return web.Response()

app = web.Application()
app.router.add_post("/callbacks/twilio", ok)
app.router.add_post("/callbacks/whatsapp", ok)
metrics.initialise_ingress(app, [Channel.SMS, Channel.WHATSAPP])
metrics.initialise_worker([("sms", "twilio"), ("whatsapp", "whatsapp")])
metrics.initialise_status()
metrics.initialise_consumer("herald.dispatch-batches")
metrics.initialise_http([("/v1/campaigns", "GET", (200, 500))])
sys.stdout.write(generate_latest(REGISTRY).decode())
"""


def _fresh_scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
    """A new process's registry after every initialise_*: name -> (labels, value)."""
    done = subprocess.run(
        [sys.executable, "-c", _FRESH], capture_output=True, text=True, timeout=60, check=True
    )
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(done.stdout):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def _labelsets(
    scrape: dict[str, list[tuple[dict[str, str], float]]], name: str, *keys: str
) -> set[tuple[str, ...]]:
    samples = scrape.get(name, [])
    assert samples, f"{name} has no series"
    assert all(value == 0 for _, value in samples), f"{name} is not all zero"
    return {tuple(labels[k] for k in keys) for labels, _ in samples}


def test_a_fresh_registry_shows_every_bounded_combination_at_zero() -> None:
    scrape = _fresh_scrape()
    pairs = {("sms", "twilio"), ("whatsapp", "whatsapp")}
    sends = _labelsets(scrape, "herald_sends_total", "channel", "provider", "outcome")
    assert sends == {(c, p, o) for c, p in pairs for o in metrics.SEND_OUTCOMES}
    assert _labelsets(scrape, "herald_send_duration_seconds_count", "channel", "provider") == pairs
    assert _labelsets(scrape, "herald_ambiguous_resends_total", "channel", "provider") == pairs
    assert _labelsets(scrape, "herald_rate_limit_wait_seconds_count", "channel") == {
        ("sms",),
        ("whatsapp",),
    }
    breakers = _labelsets(scrape, "herald_circuit_breaker_state", "channel", "provider")
    assert breakers == pairs
    skipped = _labelsets(scrape, "herald_recipients_skipped_total", "reason")
    assert skipped == {(r,) for r in metrics.SKIP_REASONS}
    fallbacks = _labelsets(scrape, "herald_fallbacks_total", "from_channel", "to_channel", "reason")
    assert fallbacks == {
        (a, b, r)
        for a, b in (("whatsapp", "rcs"), ("rcs", "sms"), ("whatsapp", "sms"))
        for r in ("unreachable", "failed", "window_expired")
    }
    folded = _labelsets(scrape, "herald_callbacks_folded_total", "channel", "status", "outcome")
    assert len(folded) == 5 * len(metrics.CALLBACK_STATUSES) * 2
    assert _labelsets(scrape, "herald_status_events_folded_total", "outcome") == {
        ("changed",),
        ("unchanged",),
    }
    assert len(_labelsets(scrape, "herald_callback_delay_seconds_count", "channel")) == 5
    dead = _labelsets(scrape, "herald_dead_letters_total", "topic", "reason")
    assert dead == {
        (t, r) for t in ("herald.dispatch-batches", "parked") for r in metrics.DEAD_LETTER_REASONS
    }
    callbacks = _labelsets(scrape, "herald_callbacks_total", "provider", "outcome")
    assert callbacks == {(p, o) for p in ("twilio", "whatsapp") for o in metrics.CALLBACK_OUTCOMES}
    refused = _labelsets(scrape, "herald_callback_signatures_refused_total", "provider", "reason")
    assert refused == {(p, r) for p in ("twilio", "whatsapp") for r in metrics.SIGNATURE_REFUSALS}
    http = _labelsets(scrape, "herald_http_requests_total", "route", "method", "code")
    assert ("/callbacks/twilio", "POST", "401") in http
    assert ("/callbacks/whatsapp", "POST", "503") in http
    assert {("/v1/campaigns", "GET", "200"), ("/v1/campaigns", "GET", "500")} <= http
    # Nothing this role set does not know: no lag claimed, no campaigns by status.
    assert "herald_consumer_lag_records" not in scrape


def test_skip_reasons_are_the_ones_the_code_uses() -> None:
    compose = (SOURCE / "domain" / "compose.py").read_text()
    delivery = (SOURCE / "delivery.py").read_text()
    used = set(re.findall(r'Skip\(reason="([a-z_]+)"', compose))
    used |= set(re.findall(r'SKIPPED\.labels\(reason="([a-z_]+)"\)', delivery))
    assert used == set(metrics.SKIP_REASONS)


def test_dead_letter_reasons_are_the_ones_the_code_uses() -> None:
    used: set[str] = set()
    for path in SOURCE.rglob("*.py"):
        text = path.read_text()
        # reason strings handed to DeadLetter.send/send_value: their part before the ':'
        for call in re.finditer(r"dead_letter\.send(?:_value)?\((.{0,400}?)\n\s*\)", text, re.S):
            used |= set(re.findall(r'f?"([a-z_]+): ', call.group(1)))
        # the consumer's own retries build `reason` before dead-lettering
        used |= set(re.findall(r'reason = f?"([a-z_]+): ', text))
    assert used, "found no dead-letter reasons: the pattern no longer matches the code"
    assert used <= set(metrics.DEAD_LETTER_REASONS), sorted(used - set(metrics.DEAD_LETTER_REASONS))


def test_unknown_methods_are_one_label_value() -> None:
    assert metrics.http_method("GET") == "GET"
    assert metrics.http_method("BREW") == "other"
    assert metrics.http_method("get") == "other"


@pytest.mark.parametrize(
    ("secret", "signature", "reason"),
    [
        ("", "sig", "unconfigured"),
        ("s", None, "missing"),
        ("s", "", "missing"),
        ("s", "x", "mismatch"),
    ],
)
def test_refused_signatures_say_why(secret: str, signature: str | None, reason: str) -> None:
    labels = {"provider": "viber", "reason": reason}
    before = REGISTRY.get_sample_value("herald_callback_signatures_refused_total", labels) or 0.0
    metrics.refuse_signature("viber", signature=signature, secret=secret)
    assert REGISTRY.get_sample_value("herald_callback_signatures_refused_total", labels) == (
        before + 1
    )


def _progress(counters: int, quiet_s: float = 100.0) -> tuple[int, float]:
    return counters, quiet_s


@pytest.mark.parametrize(
    ("seen", "stalled"),
    [
        # (time, counters) of one campaign; it may sit still for quiet_s 100 + grace 50.
        ([(0, 5), (100, 5), (150, 5)], 0),  # still, but within its allowance
        ([(0, 5), (100, 5), (151, 5)], 1),  # past it
        ([(0, 5), (100, 6), (200, 6)], 0),  # it moved at 100: the clock starts again
        ([(0, 5), (100, 6), (251, 6)], 1),
    ],
)
def test_stall_watch_counts_campaigns_still_past_their_allowance(
    seen: list[tuple[float, int]], stalled: int
) -> None:
    watch = metrics.StallWatch(grace_s=50)
    counts = [watch.observe({"c-1": _progress(n)}, now_s=t) for t, n in seen]
    assert counts[-1] == stalled


def test_stall_watch_forgets_campaigns_that_left_sending_and_uses_each_allowance() -> None:
    watch = metrics.StallWatch(grace_s=0)
    watch.observe({"short": _progress(1, 10), "long": _progress(1, 1000)}, now_s=0)
    assert watch.observe({"short": _progress(1, 10), "long": _progress(1, 1000)}, now_s=11) == 1
    assert watch.observe({"long": _progress(1, 1000)}, now_s=12) == 0
    # Back in sending later (paused, then resumed): watched afresh.
    assert watch.observe({"short": _progress(1, 10), "long": _progress(1, 1000)}, now_s=13) == 0


async def test_outbox_and_stall_polls_set_their_gauges() -> None:
    outbox_read, stalls_read = anyio.Event(), anyio.Event()

    async def backlog() -> tuple[int, float]:
        outbox_read.set()  # one round is enough
        return 3, 42.5

    rounds = 0

    async def progress() -> dict[str, tuple[int, float]]:
        nonlocal rounds
        rounds += 1
        if rounds == 2:  # the second look sees it has not moved
            stalls_read.set()
        return {"c-1": _progress(7, quiet_s=0)}

    with anyio.fail_after(5):
        await metrics.poll_outbox(backlog, outbox_read, interval_s=0)
        await metrics.poll_stalls(progress, stalls_read, interval_s=0, grace_s=-1)
    assert REGISTRY.get_sample_value("herald_outbox_pending_records") == 3
    assert REGISTRY.get_sample_value("herald_outbox_oldest_pending_age_seconds") == 42.5
    assert REGISTRY.get_sample_value("herald_campaigns_stalled") == 1
