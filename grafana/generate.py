"""Builds herald's Grafana dashboards as JSON: `python grafana/generate.py` rewrites
grafana/dashboards/*.json, which are committed. tests/unit/test_grafana.py fails when the
committed files and this script disagree, and lints both.

Plain dictionaries rather than a builder library: the JSON model is small, stable since
Grafana 10, and this way the output is exactly what the tests read. Targets Grafana 11+.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
SCHEMA_VERSION = 39
PROM = {"type": "prometheus", "uid": "${datasource}"}
PG = {"type": "grafana-postgresql-datasource", "uid": "${pg_datasource}"}
RI = "$__rate_interval"
NS = 'namespace=~"$namespace"'

Panel = dict[str, Any]


def m(metric: str, matchers: str = "") -> str:
    """A selector of one herald series, always narrowed to the chosen namespaces."""
    return f"{metric}{{{NS}{', ' + matchers if matchers else ''}}}"


def rate(metric: str, matchers: str = "") -> str:
    return f"rate({m(metric, matchers)}[{RI}])"


def campaign_status(status: str) -> str:
    return m("herald_campaigns", f'status="{status}"')


def dead_letters(topic: str) -> str:
    # Topic label values carry the deployment's HERALD_TOPIC_PREFIX; match on the suffix.
    return rate("herald_dead_letters_total", f'topic=~".*{topic}"')


def quantile(q: float, metric: str, by: str = "", matchers: str = "") -> str:
    keys = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({keys}) ({rate(metric + '_bucket', matchers)}))"


def prom(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"datasource": PROM, "expr": expr, "legendFormat": legend, "refId": ref, "range": True}


def sql(raw: str, fmt: str = "table", ref: str = "A") -> dict[str, Any]:
    return {
        "datasource": PG,
        "editorMode": "code",
        "format": fmt,
        "rawQuery": True,
        "rawSql": " ".join(raw.split()),
        "refId": ref,
    }


def refs(*targets: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)]


def timeseries(
    title: str, unit: str, *targets: dict[str, Any], description: str = "", stack: bool = False
) -> Panel:
    custom: dict[str, Any] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "fieldConfig": {"defaults": {"unit": unit, "min": 0, "custom": custom}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": refs(*targets),
    }


def stat(title: str, unit: str, target: dict[str, Any], description: str = "") -> Panel:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": target["datasource"],
        "fieldConfig": {"defaults": {"unit": unit, "decimals": 0}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        },
        "targets": refs(target),
    }


def unit_override(column: str, unit: str, **extra: Any) -> dict[str, Any]:
    props = [{"id": "unit", "value": unit}]
    props += [{"id": key, "value": value} for key, value in extra.items()]
    return {"matcher": {"id": "byName", "options": column}, "properties": props}


def table(
    title: str, target: dict[str, Any], overrides: list[dict[str, Any]], description: str = ""
) -> Panel:
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": target["datasource"],
        "fieldConfig": {"defaults": {"unit": "none"}, "overrides": overrides},
        "options": {"showHeader": True, "cellHeight": "sm"},
        "targets": refs(target),
    }


def breaker_timeline() -> Panel:
    states = {"0": ("closed", "green"), "1": ("half-open", "orange"), "2": ("open", "red")}
    mapping = {
        "type": "value",
        "options": {
            value: {"text": text, "color": color, "index": i}
            for i, (value, (text, color)) in enumerate(states.items())
        },
    }
    return {
        "type": "state-timeline",
        "title": "Circuit breakers",
        "description": "Per provider and channel: closed sends, half-open probes, open waits.",
        "datasource": PROM,
        "fieldConfig": {
            "defaults": {"unit": "none", "mappings": [mapping], "color": {"mode": "thresholds"}},
            "overrides": [],
        },
        "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
        "targets": refs(
            prom(f"max by (provider, channel) ({m('herald_circuit_breaker_state')})", "")
            | {"legendFormat": "{{provider}} {{channel}}"}
        ),
    }


PROGRESS_COLUMNS = """
    c.id AS campaign, c.name, c.account_id AS account, c.status, c.sending_mode AS mode,
    c.total_recipients AS total, c.sent, c.delivered, c.read, c.failed, c.skipped, c.cancelled,
    CASE WHEN c.total_recipients > 0 THEN c.final::float8 / c.total_recipients END AS progress,
    CASE WHEN c.sent > 0 THEN c.delivered::float8 / c.sent END AS delivery_rate,
    c.started_at, c.completed_at
