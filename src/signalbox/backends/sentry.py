"""Sentry: is there an error event with this trace id, in the expected project and environment?

Directly: ``GET /api/0/organizations/{org}/events/?field=...&query=trace:<id>&dataset=errors``
with ``Authorization: Bearer <token>`` (scopes org:read, project:read, event:read), answering
``{"data": [{<field>: <value>, ...}], "meta": {...}}``; errors are ``{"detail": "..."}``.
Reference: https://docs.sentry.io/api/discover/query-discover-events-in-table-format/
A project slug is turned into the numeric id the ``project`` parameter takes through
``GET /api/0/organizations/{org}/projects/`` (the call Grafana's Sentry plugin health check makes):
https://docs.sentry.io/api/organizations/list-an-organizations-projects/

Through Grafana: ``POST /api/ds/query`` with a ``grafana-sentry-datasource`` query of type
``events`` (fields of ``SentryQuery`` in grafana/sentry-datasource ``pkg/query/model.go``);
Grafana answers data frames ``{"results": {"A": {"frames": [{"schema": {"fields": [...]},
"data": {"values": [[...]]}}]}}}`` or, on failure, ``{"results": {"A": {"error": "..."}}}``.
Reference: https://grafana.com/docs/grafana/latest/developers/http_api/data_source/#query-a-data-source
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from signalbox.backends._http import BackendError, Endpoint, Lookup, request_json

FIELDS = ("id", "trace", "project", "project.id", "environment", "title", "timestamp")
PLUGIN_TYPE = "grafana-sentry-datasource"
_LIMIT = 10
# The plugin reports Sentry's status inside the error text ("401 Unauthorized Invalid token").
_FATAL_MARKERS = (
    "401",
    "403",
    "404",
    "unauthorized",
    "forbidden",
    "invalid or empty",
    "invalid auth",
)


@dataclass(frozen=True)
class Expectation:
    """Where the event must be. ``project``: slug or numeric id; empty means any."""

    org: str
    project: str = ""
    environment: str = ""

    def describe(self, trace_id: str) -> str:
        parts = [f"event with trace:{trace_id}"]
        if self.project:
            parts.append(f"project {self.project}")
        if self.environment:
            parts.append(f"environment {self.environment}")
        return ", ".join(parts)


def events_path(org: str) -> str:
    return f"/api/0/organizations/{org}/events/"


async def resolve_project_id(
    client: httpx.AsyncClient, endpoint: Endpoint, expect: Expectation
) -> str:
    """The numeric id for ``expect.project`` ("" when none is expected)."""
    if not expect.project or expect.project.isdigit():
        return expect.project
    body = await request_json(client, endpoint, f"/api/0/organizations/{expect.org}/projects/")
    if not isinstance(body, list):
        raise BackendError("Sentry's project list is not a list", fatal=True)
    for project in body:
        if isinstance(project, dict) and project.get("slug") == expect.project:
            return str(project.get("id", ""))
    known = ", ".join(sorted(str(p.get("slug")) for p in body if isinstance(p, dict)))
    raise BackendError(
        f"Sentry organization {expect.org!r} has no project {expect.project!r}"
        f" (visible to this token: {known or 'none'})",
        fatal=True,
    )


async def find_event(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    trace_id: str,
    expect: Expectation,
    *,
    project_id: str,
) -> Lookup:
    params: list[tuple[str, str]] = [("field", f) for f in FIELDS]
    params += [
        ("query", f"trace:{trace_id}"),
        ("dataset", "errors"),
        ("statsPeriod", "1h"),
        ("per_page", str(_LIMIT)),
    ]
    if project_id:
        params.append(("project", project_id))
    if expect.environment:
        params.append(("environment", expect.environment))
    body = await request_json(client, endpoint, events_path(expect.org), params=params)
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise BackendError(f"Sentry answered an unexpected document: {str(body)[:120]}", fatal=True)
    return judge(body["data"], trace_id, expect)


async def find_event_via_grafana(
    client: httpx.AsyncClient,
    grafana: Endpoint,
    datasource_uid: str,
    trace_id: str,
    expect: Expectation,
) -> Lookup:
    query: dict[str, Any] = {
        "refId": "A",
        "datasource": {"type": PLUGIN_TYPE, "uid": datasource_uid},
        "queryType": "events",
        "projectIds": [expect.project] if expect.project.isdigit() else [],
        "environments": [expect.environment] if expect.environment else [],
        "eventsQuery": f"trace:{trace_id}",
        "eventsFields": list(FIELDS),
        "eventsLimit": _LIMIT,
    }
    body = await request_json(
        client,
        grafana,
        "/api/ds/query",
        method="POST",
        json_body={"queries": [query], "from": "now-1h", "to": "now"},
        # Grafana answers 400 (207 with the multi-status feature) when a query failed, with
        # the reason inside the body.
        ok_statuses=(200, 207, 400),
    )
    result = (body or {}).get("results", {}).get("A") if isinstance(body, dict) else None
    if not isinstance(result, dict):
        message = body.get("message", body) if isinstance(body, dict) else body
        raise BackendError(
            f"Grafana /api/ds/query answered without result A: {message}", fatal=True
        )
    error = result.get("error")
    if error:
        fatal = any(marker in str(error).lower() for marker in _FATAL_MARKERS)
        raise BackendError(f"Sentry datasource {datasource_uid!r}: {error}", fatal=fatal)
    return judge(list(_frame_rows(result.get("frames", []))), trace_id, expect)


def judge(rows: list[Any], trace_id: str, expect: Expectation) -> Lookup:
    ours = [r for r in rows if isinstance(r, Mapping) and _hex(r.get("trace")) == trace_id]
    if not ours:
        return Lookup(False, "no event with this trace id yet")
    for row in ours:
        if _in_place(row, expect):
            where = f"project {row.get('project')}, environment {row.get('environment')}"
            return Lookup(
                True,
                f"event {row.get('id')} ({where}): {row.get('title', '')}",
                {
                    "event_id": row.get("id"),
                    "project": row.get("project"),
                    "environment": row.get("environment"),
                },
            )
    elsewhere = "; ".join(
        f"project {r.get('project')}, environment {r.get('environment')}" for r in ours
    )
    return Lookup(False, f"event found but in the wrong place ({elsewhere})")


def _in_place(row: Mapping[str, Any], expect: Expectation) -> bool:
    if expect.environment and row.get("environment") != expect.environment:
        return False
    if not expect.project:
        return True
    if expect.project.isdigit():
        return str(row.get("project.id", "")) == expect.project
    return row.get("project") == expect.project


def _frame_rows(frames: Iterable[Any]) -> Iterable[dict[str, Any]]:
    """Data frames are column-major: schema.fields names the columns of data.values."""
    for frame in frames:
        names = [f.get("name", "") for f in frame.get("schema", {}).get("fields", [])]
        columns = frame.get("data", {}).get("values", [])
        for row in zip(*columns, strict=False):
            yield {
                name.lower() if name.lower() in FIELDS else name: v
                for name, v in zip(names, row, strict=False)
            }


def _hex(value: Any) -> str:
    return str(value or "").replace("-", "").lower()
