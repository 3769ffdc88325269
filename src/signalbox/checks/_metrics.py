"""Which metric names and Loki labels exist: what dashboards and rules may refer to.

Each set says who exposes the names and where that was checked. Service and Prometheus names
are proved by the real-run test (tests/test_dashboards_realrun.py) against the running sample
services and Debian's Prometheus; Loki, Tempo and Grafana cannot run here, so their names come
from their sources (cited) and their panels are exempt from the real-run data check.
"""

from __future__ import annotations

from collections.abc import Iterable


def _histogram(*names: str) -> set[str]:
    """A histogram's base name exposes _bucket, _sum and _count series."""
    return {f"{n}{suffix}" for n in names for suffix in ("_bucket", "_sum", "_count")}


# Both sample services (examples/fastapi-app, examples/api), per the team contract.
SERVICES_COMMON: frozenset[str] = frozenset(
    {
        "http_server_requests_total",
        "app_build_info",
        "telemetry_dropped_total",
        # Default process collectors of prometheus-client (Python) and prom-client (Node).
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        *_histogram("http_server_request_duration_seconds"),
    }
)
# Only the Node API monitor probes targets.
SERVICES_API_ONLY: frozenset[str] = frozenset(
    {"probe_success", "probe_http_status", *_histogram("probe_duration_seconds")}
)

# Series Prometheus adds to every scrape, and the alert series of its rule manager.
# https://prometheus.io/docs/concepts/jobs_instances/#automatically-generated-labels-and-time-series
PROMETHEUS_SYNTHETIC: frozenset[str] = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    }
)
# Prometheus' own /metrics (2.42 here, 3.x in the image; these names exist in both).
PROMETHEUS_SELF: frozenset[str] = frozenset(
    {
        "prometheus_tsdb_head_samples_appended_total",
        "prometheus_tsdb_head_series",
        "prometheus_tsdb_exemplar_exemplars_appended_total",
        "prometheus_tsdb_compactions_failed_total",
        "prometheus_rule_evaluation_failures_total",
        "prometheus_target_scrapes_exceeded_sample_limit_total",
        "prometheus_notifications_alertmanagers_discovered",
        "prometheus_notifications_dropped_total",
        "prometheus_notifications_errors_total",
    }
)
# Exposed only once Prometheus has an Alertmanager to send to (a series per Alertmanager).
PROMETHEUS_SELF_WITH_ALERTMANAGER: frozenset[str] = frozenset(
    {"prometheus_notifications_errors_total"}
)

# Loki 3.x /metrics: pkg/distribution/distributor.go (lines and bytes received),
# pkg/validation/validate.go (discarded samples by reason), dskit request middleware.
LOKI: frozenset[str] = frozenset(
    {
        "loki_distributor_lines_received_total",
        "loki_distributor_bytes_received_total",
        "loki_discarded_samples_total",
        *_histogram("loki_request_duration_seconds"),
    }
)
# Tempo 3.x /metrics: modules/distributor/distributor.go, modules/overrides (discarded spans).
TEMPO: frozenset[str] = frozenset(
    {
        "tempo_distributor_spans_received_total",
        "tempo_distributor_bytes_received_total",
        "tempo_discarded_spans_total",
        *_histogram("tempo_request_duration_seconds"),
    }
)
# Grafana /metrics: pkg/middleware/request_metrics.go.
GRAFANA: frozenset[str] = frozenset(
    {"grafana_build_info", *_histogram("grafana_http_request_duration_seconds")}
)

# The OpenTelemetry Collector's own metrics (otel-collector/config.yaml: service.telemetry,
# counters with their _total suffix), exposed by the real collector built from
# tools/backends/otelcol and scraped in tests/test_dashboards_realrun.py. Exporter send counts
# appear once an exporter has sent (or failed to send) something.
# https://opentelemetry.io/docs/collector/internal-telemetry/#lists-of-internal-metrics
OTEL_COLLECTOR: frozenset[str] = frozenset(
    {
        "otelcol_receiver_accepted_spans_total",
        "otelcol_receiver_refused_spans_total",
        "otelcol_receiver_accepted_log_records_total",
        "otelcol_receiver_refused_log_records_total",
        "otelcol_exporter_sent_spans_total",
        "otelcol_exporter_send_failed_spans_total",
        "otelcol_exporter_sent_log_records_total",
        "otelcol_exporter_send_failed_log_records_total",
        "otelcol_exporter_queue_size",
        "otelcol_exporter_queue_capacity",
        "otelcol_processor_tail_sampling_global_count_traces_sampled_total",
        "otelcol_processor_tail_sampling_count_traces_sampled_total",
        "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total",
        "otelcol_processor_tail_sampling_sampling_traces_on_memory",
        "otelcol_process_memory_rss_bytes",
    }
)

# Metrics that ONLY Tempo's metrics-generator produces, remote-written into Prometheus. No
# service exposes them and no test here can produce them (no Tempo binary), so the real-run
# test exempts every query that reads one of these.
# Span metrics (labels service, span_name, span_kind, status_code):
#   https://grafana.com/docs/tempo/latest/metrics-from-traces/span-metrics/span-metrics-metrics-generator/
# Service graphs (labels client, server, connection_type):
#   https://grafana.com/docs/tempo/latest/metrics-from-traces/service_graphs/
METRICS_GENERATOR: frozenset[str] = frozenset(
    {
        "traces_spanmetrics_calls_total",
        "traces_spanmetrics_size_total",
        *_histogram("traces_spanmetrics_latency"),
        "traces_target_info",
        "traces_service_graph_request_total",
        "traces_service_graph_request_failed_total",
        *_histogram(
            "traces_service_graph_request_server_seconds",
            "traces_service_graph_request_client_seconds",
        ),
        "traces_service_graph_unpaired_spans_total",
        "traces_service_graph_dropped_spans_total",
    }
)

# Components that cannot run on the test machine: queries reading only these are exempt from
# the real-run "returns data" check (their names are still checked here).
NOT_RUNNABLE_HERE: frozenset[str] = LOKI | TEMPO | GRAFANA | METRICS_GENERATOR

KNOWN_METRICS: frozenset[str] = (
    SERVICES_COMMON
    | SERVICES_API_ONLY
    | PROMETHEUS_SYNTHETIC
    | PROMETHEUS_SELF
    | OTEL_COLLECTOR
    | LOKI
    | TEMPO
    | GRAFANA
    | METRICS_GENERATOR
)

# Loki index labels the services produce through OTLP ingestion: service.name -> service_name
# (Loki's default OTLP resource-attribute labels; the services set no other of those
# attributes). https://grafana.com/docs/loki/latest/send-data/otel/
LOKI_INDEX_LABELS: frozenset[str] = frozenset({"service_name"})
# Structured metadata of OTLP log records: trace/span ids and severity from the LogRecord,
# detected_level added by Loki's level detection, plus the services' log attributes.
LOKI_STRUCTURED_METADATA: frozenset[str] = frozenset(
    {
        "trace_id",
        "span_id",
        "severity_text",
        "severity_number",
        "detected_level",
        "flags",
        "scope_name",
    }
)


def unknown(names: Iterable[str], known: Iterable[str]) -> list[str]:
    known_set = set(known)
    return sorted({n for n in names if n not in known_set})
