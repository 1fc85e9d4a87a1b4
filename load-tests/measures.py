"""Pure arithmetic the benchmarks share: histogram quantiles and gauges from /metrics text,
windowed send rates, the send mix a campaign implies, and the `lost` figure. No I/O here, so
it is unit tested (tests/unit/test_bench_helpers.py); CPU time is in cputime.py."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from herald.domain.channels import Channel, SendingMode, chain
from herald.simulator.outcomes import expected_path

# The folded counters a recount must reproduce exactly.
COUNTER_FIELDS = ("sent", "delivered", "read", "failed", "skipped", "cancelled", "final")


@dataclass(frozen=True, kw_only=True)
class Histogram:
    """One Prometheus histogram with every label set merged: (upper bound, cumulative count)."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float


def histogram(metrics_text: str, name: str) -> Histogram:
    """The histogram `name` from Prometheus text exposition, summed over its label sets."""
    by_bound: dict[float, float] = {}
    total_sum = 0.0
    total_count = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])
                by_bound[bound] = by_bound.get(bound, 0.0) + sample.value
            elif sample.name == f"{name}_sum":
                total_sum += sample.value
            elif sample.name == f"{name}_count":
                total_count += sample.value
    return Histogram(buckets=tuple(sorted(by_bound.items())), sum=total_sum, count=total_count)


def gauge(metrics_text: str, name: str) -> float:
    """The gauge `name` from Prometheus text exposition, summed over its label sets (0 when
    absent)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == name
        for sample in family.samples
        if sample.name == name
    )


def counter(metrics_text: str, name: str) -> float:
    """The counter `name` (without `_total`) from Prometheus text exposition, summed over its
    label sets (0 when absent)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        if family.name == name
        for sample in family.samples
        if sample.name == f"{name}_total"
    )


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q.

    buckets are (upper bound, cumulative count), sorted, the last one +Inf. None when empty.
    A rank in the +Inf bucket answers the highest finite bound, as Prometheus does.
    """
    if not buckets or not 0.0 <= q <= 1.0:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of raw values (q in 0..1); None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def max_window_rate(
    timestamps_s: Iterable[float],
    *,
    window_s: float = 1.0,
    start_s: float = -math.inf,
    end_s: float = math.inf,
) -> float:
    """The most events any window [t, t + window_s) holds, per second, over windows that lie
    inside [start_s, end_s]. Windows start at each event, which is where a maximum starts."""
    times = sorted(t for t in timestamps_s if start_s <= t <= end_s)
    best = 0
    for i, first in enumerate(times):
        if first + window_s > end_s:
            break
        stop = bisect.bisect_left(times, first + window_s, lo=i)
        best = max(best, stop - i)
    return best / window_s


def max_sampled_rate(
    samples: Sequence[tuple[float, float]],
    *,
    window_s: float = 1.0,
    start_s: float = -math.inf,
    end_s: float = math.inf,
) -> float:
    """The highest rate between two samples of a cumulative counter at least window_s apart
    (the shortest such span from each sample), for spans inside [start_s, end_s].

    Sampling makes each span a little longer than window_s, which only averages more."""
    inside = [(t, c) for t, c in samples if start_s <= t <= end_s]
    times = [t for t, _ in inside]
    best = 0.0
    for i, (t0, c0) in enumerate(inside):
        j = bisect.bisect_left(times, t0 + window_s, lo=i + 1)
        if j >= len(inside):
            break
        t1, c1 = inside[j]
        best = max(best, (c1 - c0) / (t1 - t0))
    return best


def mean_rate(
    samples: Sequence[tuple[float, float]], *, start_s: float = -math.inf, end_s: float = math.inf
) -> float:
    """A cumulative counter's average rate between its first and last sample in the span."""
    inside = [(t, c) for t, c in samples if start_s <= t <= end_s]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return 0.0
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def last_increase(samples: Sequence[tuple[float, float]], *, after_s: float) -> float | None:
    """Time of the first sample at which the counter shows its final value, among samples
    after `after_s`; None when it never moved after then."""
    later = [(t, c) for t, c in samples if t >= after_s]
    if len(later) < 2:
        return None
    final = later[-1][1]
    before = [(t, c) for t, c in samples if t < after_s]
    baseline = before[-1][1] if before else later[0][1]
    if final == baseline:
        return None
    for t, c in later:
        if c == final:
            return t
    return None


def lost(*, expected_total: int, counters: Mapping[str, int], recount: Mapping[str, int]) -> int:
    """Recipients missing or not final, plus every unit by which a folded counter differs
    from a recount of the recipient rows. 0 means nothing lost and nothing counted twice."""
    missing = abs(expected_total - recount.get("total", 0))
    not_final = recount.get("total", 0) - recount.get("final", 0)
    mismatch = sum(abs(counters.get(f, 0) - recount.get(f, 0)) for f in COUNTER_FIELDS)
    return missing + not_final + mismatch


@dataclass(frozen=True, kw_only=True)
class PlannedSend:
    """One provider request a campaign makes: to whom, on which channel, which attempt."""

    index: int  # g of the synthetic audience (phone = first_phone + g)
    phone: str
    channel: Channel
    attempt: int


def planned_sends(
    *,
    count: int,
    first_phone: int,
    mode: SendingMode,
    bad_phone_every: int = 0,
    nameless_every: int = 0,
) -> list[PlannedSend]:
    """The requests a campaign over `contacts.insert_synthetic`'s audience makes when nothing
    fails transiently: every channel of each recipient's expected path, in chain order.
    Skipped recipients (bad phone, no first name for the template) make none."""
    channels = chain(mode)
    sends: list[PlannedSend] = []
    for g in range(count):
        if (bad_phone_every and g % bad_phone_every == 0) or (
            nameless_every and g % nameless_every == 0
        ):
            continue
        phone = f"+{first_phone + g}"
        for attempt, (channel, _) in enumerate(expected_path(phone, channels), start=1):
            sends.append(PlannedSend(index=g, phone=phone, channel=channel, attempt=attempt))
    # The campaign sends every first attempt before any fallback; so does the ceiling loop.
    sends.sort(key=lambda s: s.attempt)
    return sends


def mix(sends: Iterable[PlannedSend]) -> dict[str, int]:
    return dict(Counter(s.channel.value for s in sends))
