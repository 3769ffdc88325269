"""Runs tools/querycheck (Node, Grafana's lezer grammars + the dashboard JSON schema) once for
a batch of queries and dashboards."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TIMEOUT_S = 60


class QueryCheckUnavailable(Exception):
    """Node or the tool's npm packages are missing: the message says how to install them."""


@dataclass
class QueryFacts:
    errors: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    stream_labels: list[str] = field(default_factory=list)
    filter_labels: list[str] = field(default_factory=list)


@dataclass
class Batch:
    queries: list[dict[str, str]] = field(default_factory=list)
    dashboards: list[dict[str, Any]] = field(default_factory=list)

    def query(self, key: str, lang: str, expr: str) -> None:
        self.queries.append({"id": key, "lang": lang, "expr": expr})

    def dashboard(self, key: str, doc: Any) -> None:
        self.dashboards.append({"id": key, "doc": doc})


def tool_dir(root: Path) -> Path:
    """The bundle's own tools/querycheck, else the one beside this package's repository."""
    for candidate in (
        root / "tools" / "querycheck",
        Path(__file__).parents[3] / "tools" / "querycheck",
    ):
        if (candidate / "src" / "cli.mjs").is_file():
            return candidate
    raise QueryCheckUnavailable(
        "tools/querycheck not found (it ships with the Signalbox repository)"
    )


def run(root: Path, batch: Batch) -> tuple[dict[str, QueryFacts], dict[str, list[str]]]:
    """Check every item; returns facts per query id and schema errors per dashboard id."""
    directory = tool_dir(root)
    node = shutil.which("node")
    if node is None:
        raise QueryCheckUnavailable("node is not on PATH (Node 20+ is needed for query checks)")
    if not (directory / "node_modules" / "@grafana" / "lezer-logql").is_dir():
        raise QueryCheckUnavailable(
            f"npm packages missing in {directory}: run `make setup-node` (npm ci there)"
        )
    payload = json.dumps({"queries": batch.queries, "dashboards": batch.dashboards})
    try:
        proc = subprocess.run(
            [node, str(directory / "src" / "cli.mjs")],
            input=payload,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise QueryCheckUnavailable(f"querycheck timed out after {_TIMEOUT_S}s") from exc
    if proc.returncode not in (0, 1):
        raise QueryCheckUnavailable(f"querycheck failed: {proc.stderr.strip()[:500]}")
    result = json.loads(proc.stdout)
    queries = {
        q["id"]: QueryFacts(
            errors=[e["message"] for e in q["errors"]],
            metrics=q.get("metrics", []),
            stream_labels=q.get("streamLabels", []),
            filter_labels=q.get("filterLabels", []),
        )
        for q in result["queries"]
    }
    dashboards = {d["id"]: [e["message"] for e in d["errors"]] for d in result["dashboards"]}
    return queries, dashboards