"""

PROGRESS_OVERRIDES = [
    unit_override(
        "progress",
        "percentunit",
        **{"custom.cellOptions": {"type": "gauge", "mode": "basic"}, "max": 1},
    ),
    unit_override("delivery_rate", "percentunit"),
    unit_override("started_at", "dateTimeAsIso"),
    unit_override("completed_at", "dateTimeAsIso"),
    unit_override("total", "short"),
]


def campaign_progress_table() -> Panel:
    query = f"""
        SELECT {PROGRESS_COLUMNS}
        FROM campaigns c
        WHERE c.status IN ('scheduled', 'sending', 'paused')
           OR $__timeFilter(c.completed_at)
        ORDER BY c.status = 'sending' DESC, c.started_at DESC NULLS LAST
        LIMIT 100
    """
    return table(
        "Campaign progress (exact, PostgreSQL)",
        sql(query),
        PROGRESS_OVERRIDES,
        "Campaigns not yet finished, and those finished in the time range. Counters are "
        "the status consumer's exact folds; progress = final recipients / total.",
    )


def var_datasource(name: str, plugin: str, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "datasource",
        "query": plugin,
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
    }


def var_namespace() -> dict[str, Any]:
    return {
        "name": "namespace",
        "label": "Namespace",
        "type": "query",
        "datasource": PROM,
        "definition": "label_values(herald_build_info, namespace)",
        "query": {"query": "label_values(herald_build_info, namespace)", "refId": "namespace"},
        "includeAll": True,
        "allValue": ".*",
        "multi": True,
        "current": {"text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
    }


def var_campaign() -> dict[str, Any]:
    query = (
        "SELECT id FROM campaigns WHERE status IN ('scheduled', 'sending', 'paused') "
        "OR $__timeFilter(created_at) ORDER BY created_at DESC LIMIT 200"
    )
    return {
        "name": "campaign",
        "label": "Campaign",
        "type": "query",
        "datasource": PG,
        "definition": query,
        "query": query,
        "includeAll": False,
        "multi": False,
        "current": {},
        "refresh": 2,
        "hide": 0,
    }


def layout(sections: list[tuple[str, list[tuple[Panel, int, int]]]]) -> list[Panel]:
    """Rows of panels, left to right; (panel, width, height) on a 24-column grid."""
    panels: list[Panel] = []
    ids = iter(range(1, 1000))
    y = 0
    for title, items in sections:
        panels.append(
            {
                "type": "row",
                "title": title,
                "id": next(ids),
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        x, row_h = 0, 0
        for panel, w, h in items:
            if x + w > 24:
                x, y, row_h = 0, y + row_h, 0
            panels.append({"id": next(ids), **panel, "gridPos": {"h": h, "w": w, "x": x, "y": y}})
            x += w
            row_h = max(row_h, h)
        y += row_h
    return panels


def dashboard(
    uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list[Panel]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["herald"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["herald"],
                "asDropdown": True,
                "title": "Herald",
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": variables},
        "panels": panels,
    }


def overview() -> dict[str, Any]:
    sends = "herald_sends_total"
    errors = 'outcome!="accepted"'
    rejected = rate("herald_callbacks_total", 'outcome="rejected"')
    http = "herald_http_requests_total"
    duration = "herald_http_request_duration_seconds"
    callbacks = 'route=~"/callbacks/.*"'
    not_callbacks = 'route!~"/callbacks/.*"'
    server_error = 'code=~"5.."'
    client_error = 'code=~"4.."'
    campaigns = [
        (
            stat(
                f"Campaigns {status}",
                "none",
                prom(f"max({campaign_status(status)})", ""),
                "From PostgreSQL, refreshed by the scheduler every 15 s.",
            ),
            4,
            4,
        )
        for status in ("scheduled", "sending", "paused")
    ] + [
        (
            stat(
                "Campaigns completed in range",
                "none",
                prom(f"sum(increase({m('herald_campaigns_completed_total')}[$__range]))", ""),
            ),
            6,
            4,
        ),
        (
            stat(
                "Versions running",
                "none",
                prom(f"count by (version) ({m('herald_build_info')})", "{{version}}"),
                "Pods per herald version: two values mean a rollout is under way.",
            ),
            6,
            4,
        ),
        (campaign_progress_table(), 24, 10),
    ]
    scheduler = [
        (
            timeseries(
                "Rate: campaigns and batches expanded",
                "ops",
                prom(f"sum({rate('herald_expansion_duration_seconds_count')})", "campaigns"),
                prom(f"sum({rate('herald_batches_expanded_total')})", "batches"),
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Errors: campaign events dead-lettered",
                "cps",
                prom(f"sum by (reason) ({dead_letters('campaign-events')})", "{{reason}}"),
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Duration: audience expansion",
                "s",
                prom(quantile(0.5, "herald_expansion_duration_seconds"), "p50"),
                prom(quantile(0.99, "herald_expansion_duration_seconds"), "p99"),
            ),
            8,
            8,
        ),
    ]
    worker = [
        (
            timeseries(
                "Rate: sends by channel and provider",
                "reqps",
                prom(f"sum by (channel, provider) ({rate(sends)})", "{{channel}} {{provider}}"),
                stack=True,
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Errors: share of sends not accepted, by outcome",
                "percentunit",
                prom(
                    f"sum by (outcome) ({rate(sends, errors)}) / ignoring (outcome) group_left "
                    f"sum({rate(sends)})",
                    "{{outcome}}",
                ),
                description="retryable and rate_limited sends are tried again; the rest fail "
                "or fall back.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Duration: provider answer",
                "s",
                prom(quantile(0.5, "herald_send_duration_seconds", "provider"), "p50 {{provider}}"),
                prom(
                    quantile(0.99, "herald_send_duration_seconds", "provider"), "p99 {{provider}}"
                ),
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Batches dispatched",
                "ops",
                prom(f"sum({rate('herald_batches_dispatched_total')})", "batches"),
            ),
            8,
            7,
        ),
        (
            timeseries(
                "Recipients skipped, by reason",
                "cps",
                prom(f"sum by (reason) ({rate('herald_recipients_skipped_total')})", "{{reason}}"),
            ),
            8,
            7,
        ),
        (
            timeseries(
                "Ambiguous sends repeated",
                "cps",
                prom(f"sum by (channel) ({rate('herald_ambiguous_resends_total')})", "{{channel}}"),
            ),
            8,
            7,
        ),
    ]
    ingress = [
        (
            timeseries(
                "Rate: callbacks received, by outcome",
                "reqps",
                prom(
                    f"sum by (provider, outcome) ({rate('herald_callbacks_total')})",
                    "{{provider}} {{outcome}}",
                ),
                stack=True,
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Errors: callbacks rejected or failed",
                "percentunit",
                prom(
                    f"sum by (provider) ({rejected}) / sum by (provider) "
                    f"({rate('herald_callbacks_total')})",
                    "rejected {{provider}}",
                ),
                prom(
                    f"sum({rate(http, callbacks + ', ' + server_error)}) / "
                    f"sum({rate(http, callbacks)})",
                    "HTTP 5xx",
                ),
                description="Rejected: bad signature or body (after a deploy, check "
                "HERALD_PUBLIC_INGRESS_URL and the auth token). 5xx: Kafka did not take the "
                "event; the provider retries.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Duration: callback requests",
                "s",
                prom(quantile(0.5, duration, "route", callbacks), "p50 {{route}}"),
                prom(quantile(0.99, duration, "route", callbacks), "p99 {{route}}"),
            ),
            8,
            8,
        ),
    ]
    api = [
        (
            timeseries(
                "Rate: API requests by route",
                "reqps",
                prom(f"sum by (route) ({rate(http, not_callbacks)})", "{{route}}"),
                stack=True,
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Errors: API 5xx and 4xx share",
                "percentunit",
                prom(
                    f"sum({rate(http, not_callbacks + ', ' + server_error)}) / "
                    f"sum({rate(http, not_callbacks)})",
                    "5xx",
                ),
                prom(
                    f"sum({rate(http, not_callbacks + ', ' + client_error)}) / "
                    f"sum({rate(http, not_callbacks)})",
                    "4xx",
                ),
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Duration: API requests",
                "s",
                prom(quantile(0.5, duration, "route", not_callbacks), "p50 {{route}}"),
                prom(quantile(0.99, duration, "route", not_callbacks), "p99 {{route}}"),
            ),
            8,
            8,
        ),
    ]
    status = [
        (
            timeseries(
                "Rate: events folded",
                "ops",
                prom(
                    f"sum by (outcome) ({rate('herald_status_events_folded_total')})",
                    "{{outcome}}",
                ),
                prom(
                    f"sum by (status) ({rate('herald_callbacks_folded_total')})",
                    "callback {{status}}",
                ),
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Errors: status events dead-lettered",
                "cps",
                prom(f"sum by (reason) ({dead_letters('status-events')})", "{{reason}}"),
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Duration: fold transaction",
                "s",
                prom(quantile(0.5, "herald_fold_duration_seconds"), "p50"),
                prom(quantile(0.99, "herald_fold_duration_seconds"), "p99"),
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Callback latency: send → delivered",
                "s",
                prom(quantile(0.5, "herald_callback_delay_seconds", "channel"), "p50 {{channel}}"),
                prom(quantile(0.9, "herald_callback_delay_seconds", "channel"), "p90 {{channel}}"),
                description="From the attempt row to the delivered (or read) callback folded.",
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Campaigns completed",
                "short",
                prom(f"sum(increase({m('herald_campaigns_completed_total')}[{RI}]))", "completed"),
            ),
            12,
            8,
        ),
    ]
    fallbacks = [
        (
            timeseries(
                "Fallbacks by path",
                "cps",
                prom(
                    f"sum by (from_channel, to_channel) ({rate('herald_fallbacks_total')})",
                    "{{from_channel}} → {{to_channel}}",
                ),
                stack=True,
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Fallbacks by cause",
                "cps",
                prom(
                    f"sum by (from_channel, reason) ({rate('herald_fallbacks_total')})",
                    "{{from_channel}} {{reason}}",
                ),
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Fallback rate by channel (fallbacks / sends)",
                "percentunit",
                prom(
                    f"sum by (from_channel) ({rate('herald_fallbacks_total')}) / on (from_channel) "
                    f'label_replace(sum by (channel) ({rate(sends)}), "from_channel", "$1", '
                    f'"channel", "(.*)")',
                    "{{from_channel}}",
                ),
            ),
            8,
            8,
        ),
    ]
    # What the alerts (deploy/components/prometheus-operator) watch that no panel above shows.
    stuck = [
        (
            timeseries(
                "Outbox: oldest row waiting",
                "s",
                prom(f"max({m('herald_outbox_oldest_pending_age_seconds')})", "oldest"),
                description="campaign.confirmed rows the relay has not put on Kafka yet; "
                "near 0 when healthy. HeraldOutboxBacklog fires past 5 min.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Campaigns stalled or paused by their error budget",
                "short",
                prom(f"max({m('herald_campaigns_stalled')})", "stalled"),
                prom(
                    f"sum(increase({m('herald_error_budget_pauses_total')}[{RI}]))",
                    "paused by error budget",
                ),
                description="Stalled: sending, and no counter moved for the campaign's fallback "
                "window + batch delay + 10 min. See docs/alerts.md.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Callback signatures refused",
                "cps",
                prom(
                    f"sum by (provider, reason) "
                    f"({rate('herald_callback_signatures_refused_total')})",
                    "{{provider}} {{reason}}",
                ),
                description="missing or mismatch: forged or unsigned posts, or a secret that no "
                "longer matches the provider's; unconfigured: herald has no secret for it.",
            ),
            8,
            8,
        ),
    ]
    pods = "on (instance, job) group_left ()"
    saturation = [
        (
            timeseries(
                "Consumer lag by topic",
                "short",
                prom(f"sum by (topic) ({m('herald_consumer_lag_records')})", "{{topic}}"),
                description="Records behind; KEDA scales workers and status consumers on it.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Sends in flight",
                "short",
                prom(f"sum by (instance) ({m('herald_sends_in_flight')})", "{{instance}}"),
                description="Per pod, capped by HERALD_WORKER_CONCURRENCY.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Rate-limiter wait",
                "s",
                prom(quantile(0.5, "herald_rate_limit_wait_seconds", "channel"), "p50 {{channel}}"),
                prom(
                    quantile(0.99, "herald_rate_limit_wait_seconds", "channel"), "p99 {{channel}}"
                ),
                description="Long waits mean accounts are sending at their limit, not a fault.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Event loop lag p99",
                "s",
                prom(
                    "histogram_quantile(0.99, sum by (le, instance) "
                    f"({rate('herald_event_loop_lag_seconds_bucket')}))",
                    "{{instance}}",
                ),
                description="Liveness fails after 10 s without a heartbeat.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "CPU per pod",
                "percentunit",
                prom(
                    f"sum by (instance) (rate(process_cpu_seconds_total[{RI}]) * {pods} "
                    f"{m('herald_build_info')})",
                    "{{instance}}",
                ),
                description="One asyncio process per pod: 100% is one core, the ceiling.",
            ),
            8,
            8,
        ),
        (
            timeseries(
                "Resident memory per pod",
                "bytes",
                prom(
                    f"sum by (instance) (process_resident_memory_bytes * {pods} "
                    f"{m('herald_build_info')})",
                    "{{instance}}",
                ),
            ),
            8,
            8,
        ),
        (breaker_timeline(), 12, 8),
        (
            timeseries(
                "Dead letters by topic and reason",
                "cps",
                prom(
                    f"sum by (topic, reason) ({rate('herald_dead_letters_total')})",
                    "{{topic}} {{reason}}",
                ),
            ),
            12,
            8,
        ),
    ]
    return dashboard(
        "herald-overview",
        "Herald / Overview",
        "Per stage rate, errors and duration; saturation; fallbacks; exact campaign progress.",
        [
            var_datasource("datasource", "prometheus", "Prometheus"),
            var_datasource("pg_datasource", "grafana-postgresql-datasource", "PostgreSQL"),
            var_namespace(),
        ],
        layout(
            [
                ("Campaigns", campaigns),
                ("Intake: scheduler (RED)", scheduler),
                ("Send: workers (RED)", worker),
                ("Callbacks: ingress (RED)", ingress),
                ("Control-plane API (RED)", api),
                ("Status fold (RED)", status),
                ("Fallbacks", fallbacks),
                ("Stuck work", stuck),
                ("Saturation (USE)", saturation),
            ]
        ),
    )


def campaigns() -> dict[str, Any]:
    one = "campaign_id = ${campaign:sqlstring}"
    finished = f"""
        SELECT {PROGRESS_COLUMNS}
        FROM campaigns c
        WHERE $__timeFilter(c.created_at)
        ORDER BY c.created_at DESC
        LIMIT 500
    """
    counters = [
        (
            stat(
                title,
                unit,
                sql(f"SELECT {expr} AS value FROM campaigns WHERE id = ${{campaign:sqlstring}}"),
            ),
            4,
            4,
        )
        for title, unit, expr in (
            ("Recipients", "short", "total_recipients"),
            ("Sent", "short", "sent"),
            ("Delivered", "short", "delivered"),
            ("Failed", "short", "failed"),
            ("Skipped", "short", "skipped"),
            (
                "Progress",
                "percentunit",
                "CASE WHEN total_recipients > 0 THEN final::float8 / total_recipients END",
            ),
        )
    ]
    channel_query = f"""
        SELECT channel, sent, delivered, read, failed
        FROM campaign_channel_counters WHERE {one} ORDER BY channel
    """
    failures_query = f"""
        SELECT coalesce(error_code, 'unknown') AS error_code, channel, count(*) AS recipients
        FROM recipients WHERE {one} AND status = 'failed'
        GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20
    """
    timeline_query = f"""
        SELECT $__timeGroupAlias(updated_at, '1m'),
               count(*) FILTER (WHERE status IN ('delivered', 'read')) AS delivered,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'skipped') AS skipped
        FROM recipients WHERE {one} AND $__timeFilter(updated_at)
        GROUP BY 1 ORDER BY 1
    """
    detail = [
        *counters,
        (
            table(
                "Per channel",
                sql(channel_query),
                [unit_override(c, "short") for c in ("sent", "delivered", "read", "failed")],
                "After fallback, one recipient can appear on several channels.",
            ),
            12,
            8,
        ),
        (
            table(
                "Failure reasons",
                sql(failures_query),
                [unit_override("recipients", "short")],
            ),
            12,
            8,
        ),
        (
            timeseries(
                "Final states over time (by last change, per minute)",
                "short",
                sql(timeline_query, fmt="time_series"),
                stack=True,
            ),
            24,
            8,
        ),
    ]
    live = [
        (
            timeseries(
                "Sends by channel (all campaigns)",
                "reqps",
                prom(f"sum by (channel) ({rate('herald_sends_total')})", "{{channel}}"),
            ),
            12,
            7,
        ),
        (
            timeseries(
                "Callback latency p50 (all campaigns)",
                "s",
                prom(quantile(0.5, "herald_callback_delay_seconds", "channel"), "{{channel}}"),
            ),
            12,
            7,
        ),
    ]
    return dashboard(
        "herald-campaigns",
        "Herald / Campaigns",
        "Exact per-campaign figures from PostgreSQL (a read-only role), beside live rates.",
        [
            var_datasource("datasource", "prometheus", "Prometheus"),
            var_datasource("pg_datasource", "grafana-postgresql-datasource", "PostgreSQL"),
            var_namespace(),
            var_campaign(),
        ],
        layout(
            [
                (
                    "Campaigns in range",
                    [(table("Campaigns", sql(finished), PROGRESS_OVERRIDES), 24, 10)],
                ),
                ("Campaign $campaign", detail),
                ("Live (Prometheus)", live),
            ]
        ),
    )


def build() -> dict[str, dict[str, Any]]:
    """File name → dashboard, as committed under grafana/dashboards/."""
    return {"herald-overview.json": overview(), "herald-campaigns.json": campaigns()}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def files() -> Iterator[tuple[Path, str]]:
    for name, board in build().items():
        yield OUT / name, render(board)


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for path, text in files():
        path.write_text(text)
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
