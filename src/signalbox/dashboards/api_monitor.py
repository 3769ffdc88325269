"""API monitor: what the Node prober sees for each target."""

from __future__ import annotations

from signalbox.dashboards._kit import (
    PROMETHEUS,
    Json,
    dashboard,
    panel,
    prom,
    query_variable,
    stat,
    table,
    thresholds,
    timeseries,
)

UID = "signalbox-api-monitor"
_T = 'target=~"$target"'

_UP_DOWN = [
    {
        "type": "value",
        "options": {
            "0": {"text": "DOWN", "color": "red", "index": 0},
            "1": {"text": "UP", "color": "green", "index": 1},
        },
    }
]


def build() -> Json:
    panels = [
        stat(
            "Probe status now",
            [prom(f"probe_success{{{_T}}}", "{{target}}", instant=True)],
            w=12,
            h=5,
            defaults={"mappings": _UP_DOWN, "thresholds": thresholds((None, "red"), (1, "green"))},
        ),
        stat(
            "Uptime over the range",
            [prom(f"avg_over_time(probe_success{{{_T}}}[$__range])", "{{target}}", instant=True)],
            w=12,
            h=5,
            unit="percentunit",
            defaults={
                "decimals": 2,
                "thresholds": thresholds((None, "red"), (0.99, "orange"), (0.995, "green")),
            },
            description="Share of successful probes per target over the selected time range.",
        ),
        panel(
            "state-timeline",
            "Probe success over time",
            [prom(f"probe_success{{{_T}}}", "{{target}}")],
            w=24,
            h=6,
            defaults={"mappings": _UP_DOWN, "thresholds": thresholds((None, "red"), (1, "green"))},
            options={"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
        ),
        timeseries(
            "Probe latency p95 (click an exemplar for its trace)",
            [
                prom(
                    "histogram_quantile(0.95, sum by (le, target) "
                    f"(rate(probe_duration_seconds_bucket{{{_T}}}[$__rate_interval])))",
                    "p95 {{target}}",
                    exemplar=True,
                )
            ],
            unit="s",
            w=24,
            description=(
                "Exemplar dots mark failed probes: their traces have an error, which the "
                "collector always keeps, so each dot opens its trace in Tempo."
            ),
        ),
        table(
            "Last HTTP status per target",
            [prom(f"probe_http_status{{{_T}}}", instant=True)],
            transformations=[_organize()],
            defaults={
                "thresholds": thresholds(
                    (None, "red"), (200, "green"), (400, "orange"), (500, "red")
                ),
                "custom": {"cellOptions": {"type": "color-text"}},
            },
        ),
        table(
            "Failing targets",
            [prom(f"probe_success{{{_T}}} == 0", instant=True)],
            transformations=[_organize()],
            description="Targets whose last probe failed (empty when everything is up).",
        ),
    ]
    variables = [
        query_variable(
            "target", "Target", PROMETHEUS, "label_values(probe_success, target)", all_value=".+"
        )
    ]
    return dashboard(
        UID,
        "API monitor",
        description="Synthetic probes from the Node monitor: success, uptime, latency, status.",
        tags=["services", "probes"],
        panels=panels,
        variables=variables,
    )


def _organize() -> Json:
    return {
        "id": "organize",
        "options": {
            "excludeByName": {"Time": True, "__name__": True},
            "renameByName": {"Value": "value"},
        },
    }
