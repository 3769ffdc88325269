"""Small builders for Grafana dashboard JSON (classic model, schemaVersion 42 = Grafana 13.x).

Plain dicts on purpose: the JSON Grafana stores is the contract, and a dict reads like it.
Reference: https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

SCHEMA_VERSION = 42  # Grafana 13.x (@grafana/schema 13.2 defaultDashboard.schemaVersion)

PROMETHEUS: Json = {"type": "prometheus", "uid": "prometheus"}
LOKI: Json = {"type": "loki", "uid": "loki"}
TEMPO: Json = {"type": "tempo", "uid": "tempo"}
SENTRY: Json = {"type": "grafana-sentry-datasource", "uid": "sentry"}
GRAFANA: Json = {"type": "grafana", "uid": "-- Grafana --"}

INVESTIGATION_UID = "signalbox-error-investigation"
# Every trace id shown anywhere links here. ${__value.raw} is the clicked value; the current time
# range travels along so the investigation shows metrics around the same window.
INVESTIGATE_URL = (
    f"/d/{INVESTIGATION_UID}/error-investigation"
    "?var-trace_id=${__value.raw}&${__url_time_range}"
)


def investigate_link(title: str = "Investigate this trace") -> Json:
    return {"title": title, "url": INVESTIGATE_URL}


def trace_explore_link() -> Json:
    """Open the trace itself in Explore (Tempo), next to the dashboard link."""
    return {
        "title": "Open trace in Explore",
        "url": "",
        "internal": {
            "datasourceUid": "tempo",
            "datasourceName": "Tempo",
            "query": {"queryType": "traceql", "query": "${__value.raw}"},
        },
    }


def trace_logs_link() -> Json:
    """Open the logs of the trace (every service) in Explore (Loki, structured metadata)."""
    return {
        "title": "Logs of this trace",
        "url": "",
        "internal": {
            "datasourceUid": "loki",
            "datasourceName": "Loki",
            "query": {"expr": '{service_name=~".+"} | trace_id="${__value.raw}"'},
        },
    }


def trace_id_override(field_name: str) -> Json:
    """Field override that turns a trace-id column into links: investigation, trace, logs."""
    return {
        "matcher": {"id": "byName", "options": field_name},
        "properties": [
            {
                "id": "links",
                "value": [investigate_link(), trace_explore_link(), trace_logs_link()],
            },
            {"id": "custom.width", "value": 290},
        ],
    }


def prom(
    expr: str, legend: str = "", *, ref: str = "A", exemplar: bool = False, instant: bool = False
) -> Json:
    target: Json = {
        "refId": ref,
        "datasource": PROMETHEUS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }
    if exemplar:
        target["exemplar"] = True
    if instant:
        target["format"] = "table"
    return target


def loki(expr: str, legend: str = "", *, ref: str = "A", kind: str = "range") -> Json:
    return {
        "refId": ref,
        "datasource": LOKI,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "queryType": kind,
    }


def traceql(query: str, *, ref: str = "A", limit: int = 20, table: str = "traces") -> Json:
    """A TraceQL search, or a trace lookup when ``query`` is (a variable holding) a trace id."""
    return {
        "refId": ref,
        "datasource": TEMPO,
        "queryType": "traceql",
        "query": query,
        "limit": limit,
        "tableType": table,
    }


def service_map(*, ref: str = "A") -> Json:
    return {"refId": ref, "datasource": TEMPO, "queryType": "serviceMap"}


def sentry(query_type: str, *, ref: str = "A", **fields: Any) -> Json:
    """A grafana-sentry-datasource query; field names are the plugin's (pkg/query/model.go)."""
    return {"refId": ref, "datasource": SENTRY, "queryType": query_type, **fields}


def sentry_events(events_query: str, **scope: Any) -> Json:
    """The newest 50 Sentry events matching ``events_query``, for a table.

    The ``trace`` column is there for ``trace_id_override("trace")``'s links.
    """
    return sentry(
        "events",
        **scope,
        eventsQuery=events_query,
        eventsFields=[
            "id",
            "title",
            "project",
            "level",
            "release",
            "environment",
            "timestamp",
            "trace",
        ],
        eventsSort="timestamp",
        eventsSortDirection="desc",
        eventsLimit=50,
    )


