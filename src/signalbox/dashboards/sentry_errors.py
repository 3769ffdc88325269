"""Sentry error tracking through the grafana-sentry-datasource plugin (uid ``sentry``).

Only query types and fields the plugin defines are used (grafana/sentry-datasource
pkg/query/model.go, pkg/plugin/plugin.go); ``signalbox validate`` enforces that.
"""

from __future__ import annotations

from typing import Any

from signalbox.dashboards._kit import (
    SENTRY,
    Json,
    dashboard,
    panel,
    query_variable,
    sentry,
    sentry_events,
    stat,
    table,
    text,
    thresholds,
    timeseries,
    trace_id_override,
)

UID = "signalbox-sentry-errors"

_SCOPE: dict[str, Any] = {"projectIds": ["$project"], "environments": ["$environment"]}

_CONNECT = """
Panels here read Sentry through the **Sentry** datasource. If they show an error, Sentry is not
connected yet: set `SENTRY_ORG` and `SENTRY_AUTH_TOKEN` (scopes `org:read`, `project:read`,
`event:read`; `SENTRY_URL` for self-hosted Sentry) in `.env` and restart Grafana
(`docker compose up -d grafana`). See the README, section *Connect Sentry*.
Click a **trace** value to open the Error investigation dashboard for that request.
"""


def build() -> Json:
    count_to_number = {
        "id": "convertFieldType",
        "options": {"conversions": [{"targetField": "Count", "destinationType": "number"}]},
    }
    panels = [
        text("Connecting Sentry", _CONNECT, h=4),
        stat(
            "Unresolved issues",
            [sentry("issues", **_SCOPE, issuesQuery="is:unresolved", issuesLimit=1000)],
            calc="count",
            fields="/^ID$/",
            defaults={"thresholds": thresholds((None, "green"), (1, "orange"), (20, "red"))},
            w=6,
            h=8,
            description="Number of unresolved issues in the selected projects and environments.",
        ),
        panel(
            "piechart",
            "Issues by status",
            [sentry("issues", **_SCOPE, issuesQuery="", issuesLimit=1000)],
            w=6,
            h=8,
            transformations=[
                {
                    "id": "groupBy",
                    "options": {
                        "fields": {
                            "Status": {"aggregations": [], "operation": "groupby"},
                            "ID": {"aggregations": ["count"], "operation": "aggregate"},
                        }
                    },
                }
            ],
            options={
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True},
                "pieType": "donut",
                "displayLabels": ["name", "value"],
                "legend": {"displayMode": "table", "placement": "right", "values": ["value"]},
            },
        ),
        timeseries(
            "Error trend",
            [
                sentry(
                    "eventsStats",
                    **_SCOPE,
                    eventsStatsQuery="event.type:error",
                    eventsStatsYAxis=["count()"],
                    eventsStatsGroups=[],
                )
            ],
            w=12,
            h=8,
            unit="short",
        ),
        table(
            "Recent issues",
            [
                sentry(
                    "issues",
                    **_SCOPE,
                    issuesQuery="is:unresolved",
                    issuesSort="date",
                    issuesLimit=50,
                )
            ],
            w=24,
            h=9,
            transformations=[_issue_columns()],
            description="ID opens the issue in Sentry (link added by the plugin).",
        ),
        table(
            "Recent error events (trace → investigation, logs, trace)",
            [sentry_events("event.type:error", **_SCOPE)],
            w=24,
            h=9,
            overrides=[trace_id_override("trace")],
            description="Events carrying a trace id link to its trace, its logs and the "
            "Error investigation dashboard.",
        ),
        table(
            "Most frequent issues",
            [
                sentry(
                    "issues",
                    **_SCOPE,
                    issuesQuery="is:unresolved",
                    issuesSort="freq",
                    issuesLimit=10,
                )
            ],
            sort_by="Count",
            transformations=[count_to_number, _issue_columns()],
            w=12,
            h=9,
        ),
        table(
            "Critical errors in production",
            [
                sentry(
                    "issues",
                    projectIds=["$project"],
                    environments=["production"],
                    issuesQuery="is:unresolved level:[fatal,error]",
                    issuesSort="date",
                    issuesLimit=50,
                )
            ],
            transformations=[_issue_columns()],
            w=12,
            h=9,
            description="Unresolved fatal/error issues seen in the production environment.",
        ),
        timeseries(
            "Errors by release",
            [
                sentry(
                    "eventsStats",
                    **_SCOPE,
                    eventsStatsQuery="event.type:error",
                    eventsStatsYAxis=["count()"],
                    eventsStatsGroups=["release"],
                    eventsStatsSort="-count()",
                    eventsStatsLimit=10,
                )
            ],
            w=24,
            h=8,
            unit="short",
            stack=True,
        ),
    ]
    variables = [
        query_variable("project", "Project", SENTRY, {"type": "projects"}),
        query_variable(
            "environment",
            "Environment",
            SENTRY,
            {"type": "environments", "projectIds": ["$project"]},
        ),
    ]
    return dashboard(
        UID,
        "Sentry error tracking",
        description="Sentry issues and error events, linked to traces and logs.",
        tags=["errors", "sentry"],
        panels=panels,
        variables=variables,
        time_from="now-24h",
        refresh="10s",
    )


def _issue_columns() -> Json:
    return {
        "id": "organize",
        "options": {
            "includeByName": {
                "ID": True,
                "ShortID": True,
                "Title": True,
                "Level": True,
                "Status": True,
                "Count": True,
                "UserCount": True,
                "LastSeen": True,
                "FirstSeen": True,
            },
            "indexByName": {"ShortID": 0, "Title": 1, "Level": 2, "Count": 3, "LastSeen": 4},
        },
    }
