"""Error investigation: everything about one trace id on one page.

Every trace id shown elsewhere (tables, log lines, exemplars) links here with ?var-trace_id=.
"""

from __future__ import annotations

from signalbox.dashboards._kit import (
    INVESTIGATION_UID,
    Json,
    dashboard,
    loki,
    panel,
    prom,
    sentry_events,
    table,
    text,
    textbox_variable,
    timeseries,
    trace_id_override,
    traceql,
)

_HELP = """
Paste a **trace id** (32 hex characters) in the box above, or click one anywhere in Signalbox:
exemplar dots on latency graphs, `trace_id` in log lines and tables, the *trace* column of
Sentry events. This page then shows the Sentry events of that request, its logs from every
service, the trace itself and the request metrics around that time.
"""


def build() -> Json:
    panels = [
        text("How to use", _HELP, h=3),
        table(
            "Sentry events for this trace",
            [sentry_events("trace:$trace_id", projectIds=[], environments=[])],
            w=24,
            h=6,
            overrides=[trace_id_override("trace")],
            description="Errors Sentry captured in this request (any project). ID opens Sentry.",
        ),
        panel(
            "logs",
            "Logs of this trace (all services)",
            [loki('{service_name=~".+"} | trace_id="$trace_id" | trace_id!=""')],
            w=24,
            h=10,
            options={
                "showTime": True,
                "wrapLogMessage": True,
                "enableLogDetails": True,
                "sortOrder": "Ascending",
                "dedupStrategy": "none",
            },
        ),
        panel(
            "traces",
            "Trace",
            [traceql("$trace_id", limit=1)],
            w=24,
            h=14,
        ),
        timeseries(
            "Requests around this time",
            [
                prom(
                    "sum by (job) (rate(http_server_requests_total[$__rate_interval]))",
                    "{{job}}",
                    exemplar=True,
                )
            ],
            unit="reqps",
        ),
        timeseries(
            "5xx ratio around this time",
            [
                prom(
                    '(sum by (job) (rate(http_server_requests_total{status_class="5xx"}'
                    "[$__rate_interval])) or sum by (job) "
                    "(rate(http_server_requests_total[$__rate_interval])) * 0) / sum by (job) "
                    "(rate(http_server_requests_total[$__rate_interval]))",
                    "{{job}}",
                )
            ],
            unit="percentunit",
        ),
    ]
    return dashboard(
        INVESTIGATION_UID,
        "Error investigation",
        description="One trace id: its Sentry events, logs across services, the trace, metrics.",
        tags=["errors", "traces"],
        panels=panels,
        variables=[textbox_variable("trace_id", "Trace id")],
        time_from="now-6h",
        refresh="",
    )
