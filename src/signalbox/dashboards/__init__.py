"""Signalbox's Grafana dashboards, authored as code.

``build_all()`` returns every dashboard keyed by its path under ``grafana/dashboards``; the
folder part of the path is the Grafana folder (the provider uses ``foldersFromFilesStructure``).
``python -m signalbox.dashboards`` writes them; ``--check`` fails when the committed JSON differs.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from signalbox.dashboards import (
    api_monitor,
    error_investigation,
    logs,
    sentry_errors,
    service_overview,
    stack_health,
    traces,
)
from signalbox.dashboards._kit import Json

_FOLDERS: dict[str, list[tuple[str, Callable[[], Json]]]] = {
    "Services": [
        ("service-overview", service_overview.build),
        ("api-monitor", api_monitor.build),
    ],
    "Errors": [
        ("sentry-errors", sentry_errors.build),
        ("error-investigation", error_investigation.build),
    ],
    "Telemetry": [("logs", logs.build), ("traces", traces.build)],
    "Platform": [("stack-health", stack_health.build)],
}


def build_all() -> dict[str, Json]:
    """Every dashboard, keyed by its path relative to grafana/dashboards."""
    return {
        f"{folder}/{name}.json": build()
        for folder, entries in _FOLDERS.items()
        for name, build in entries
    }


def render(dashboard: Json) -> str:
    """The exact text committed for a dashboard (stable key order, trailing newline)."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"
