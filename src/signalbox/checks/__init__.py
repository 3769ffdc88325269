"""Offline checks run by ``signalbox validate``.

Each check module exposes ``run(root: Path) -> list[Finding]`` and never raises for a problem
in the bundle: a problem is a failed Finding with a message that says what to fix.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from signalbox.report import Finding

Check = Callable[[Path], list[Finding]]

# Order is the order of the report.
_MODULES: tuple[str, ...] = (
    "compose",
    "prometheus",
    "loki",
    "tempo",
    "otel_collector",
    "grafana_provisioning",
    "railway",
    "dockerfiles",
    "yaml_lint",
    "dashboards",
    "alerting",
)


def all_checks() -> list[tuple[str, Check]]:
    return [(name, importlib.import_module(f"signalbox.checks.{name}").run) for name in _MODULES]