def panel(
    kind: str,
    title: str,
    targets: list[Json],
    *,
    w: int = 12,
    h: int = 8,
    description: str = "",
    unit: str = "",
    options: Json | None = None,
    defaults: Json | None = None,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
    datasource: Json | None = None,
    links: list[Json] | None = None,
) -> Json:
    field_defaults: Json = dict(defaults or {})
    if unit:
        field_defaults["unit"] = unit
    body: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": datasource or (targets[0]["datasource"] if targets else GRAFANA),
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
        "targets": targets,
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        body["transformations"] = transformations
    if links:
        body["links"] = [_panel_link(link) for link in links]
    return body


def _panel_link(link: Json) -> Json:
    # Panel links share the DashboardLink shape in @grafana/schema, which requires these keys.
    return {
        "asDropdown": False,
        "icon": "external link",
        "includeVars": False,
        "keepTime": True,
        "tags": [],
        "targetBlank": False,
        "tooltip": "",
        "type": "link",
        **link,
    }


def text(title: str, content: str, *, w: int = 24, h: int = 4) -> Json:
    return panel(
        "text", title, [], w=w, h=h, options={"mode": "markdown", "content": content.strip()}
    )


def timeseries(title: str, targets: list[Json], **kw: Any) -> Json:
    stack = kw.pop("stack", False)
    defaults = kw.pop("defaults", {}) or {}
    custom: Json = {"drawStyle": "line", "fillOpacity": 10, "showPoints": "never"}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
        custom["fillOpacity"] = 40
    defaults = {"custom": custom, **defaults}
    options = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel("timeseries", title, targets, defaults=defaults, options=options, **kw)


def stat(
    title: str, targets: list[Json], *, calc: str = "lastNotNull", fields: str = "", **kw: Any
) -> Json:
    options = {
        "reduceOptions": {"calcs": [calc], "fields": fields, "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "textMode": "auto",
        "justifyMode": "auto",
        "orientation": "auto",
    }
    kw.setdefault("w", 6)
    kw.setdefault("h", 4)
    return panel("stat", title, targets, options=options, **kw)


def table(
    title: str, targets: list[Json], *, sort_by: str = "", desc: bool = True, **kw: Any
) -> Json:
    options: Json = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    if sort_by:
        options["sortBy"] = [{"displayName": sort_by, "desc": desc}]
    return panel("table", title, targets, options=options, **kw)


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def query_variable(
    name: str,
    label: str,
    datasource: Json,
    query: Any,
    *,
    multi: bool = True,
    include_all: bool = True,
    all_value: str = "",
    refresh: int = 2,
    description: str = "",
) -> Json:
    """A query variable; refresh 2 = on time range change, so new services appear by themselves."""
    variable: Json = {
        "type": "query",
        "name": name,
        "label": label,
        **({"description": description} if description else {}),
        "datasource": datasource,
        "query": query,
        "definition": query if isinstance(query, str) else "",
        "refresh": refresh,
        "multi": multi,
        "includeAll": include_all,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {},
        "options": [],
        "sort": 1,
        "hide": 0,
    }
    if all_value:
        variable["allValue"] = all_value
    return variable


def textbox_variable(name: str, label: str, default: str = "") -> Json:
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "query": default,
        "current": {"text": default, "value": default},
        "options": [],
        "hide": 0,
    }


def custom_variable(name: str, label: str, values: list[str], *, all_value: str = "") -> Json:
    return {
        "type": "custom",
        "name": name,
        "label": label,
        "query": ",".join(values),
        "multi": True,
        "includeAll": True,
        "allValue": all_value,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


def dashboard(
    uid: str,
    title: str,
    *,
    description: str,
    tags: list[str],
    panels: list[Json],
    variables: list[Json] | None = None,
    annotations: list[Json] | None = None,
    time_from: str = "now-1h",
    refresh: str = "30s",
) -> Json:
    _layout(panels)
    builtin: Json = {
        "builtIn": 1,
        "datasource": GRAFANA,
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["signalbox", *tags],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": time_from, "to": "now"},
        "refresh": refresh,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [
            {
                "title": "Signalbox",
                "type": "dashboards",
                "tags": ["signalbox"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "Other Signalbox dashboards",
                "url": "",
            }
        ],
        "annotations": {"list": [builtin, *(annotations or [])]},
        "templating": {"list": variables or []},
        "panels": panels,
    }


def _layout(panels: list[Json]) -> None:
    """Flow panels left to right, top to bottom, on Grafana's 24-column grid; ids in order."""
    x = y = row_height = 0
    for number, p in enumerate(panels, start=1):
        grid = p["gridPos"]
        if x + grid["w"] > 24:
            x, y, row_height = 0, y + row_height, 0
        grid["x"], grid["y"] = x, y
        x += grid["w"]
        row_height = max(row_height, grid["h"])
        p["id"] = number
