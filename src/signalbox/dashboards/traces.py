"""Traces: error and slow traces (TraceQL), the service graph, and span-metric RED.

The RED and service-graph panels read metrics that only Tempo's metrics-generator writes
(remote write into Prometheus): see METRICS_GENERATOR in signalbox.checks._metrics.
"""

from __future__ import annotations

from signalbox.dashboards._kit import (
    PROMETHEUS,
    Json,
    dashboard,
    panel,
    prom,
    query_variable,
    service_map,
    table,
    timeseries,
    trace_id_override,
    traceql,
)

UID = "signalbox-traces"
_SPAN = 'service=~"$service", span_kind="SPAN_KIND_SERVER"'
_CALLS = "traces_spanmetrics_calls_total"


def build() -> Json:
    panels = [
        table(
            "Recent error traces",
            [traceql('{ status = error && resource.service.name =~ "$service" }', limit=50)],
            overrides=[trace_id_override("traceID")],
            description="Traces with at least one span in error status.",
        ),
        table(
            "Slowest traces (server spans over 500 ms)",
            [
                traceql(
                    '{ kind = server && resource.service.name =~ "$service" && duration > 500ms }',
                    limit=50,
                )
            ],
            sort_by="Duration",
            overrides=[trace_id_override("traceID")],
        ),
        panel(
            "nodeGraph",
            "Service graph",
            [service_map()],
            w=24,
            h=12,
            description="Built by Tempo from traces_service_graph_* metrics in Prometheus.",
        ),
        timeseries(
            "Span rate (server spans)",
            [
                prom(
                    f"sum by (service) (rate({_CALLS}{{{_SPAN}}}[$__rate_interval]))", "{{service}}"
                )
            ],
            unit="reqps",
            w=8,
        ),
        timeseries(
            "Span error ratio",
            [
                prom(
                    f'sum by (service) (rate({_CALLS}{{{_SPAN}, status_code="STATUS_CODE_ERROR"}}'
                    f"[$__rate_interval])) / sum by (service) (rate({_CALLS}{{{_SPAN}}}"
                    "[$__rate_interval]))",
                    "{{service}}",
                )
            ],
            unit="percentunit",
            w=8,
        ),
        timeseries(
            "Span duration p95",
            [
                prom(
                    "histogram_quantile(0.95, sum by (le, service) "
                    f"(rate(traces_spanmetrics_latency_bucket{{{_SPAN}}}[$__rate_interval])))",
                    "{{service}}",
                    exemplar=True,
                )
            ],
            unit="s",
            w=8,
        ),
        timeseries(
            "Calls between services",
            [
                prom(
                    "sum by (client, server) "
                    "(rate(traces_service_graph_request_total[$__rate_interval]))",
                    "{{client}} → {{server}}",
                ),
                prom(
                    "sum by (client, server) "
                    "(rate(traces_service_graph_request_failed_total[$__rate_interval]))",
                    "failed {{client}} → {{server}}",
                    ref="B",
                ),
            ],
            unit="reqps",
            w=24,
        ),
    ]
    variables = [
        query_variable(
            "service",
            "Service",
            PROMETHEUS,
            "label_values(http_server_requests_total, job)",
            all_value=".+",
        )
    ]
    return dashboard(
        UID,
        "Traces",
        description="Error and slow traces, the service graph and RED from Tempo's span metrics.",
        tags=["traces"],
        panels=panels,
        variables=variables,
    )
