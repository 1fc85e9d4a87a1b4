"""metrics.child: the labels() child, looked up once per label set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from herald import metrics


def test_a_child_is_the_labelled_child_and_counts_there() -> None:
    registry = CollectorRegistry()
    sends = Counter("sends", "s", ["channel", "outcome"], registry=registry)
    took = Histogram("took", "t", ["channel"], buckets=(1.0,), registry=registry)
    first = metrics.child(sends, channel="sms", outcome="accepted")
    assert metrics.child(sends, channel="sms", outcome="accepted") is first
    assert first is sends.labels(channel="sms", outcome="accepted")
    assert metrics.child(sends, channel="sms", outcome="permanent") is not first
    # The same labels of another metric are that metric's child.
    assert metrics.child(took, channel="sms") is took.labels(channel="sms")
    first.inc(2)
    metrics.child(sends, channel="sms", outcome="accepted").inc()
    assert registry.get_sample_value("sends_total", {"channel": "sms", "outcome": "accepted"}) == 3
