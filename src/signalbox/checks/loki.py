"""Loki: the configuration against the key schema of the Loki version the Dockerfile pins.

Beyond key names: OTLP trace ids need structured metadata, which needs a TSDB period with
schema v13; retention needs the compactor's delete_request_store and a retention period.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from signalbox.checks import _keyschema
from signalbox.checks._keyschema import KeyProblem, get
from signalbox.report import Finding

CHECK = "loki"


def run(root: Path) -> list[Finding]:
    return _keyschema.check_component(
        root, CHECK, "loki", "loki.yaml", "grafana/loki", semantic=_semantic
    )


def _semantic(document: dict[str, Any]) -> list[KeyProblem]:
    problems = []
    periods = get(document, "schema_config.configs", []) or []
    latest = periods[-1] if periods and isinstance(periods[-1], dict) else {}
    if latest.get("store") != "tsdb" or latest.get("schema") != "v13":
        problems.append(
            KeyProblem(
                "schema_config.configs",
                "the newest period must use store tsdb and schema v13: structured metadata "
                "(where OTLP trace_id/span_id land) needs it",
            )
        )
    if get(document, "limits_config.allow_structured_metadata") is False:
        problems.append(
            KeyProblem(
                "limits_config.allow_structured_metadata",
                "false drops OTLP trace ids, so logs cannot link to traces",
            )
        )
    if get(document, "compactor.retention_enabled"):
        if not get(document, "compactor.delete_request_store"):
            problems.append(
                KeyProblem(
                    "compactor.delete_request_store",
                    "required since Loki 3.0 when retention is enabled (start-up fails)",
                )
            )
        if not get(document, "limits_config.retention_period"):
            problems.append(
                KeyProblem(
                    "limits_config.retention_period",
                    "retention is enabled but no retention_period is set (keeps everything)",
                )
            )
    return problems
