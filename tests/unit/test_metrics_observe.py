"""metrics.observe_all against Histogram.observe: the same buckets, count and sum."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram

from herald import metrics

BUCKETS = (0.1, 1.0, 5.0, 30.0)
VALUES = [0.0, 0.05, 0.1, 0.1000001, 1.0, 2.5, 5.0, 29.9, 30.0, 31.0, 1e9, 0.5, 0.5]


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


@pytest.mark.parametrize("values", [VALUES, [], [7.0] * 5])
def test_observe_all_counts_as_observe_does(values: list[float]) -> None:
    registry = CollectorRegistry()
    one_by_one = Histogram("a", "a", ["channel"], buckets=BUCKETS, registry=registry)
    at_once = Histogram("b", "b", ["channel"], buckets=BUCKETS, registry=registry)
    child = one_by_one.labels(channel="sms")
    for value in values:
        child.observe(value)
    metrics.observe_all(at_once.labels(channel="sms"), values)
    expected = {(name[1:], le): v for (name, le), v in _samples(one_by_one).items()}
    got = {(name[1:], le): v for (name, le), v in _samples(at_once).items()}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_observe_all_refuses_a_histogram_without_its_labels() -> None:
    histogram = Histogram("c", "c", ["channel"], buckets=BUCKETS, registry=CollectorRegistry())
    with pytest.raises(ValueError):
        metrics.observe_all(histogram, [1.0])
