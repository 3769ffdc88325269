"""Service overview: RED per route with exemplars, process health, builds and telemetry drops."""

from __future__ import annotations

from signalbox.dashboards._kit import (
    PROMETHEUS,
    Json,
    dashboard,
    prom,
    query_variable,
    stat,
    table,
    thresholds,
    timeseries,
)

UID = "signalbox-service-overview"

_SVC = 'job=~"$service"'
_SEL = 'job=~"$service", route=~"$route"'
_REQ = "http_server_requests_total"
_DUR = "http_server_request_duration_seconds_bucket"


def _quantile(q: str, ref: str) -> Json:
    return prom(
        f"histogram_quantile({q}, sum by (le, job, route) "
        f"(rate({_DUR}{{{_SEL}}}[$__rate_interval])))",
        f"p{q[2:]} {{{{job}}}} {{{{route}}}}",
        ref=ref,
        exemplar=True,
    )


def build() -> Json:
    error_ratio = (
        f'(sum by (job, route) (rate({_REQ}{{{_SEL}, status_class="5xx"}}[$__rate_interval]))'
        f" or sum by (job, route) (rate({_REQ}{{{_SEL}}}[$__rate_interval])) * 0)"
        f" / sum by (job, route) (rate({_REQ}{{{_SEL}}}[$__rate_interval]))"
    )
    # A deploy is a build_info series that did not exist a few minutes earlier.
    deploys: Json = {
        "name": "Deploys",
        "datasource": PROMETHEUS,
        "enable": True,
        "hide": False,
        "iconColor": "purple",
        "expr": (
            f"count by (job, version) (app_build_info{{{_SVC}}}) unless "
            f"count by (job, version) (app_build_info{{{_SVC}}} offset 5m)"
        ),
        "step": "1m",
        "titleFormat": "Deploy {{job}} {{version}}",
        "tagKeys": "job,version",
        "textFormat": "",
        "useValueForTime": False,
    }
    panels = [
        stat(
            "Request rate",
            [prom(f"sum(rate({_REQ}{{{_SEL}}}[$__rate_interval]))", "requests/s")],
            unit="reqps",
        ),
        stat(
            "Error ratio (5xx)",
            [
                prom(
                    f'(sum(rate({_REQ}{{{_SEL}, status_class="5xx"}}[$__rate_interval]))'
                    f" or vector(0)) / sum(rate({_REQ}{{{_SEL}}}[$__rate_interval]))",
                    "5xx ratio",
                )
            ],
            unit="percentunit",
            defaults={"thresholds": thresholds((None, "green"), (0.005, "orange"), (0.05, "red"))},
            description="Share of requests answered with a 5xx. The SLO allows 0.5%.",
        ),
        stat(
            "p95 latency",
            [
                prom(
                    "histogram_quantile(0.95, sum by (le) "
                    f"(rate({_DUR}{{{_SEL}}}[$__rate_interval])))",
                    "p95",
                )
            ],
            unit="s",
            defaults={"thresholds": thresholds((None, "green"), (1, "orange"), (3, "red"))},
        ),
        stat(
            "Running build",
            [prom(f"app_build_info{{{_SVC}}}", "{{job}} {{version}} ({{commit}})", instant=True)],
            fields="/^version$/",
            description="Version label of app_build_info; deploys are annotated on every graph.",
        ),
        timeseries(
            "Request rate by route",
            [
                prom(
                    f"sum by (job, route) (rate({_REQ}{{{_SEL}}}[$__rate_interval]))",
                    "{{job}} {{route}}",
                )
            ],
            unit="reqps",
        ),
        timeseries(
            "Error ratio by route",
            [prom(error_ratio, "{{job}} {{route}}")],
            unit="percentunit",
            description="5xx / all requests per route; routes without errors show 0.",
        ),
        timeseries(
            "Latency p50 / p95 / p99 by route (click an exemplar for its trace)",
            [_quantile("0.50", "A"), _quantile("0.95", "B"), _quantile("0.99", "C")],
            unit="s",
            w=24,
            h=9,
            description=(
                "Exemplar dots mark failed (5xx) requests and carry their trace id: the "
                "collector's tail sampling keeps every failed trace, so each dot opens a trace "
                "in Tempo and the Error investigation dashboard. Successful requests get no dot "
                "(only a share of their traces is kept)."
            ),
        ),
        timeseries(
            "Responses by status class",
            [
                prom(
                    f"sum by (status_class) (rate({_REQ}{{{_SEL}}}[$__rate_interval]))",
                    "{{status_class}}",
                )
            ],
            unit="reqps",
            stack=True,
        ),
        timeseries(
            "Telemetry dropped per signal",
            [
                prom(
                    "sum by (job, signal) "
                    f"(rate(telemetry_dropped_total{{{_SVC}}}[$__rate_interval]))",
                    "{{job}} {{signal}}",
                )
            ],
            unit="short",
            description=(
                "Spans, logs, errors or metrics a service dropped because a backend was slow or "
                "down (bounded queues). Anything above zero means gaps in Tempo/Loki/Sentry."
            ),
        ),
        timeseries(
            "Process CPU",
            [
                prom(
                    f"rate(process_cpu_seconds_total{{{_SVC}}}[$__rate_interval])",
                    "{{job}} {{instance}}",
                )
            ],
            unit="short",
            description="CPU seconds per second (1 = one full core).",
        ),
        timeseries(
            "Process resident memory",
            [prom(f"process_resident_memory_bytes{{{_SVC}}}", "{{job}} {{instance}}")],
            unit="bytes",
        ),
        table(
            "Builds running",
            [prom(f"app_build_info{{{_SVC}}}", instant=True)],
            w=24,
            h=5,
            transformations=[
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "Value": True, "__name__": True},
                        "indexByName": {"job": 0, "instance": 1, "version": 2, "commit": 3},
                    },
                }
            ],
        ),
    ]
    variables = [
        query_variable(
            "service", "Service", PROMETHEUS, f"label_values({_REQ}, job)", all_value=".+"
        ),
        query_variable(
            "route", "Route", PROMETHEUS, f"label_values({_REQ}{{{_SVC}}}, route)", all_value=".+"
        ),
    ]
    return dashboard(
        UID,
        "Service overview",
        description="Requests, errors and latency per service and route, with exemplars to traces.",
        tags=["services", "red"],
        panels=panels,
        variables=variables,
        annotations=[deploys],
    )
