"""Stack health: is the observability stack itself ingesting, and is anything failing?"""

from __future__ import annotations

from signalbox.dashboards._kit import (
    Json,
    dashboard,
    prom,
    stat,
    table,
    thresholds,
    timeseries,
)

UID = "signalbox-stack-health"
_RI = "[$__rate_interval]"


def _per_exporter_or_zero(failed: str, signal: str) -> str:
    """Failures per exporter, 0 for an exporter that sends without failing.

    The collector creates a failure counter at the first failure: without the fallback the
    panel would show "No data" exactly when everything is fine.
    """
    return (
        f"sum by (exporter) (rate({failed}{_RI}))"
        f" or 0 * sum by (exporter) (rate(otelcol_exporter_sent_{signal}_total{_RI}))"
    )


def build() -> Json:
    panels = [
        stat(
            "Scrape targets down",
            [prom("count(up == 0) or vector(0)", "down")],
            defaults={"thresholds": thresholds((None, "green"), (1, "red"))},
            w=6,
        ),
        stat(
            "Alertmanagers Prometheus can reach",
            [prom("prometheus_notifications_alertmanagers_discovered", "alertmanagers")],
            defaults={"thresholds": thresholds((None, "red"), (1, "green"))},
            w=6,
            description="0 means alerts fire into the void: check the alertmanager service.",
        ),
        stat(
            "Services dropping telemetry",
            [
                prom(
                    f"count(sum by (job) (rate(telemetry_dropped_total{_RI})) > 0) or vector(0)",
                    "services",
                )
            ],
            defaults={"thresholds": thresholds((None, "green"), (1, "red"))},
            w=6,
        ),
        stat(
            "Firing alerts",
            [prom('count(ALERTS{alertstate="firing"}) or vector(0)', "firing")],
            defaults={"thresholds": thresholds((None, "green"), (1, "red"))},
            w=6,
        ),
        table(
            "Scrape targets",
            [prom("up", instant=True)],
            w=12,
            h=8,
            defaults={
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "0": {"text": "DOWN", "color": "red", "index": 0},
                            "1": {"text": "UP", "color": "green", "index": 1},
                        },
                    }
                ],
                "custom": {"cellOptions": {"type": "color-background"}},
                "thresholds": thresholds((None, "red"), (1, "green")),
            },
            transformations=[
                {
                    "id": "organize",
                    "options": {"excludeByName": {"Time": True, "__name__": True}},
                }
            ],
        ),
        timeseries(
            "Scrape duration by job",
            [prom("max by (job) (scrape_duration_seconds)", "{{job}}")],
            unit="s",
        ),
        timeseries(
            "Prometheus ingestion",
            [
                prom(f"rate(prometheus_tsdb_head_samples_appended_total{_RI})", "samples/s"),
                prom(
                    f"rate(prometheus_tsdb_exemplar_exemplars_appended_total{_RI})",
                    "exemplars/s",
                    ref="B",
                ),
            ],
            unit="short",
            w=8,
        ),
        timeseries(
            "Prometheus failures",
            [
                prom(f"rate(prometheus_rule_evaluation_failures_total{_RI})", "rule evaluation"),
                prom(
                    f"rate(prometheus_notifications_dropped_total{_RI})",
                    "alert notifications",
                    ref="B",
                ),
                prom(
                    f"rate(prometheus_tsdb_compactions_failed_total{_RI})", "compactions", ref="C"
                ),
                prom(
                    f"rate(prometheus_target_scrapes_exceeded_sample_limit_total{_RI})",
                    "scrapes over sample limit",
                    ref="D",
                ),
            ],
            unit="short",
            w=8,
        ),
        timeseries(
            "Prometheus head series",
            [prom("prometheus_tsdb_head_series", "series")],
            unit="short",
            w=8,
        ),
        timeseries(
            "Loki ingestion",
            [
                prom(f"sum(rate(loki_distributor_lines_received_total{_RI}))", "lines/s"),
                prom(f"sum(rate(loki_distributor_bytes_received_total{_RI}))", "bytes/s", ref="B"),
            ],
            unit="short",
            w=12,
        ),
        timeseries(
            "Loki failures",
            [
                prom(
                    f"sum by (reason) (rate(loki_discarded_samples_total{_RI}))",
                    "discarded: {{reason}}",
                ),
                prom(
                    'sum by (route) (rate(loki_request_duration_seconds_count{status_code=~"5.."}'
                    f"{_RI}))",
                    "5xx {{route}}",
                    ref="B",
                ),
            ],
            unit="short",
            w=12,
        ),
        timeseries(
            "Tempo ingestion",
            [
                prom(f"sum(rate(tempo_distributor_spans_received_total{_RI}))", "spans/s"),
                prom(f"sum(rate(tempo_distributor_bytes_received_total{_RI}))", "bytes/s", ref="B"),
            ],
            unit="short",
            w=12,
        ),
        timeseries(
            "Tempo failures",
            [
                prom(
                    f"sum by (reason) (rate(tempo_discarded_spans_total{_RI}))",
                    "discarded: {{reason}}",
                ),
                prom(
                    'sum by (route) (rate(tempo_request_duration_seconds_count{status_code=~"5.."}'
                    f"{_RI}))",
                    "5xx {{route}}",
                    ref="B",
                ),
            ],
            unit="short",
            w=12,
        ),
        timeseries(
            "Grafana HTTP errors",
            [
                prom(
                    "sum by (handler) (rate(grafana_http_request_duration_seconds_count"
                    f'{{status_code=~"5.."}}{_RI}))',
                    "5xx {{handler}}",
                )
            ],
            unit="short",
            w=12,
        ),
        timeseries(
            "Collector: spans",
            [
                prom(
                    f"sum(rate(otelcol_receiver_accepted_spans_total{_RI}))",
                    "accepted",
                ),
                prom(
                    f"sum(rate(otelcol_receiver_refused_spans_total{_RI}))",
                    "refused (memory limit)",
                    ref="B",
                ),
                prom(
                    f"sum by (exporter) (rate(otelcol_exporter_sent_spans_total{_RI}))",
                    "sent {{exporter}}",
                    ref="C",
                ),
                prom(
                    _per_exporter_or_zero("otelcol_exporter_send_failed_spans_total", "spans"),
                    "failed {{exporter}}",
                    ref="D",
                ),
            ],
            unit="short",
            w=12,
            description=(
                "Spans the OpenTelemetry Collector received from the services and sent on per "
                "exporter. Sent is below accepted by design: tail sampling keeps every error "
                "and slow trace and a share of the rest (next panel)."
            ),
        ),
        timeseries(
            "Collector: log records",
            [
                prom(
                    f"sum(rate(otelcol_receiver_accepted_log_records_total{_RI}))",
                    "accepted",
                ),
                prom(
                    f"sum(rate(otelcol_receiver_refused_log_records_total{_RI}))",
                    "refused (memory limit)",
                    ref="B",
                ),
                prom(
                    f"sum by (exporter) (rate(otelcol_exporter_sent_log_records_total{_RI}))",
                    "sent {{exporter}}",
                    ref="C",
                ),
                prom(
                    _per_exporter_or_zero(
                        "otelcol_exporter_send_failed_log_records_total", "log_records"
                    ),
                    "failed {{exporter}}",
                    ref="D",
                ),
            ],
            unit="short",
            w=12,
            description="Logs are never sampled: every accepted record should be sent to Loki.",
        ),
        timeseries(
            "Collector: tail-sampling decisions",
            [
                prom(
                    "sum by (sampled) (rate("
                    f"otelcol_processor_tail_sampling_global_count_traces_sampled_total{_RI}))",
                    "sampled={{sampled}}",
                ),
                prom(
                    "sum(rate(otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total"
                    f"{_RI}))",
                    "dropped before a decision (num_traces too small)",
                    ref="B",
                ),
            ],
            unit="short",
            w=12,
            description=(
                "Traces kept (sampled=true) and sampled out (sampled=false) per second, one "
                "decision per whole trace. Errors, exceptions and slow traces are always kept."
            ),
        ),
        timeseries(
            "Collector: export queues",
            [
                prom("sum by (exporter) (otelcol_exporter_queue_size)", "{{exporter}}"),
                prom(
                    "sum by (exporter) (otelcol_exporter_queue_capacity)",
                    "capacity {{exporter}}",
                    ref="B",
                ),
            ],
            unit="short",
            w=12,
            description=(
                "Batches waiting for a backend. A queue at capacity drops new batches "
                "(counted as failed above)."
            ),
        ),
        timeseries(
            "Telemetry dropped by the services",
            [
                prom(
                    f"sum by (job, signal) (rate(telemetry_dropped_total{_RI}))",
                    "{{job}} {{signal}}",
                )
            ],
            unit="short",
            w=12,
        ),
    ]
    return dashboard(
        UID,
        "Stack health",
        description=(
            "Prometheus, Loki, Tempo, Grafana and the OpenTelemetry Collector: ingestion, "
            "sampling, failures, scrape health."
        ),
        tags=["platform"],
        panels=panels,
    )
