"""Prometheus metrics: one registry per process, served on HERALD_METRICS_PORT.

Labels are bounded (account, channel, provider, outcome, status, topic, reason); exact
per-campaign figures live in PostgreSQL, never in labels. docs/metrics.md is the catalogue.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DELAY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

SENDS = Counter(
    "herald_sends_total",
    "Provider send requests by outcome (accepted, rejected, retryable, ambiguous).",
    ["channel", "provider", "outcome"],
)
SEND_DURATION = Histogram(
    "herald_send_duration_seconds",
    "Time from request start to provider answer.",
    ["channel", "provider"],
    buckets=_LATENCY_BUCKETS_S,
)
SENDS_IN_FLIGHT = Gauge("herald_sends_in_flight", "Provider requests awaiting an answer.")
AMBIGUOUS_RESENDS = Counter(
    "herald_ambiguous_resends_total",
    "Sends repeated because the first one's outcome was lost (at most one per attempt).",
    ["channel", "provider"],
)
SKIPPED = Counter(
    "herald_recipients_skipped_total", "Recipients skipped before any send, by reason.", ["reason"]
)
RATE_LIMIT_WAIT = Histogram(
    "herald_rate_limit_wait_seconds",
    "Time a send waited for a token of its account and channel.",
    ["channel"],
    buckets=_LATENCY_BUCKETS_S,
)
BATCHES_EXPANDED = Counter("herald_batches_expanded_total", "Dispatch batches created.")
BATCH_SIZE = Histogram(
    "herald_batch_size_recipients",
    "Recipients per dispatch batch.",
    buckets=(10, 100, 1_000, 10_000, 50_000, 100_000),
)
EXPANSION_DURATION = Histogram(
    "herald_expansion_duration_seconds",
    "Time to expand one campaign's audience into recipient rows.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCHES_DISPATCHED = Counter("herald_batches_dispatched_total", "Batches a worker finished.")
CALLBACKS = Counter(
    "herald_callbacks_total",
    "Provider callbacks received by the ingress, by result (accepted, rejected, ignored).",
    ["provider", "outcome"],
)
STATUS_EVENTS_FOLDED = Counter(
    "herald_status_events_folded_total",
    "Status events folded, by whether they changed a recipient (changed, unchanged).",
    ["outcome"],
)
FOLD_DURATION = Histogram(
    "herald_fold_duration_seconds",
    "Time to fold one batch of status events in one transaction.",
    buckets=_LATENCY_BUCKETS_S,
)
CALLBACK_DELAY = Histogram(
    "herald_callback_delay_seconds",
    "Time from a send being recorded to its delivered or read callback being folded.",
    ["channel"],
    buckets=_DELAY_BUCKETS_S,
)
CAMPAIGNS_COMPLETED = Counter("herald_campaigns_completed_total", "Campaigns completed.")
DEAD_LETTERS = Counter(
    "herald_dead_letters_total", "Records sent to the dead-letter topic.", ["topic", "reason"]
)
CONSUMER_LAG = Gauge(
    "herald_consumer_lag_records",
    "Records between the last committed offset and the partition's end, last seen.",
    ["topic"],
)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Expose /metrics on its own port (a background thread inside prometheus-client)."""
    if port:
        start_http_server(port, addr=host)
