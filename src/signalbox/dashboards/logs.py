"""Logs: volume by service and level, error lines with trace links, free-text search.

Labels: OTLP ingestion makes ``service.name`` the index label ``service_name``; severity and
trace/span ids are structured metadata (``detected_level``, ``trace_id``, ``span_id``), filtered
after the stream selector. https://grafana.com/docs/loki/latest/send-data/otel/
"""

from __future__ import annotations

from signalbox.dashboards._kit import (
    LOKI,
    Json,
    custom_variable,
    dashboard,
    loki,
    panel,
    query_variable,
    table,
    textbox_variable,
    timeseries,
    trace_id_override,
)

UID = "signalbox-logs"
_STREAM = '{service_name=~"$service"}'


def build() -> Json:
    panels = [
        timeseries(
            "Log volume by service and level",
            [
                loki(
                    "sum by (service_name, detected_level) (count_over_time("
                    f'{_STREAM} |= "$search" | detected_level=~"$level" [$__auto]))',
                    "{{service_name}} {{detected_level}}",
                )
            ],
            w=24,
            stack=True,
            unit="short",
        ),
        table(
            "Error logs (click a trace id to investigate)",
            [
                loki(
                    f'{_STREAM} |= "$search" | detected_level=~"error|critical|fatal"',
                    ref="A",
                )
            ],
            w=24,
            h=10,
            transformations=[
                {"id": "extractFields", "options": {"source": "labels", "replace": False}},
                {
                    "id": "organize",
                    "options": {
                        "includeByName": {
                            "Time": True,
                            "service_name": True,
                            "detected_level": True,
                            "Line": True,
                            "trace_id": True,
                        },
                        "indexByName": {
                            "Time": 0,
                            "service_name": 1,
                            "detected_level": 2,
                            "trace_id": 3,
                            "Line": 4,
                        },
                    },
                },
            ],
            overrides=[trace_id_override("trace_id")],
        ),
        panel(
            "logs",
            "Logs",
            [loki(f'{_STREAM} |= "$search" | detected_level=~"$level"')],
            w=24,
            h=14,
            options={
                "showTime": True,
                "wrapLogMessage": True,
                "enableLogDetails": True,
                "sortOrder": "Descending",
                "dedupStrategy": "none",
            },
            description=(
                "Trace ids in log details link to Tempo and to Error investigation through the "
                "Loki datasource's derived fields."
            ),
        ),
    ]
    variables = [
        query_variable(
            "service",
            "Service",
            LOKI,
            {
                "type": 1,
                "label": "service_name",
                "stream": "",
                "refId": "LokiVariableQueryEditor-VariableQuery",
            },
            all_value=".+",
        ),
        custom_variable(
            "level",
            "Level",
            ["critical", "error", "warn", "info", "debug", "trace", "unknown"],
            all_value=".*",
        ),
        textbox_variable("search", "Search"),
    ]
    variables[0]["definition"] = "label_values(service_name)"
    return dashboard(
        UID,
        "Logs",
        description="Log volume, error lines with trace links, and search across services.",
        tags=["logs"],
        panels=panels,
        variables=variables,
    )
