"""The benchmarks' pure arithmetic (load-tests/measures.py): quantiles from /metrics text,
windowed rates, the planned send mix and the `lost` figure."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from herald.domain.channels import Channel, SendingMode


@pytest.fixture(scope="module")
def measures() -> ModuleType:
    # load-tests is a folder of scripts, not a package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "load-tests"))
    try:
        return importlib.import_module("measures")
    finally:
        sys.path.pop(0)


METRICS = """\
# HELP herald_send_duration_seconds Time from request start to provider answer.
# TYPE herald_send_duration_seconds histogram
herald_send_duration_seconds_bucket{channel="sms",provider="twilio",le="0.01"} 10.0
herald_send_duration_seconds_bucket{channel="sms",provider="twilio",le="0.1"} 90.0
herald_send_duration_seconds_bucket{channel="sms",provider="twilio",le="+Inf"} 100.0
herald_send_duration_seconds_sum{channel="sms",provider="twilio"} 4.0
herald_send_duration_seconds_count{channel="sms",provider="twilio"} 100.0
herald_send_duration_seconds_bucket{channel="rcs",provider="rbm",le="0.01"} 0.0
herald_send_duration_seconds_bucket{channel="rcs",provider="rbm",le="0.1"} 0.0
herald_send_duration_seconds_bucket{channel="rcs",provider="rbm",le="+Inf"} 0.0
herald_send_duration_seconds_sum{channel="rcs",provider="rbm"} 0.0
herald_send_duration_seconds_count{channel="rcs",provider="rbm"} 0.0
"""


def test_histogram_merges_label_sets(measures: ModuleType) -> None:
    found = measures.histogram(METRICS, "herald_send_duration_seconds")
    assert found.buckets == ((0.01, 10.0), (0.1, 90.0), (math.inf, 100.0))
    assert (found.sum, found.count) == (4.0, 100.0)
    assert measures.histogram(METRICS, "herald_nothing").count == 0


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.05, 0.005),  # half-way through the first bucket, from 0
        (0.10, 0.01),
        (0.50, 0.01 + 0.09 * 40 / 80),
        (0.95, 0.1),  # in +Inf: the highest finite bound, as Prometheus answers
    ],
)
def test_histogram_quantile(measures: ModuleType, q: float, expected: float) -> None:
    buckets = ((0.01, 10.0), (0.1, 90.0), (math.inf, 100.0))
    assert measures.histogram_quantile(q, buckets) == pytest.approx(expected)


def test_histogram_quantile_of_nothing(measures: ModuleType) -> None:
    assert measures.histogram_quantile(0.5, ()) is None
    assert measures.histogram_quantile(0.5, ((1.0, 0.0), (math.inf, 0.0))) is None


def test_percentile_is_nearest_rank(measures: ModuleType) -> None:
    values = [float(v) for v in range(1, 101)]
    assert measures.percentile(values, 0.5) == 50.0
    assert measures.percentile(values, 0.99) == 99.0
    assert measures.percentile([], 0.5) is None


@pytest.mark.parametrize(
    ("stamps", "start", "end", "expected"),
    [
        ([0.0, 0.1, 0.2, 0.9, 1.0, 1.05], -math.inf, math.inf, 5.0),  # [0.1, 1.1) holds five
        ([0.0, 0.5, 0.99, 1.5, 1.6, 1.7, 1.8], -math.inf, math.inf, 5.0),  # [0.99, 1.99)
        ([0.0, 0.1, 0.2, 5.0, 5.1], 1.0, 10.0, 2.0),  # the burst before start is ignored
        ([9.5, 9.6, 9.7], 0.0, 10.0, 0.0),  # a window must end inside [start, end]
        ([], -math.inf, math.inf, 0.0),
    ],
)
def test_max_window_rate(
    measures: ModuleType, stamps: list[float], start: float, end: float, expected: float
) -> None:
    assert measures.max_window_rate(stamps, start_s=start, end_s=end) == expected


def test_max_sampled_rate_uses_spans_of_at_least_the_window(measures: ModuleType) -> None:
    # 100/s for 3 s, then 300 in the next second, sampled every 0.5 s.
    samples = [(t / 2, 50.0 * t) for t in range(7)] + [(3.5, 450.0), (4.0, 600.0)]
    assert measures.max_sampled_rate(samples) == pytest.approx(300.0)
    assert measures.max_sampled_rate(samples, end_s=3.0) == pytest.approx(100.0)
    assert measures.max_sampled_rate([(0.0, 0.0)]) == 0.0
    assert measures.mean_rate(samples) == pytest.approx(150.0)
    assert measures.mean_rate(samples, start_s=0.5, end_s=2.5) == pytest.approx(100.0)


def test_last_increase_after_a_moment(measures: ModuleType) -> None:
    samples = [(0.0, 0.0), (1.0, 10.0), (2.0, 15.0), (2.5, 18.0), (3.0, 18.0), (4.0, 18.0)]
    assert measures.last_increase(samples, after_s=1.5) == 2.5
    assert measures.last_increase(samples, after_s=2.8) is None  # nothing moved after then


def test_lost_counts_missing_open_and_miscounted(measures: ModuleType) -> None:
    exact = {"sent": 8, "delivered": 7, "read": 2, "failed": 2, "skipped": 1, "cancelled": 0}
    recount = {**exact, "final": 10, "total": 10}
    assert measures.lost(expected_total=10, counters={**exact, "final": 10}, recount=recount) == 0
    # One recipient not final, counted as delivered by the fold anyway.
    open_one = {**recount, "delivered": 6, "final": 9}
    folded = {**exact, "final": 10}
    assert measures.lost(expected_total=10, counters=folded, recount=open_one) == 1 + 1 + 1
    assert measures.lost(expected_total=12, counters=folded, recount=recount) == 2


def test_planned_sends_follow_the_simulators_paths(measures: ModuleType) -> None:
    sends = measures.planned_sends(
        count=100,
        first_phone=14150000000,
        mode=SendingMode.WHATSAPP_RCS_SMS,
        bad_phone_every=1000,
        nameless_every=50,
    )
    # g = 0 and 50 are skipped; units 6-9 fail on WhatsApp, 8-9 are not on RCS either.
    assert measures.mix(sends) == {"whatsapp": 98, "rcs": 40, "sms": 20}
    assert [s.attempt for s in sends] == sorted(s.attempt for s in sends)
    first_sms = next(s for s in sends if s.channel is Channel.SMS)
    assert first_sms.attempt == 3 and first_sms.phone.endswith(("8", "9"))


def test_gauge_sums_label_sets(measures: ModuleType) -> None:
    text = (
        "# HELP herald_sends_in_flight Provider requests awaiting an answer.\n"
        "# TYPE herald_sends_in_flight gauge\n"
        "herald_sends_in_flight 17.0\n"
        "# TYPE herald_lanes gauge\n"
        'herald_lanes{lane="a"} 2.0\n'
        'herald_lanes{lane="b"} 3.0\n'
    )
    assert measures.gauge(text, "herald_sends_in_flight") == 17.0
    assert measures.gauge(text, "herald_lanes") == 5.0
    assert measures.gauge(text, "herald_nothing") == 0.0
