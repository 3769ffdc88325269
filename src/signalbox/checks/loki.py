"""Loki: the configuration against the key schema of the Loki version the Dockerfile pins.

Beyond key names: OTLP trace ids need structured metadata, which needs a TSDB period with
schema v13; retention needs the compactor's delete_request_store and a retention period; a
query_range results cache block does nothing unless its cache_* switch is on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from signalbox.checks import _keyschema
from signalbox.checks._keyschema import KeyProblem, get
from signalbox.report import Finding

CHECK = "loki"

# query_range cache blocks and the switch that turns each on, with the switch's default
# (Loki 3.7 docs/sources/shared/configuration.md, query_range_config). A block whose switch is
# off is never read: Loki builds that cache only `if cfg.CacheResults` (and so on), in
# pkg/querier/queryrange/roundtrip.go.
_RESULTS_CACHES: dict[str, tuple[str, bool]] = {
    "results_cache": ("cache_results", False),
    "instant_metric_results_cache": ("cache_instant_metric_results", False),
    "index_stats_results_cache": ("cache_index_stats_results", True),
    "volume_results_cache": ("cache_volume_results", True),
    "series_results_cache": ("cache_series_results", True),
    "label_results_cache": ("cache_label_results", True),
}


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
    problems.extend(_inert_caches(get(document, "query_range", {}) or {}))
    return problems


def _inert_caches(query_range: dict[str, Any]) -> list[KeyProblem]:
    problems = []
    for block, (switch, default) in _RESULTS_CACHES.items():
        if block in query_range and _switch(query_range.get(switch, default)) is False:
            problems.append(
                KeyProblem(
                    f"query_range.{block}",
                    f"has no effect: Loki reads it only with query_range.{switch}: true "
                    f"(default {str(default).lower()}); set it, or remove the block (Loki "
                    "already turns on its embedded cache when no other cache is configured)",
                )
            )
    return problems


def _switch(value: Any) -> bool | None:
    """A boolean setting as Loki reads it; None when it comes from the environment."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "false": False}.get(text)
