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

# Panel queries interpolate $project and $environment with the csv format and split the result
# (grafana/sentry-datasource src/app/replace.ts), so multi-value selections work here.
_SCOPE: dict[str, Any] = {"projectIds": ["$project"], "environments": ["$environment"]}
# Issues a status chart counts: one page of the issues query, named in the panel title.
_STATUS_PAGE = 100

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
        # Counts come from Sentry's own aggregates: an issues query returns one page of issues
        # (the plugin does not paginate), so counting its rows stops at the page size.
        stat(
            "Issues with errors",
            [
                sentry(
                    "events",
                    **_SCOPE,
                    eventsQuery="event.type:error",
                    eventsFields=["count_unique(issue)"],
                )
            ],
            defaults={"thresholds": thresholds((None, "green"), (1, "orange"), (20, "red"))},
            w=6,
            h=8,
            description="Distinct issues with at least one error event in the time range, in "
            "the selected projects and environments, counted by Sentry (count_unique(issue)).",
        ),
        panel(
            "piechart",
            f"Status of the last {_STATUS_PAGE} issues seen",
            [
                sentry(
                    "issues", **_SCOPE, issuesQuery="", issuesSort="date", issuesLimit=_STATUS_PAGE
                )
            ],
            description=f"Counted from one page of issues, the {_STATUS_PAGE} seen last: the "
            "plugin does not page through Sentry's results, so older issues are not included.",
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
        # Not narrowed to $project: the plugin interpolates variable queries without a format
        # (src/app/replace.ts), so two or more projects arrive as one string '{1,2}' that matches
        # no project id, and the list came back empty. Panels still filter on both variables.
        query_variable(
            "environment",
            "Environment",
            SENTRY,
            {"type": "environments", "projectIds": []},
            description="Environments of every project of the organisation.",
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
