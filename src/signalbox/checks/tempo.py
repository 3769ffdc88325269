"""Tempo: the configuration against the key schema of the Tempo version the Dockerfile pins.

Tempo 3.0 refuses 2.x blocks (ingester, compactor, ...): they are listed in the schema as
removed, with the replacement. Beyond key names: OTLP receivers must listen on all
interfaces (they default to localhost since 2.7), and the metrics-generator must remote-write
with exemplars when its processors are on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from signalbox.checks import _keyschema
from signalbox.checks._keyschema import KeyProblem, get
from signalbox.report import Finding

CHECK = "tempo"
_ALL_INTERFACES = ("0.0.0.0", "[::]", "::", "")


def run(root: Path) -> list[Finding]:
    return _keyschema.check_component(
        root, CHECK, "tempo", "tempo.yaml", "grafana/tempo", semantic=_semantic
    )


def _semantic(document: dict[str, Any]) -> list[KeyProblem]:
    problems = []
    protocols = get(document, "distributor.receivers.otlp.protocols", {}) or {}
    if not protocols:
        problems.append(
            KeyProblem("distributor.receivers.otlp", "no OTLP receiver: services cannot send")
        )
    for name, settings in protocols.items():
        endpoint = str((settings or {}).get("endpoint") or "")
        host = endpoint.rsplit(":", 1)[0] if ":" in endpoint else endpoint
        if not endpoint or host not in _ALL_INTERFACES:
            problems.append(
                KeyProblem(
                    f"distributor.receivers.otlp.protocols.{name}.endpoint",
                    f"'{endpoint or '(default)'}' listens on localhost only (the default since "
                    "Tempo 2.7); set 0.0.0.0:<port> so other containers reach it",
                )
            )
    processors = get(document, "overrides.defaults.metrics_generator.processors", []) or []
    if processors:
        remote_write = get(document, "metrics_generator.storage.remote_write", []) or []
        if not remote_write:
            problems.append(
                KeyProblem(
                    "metrics_generator.storage.remote_write",
                    "metrics-generator processors are on but nothing receives their metrics",
                )
            )
        elif not all(isinstance(rw, dict) and rw.get("send_exemplars") for rw in remote_write):
            problems.append(
                KeyProblem(
                    "metrics_generator.storage.remote_write",
                    "send_exemplars: true is needed for span-metric exemplars to link to traces",
                )
            )
        if not get(document, "metrics_generator.storage.path"):
            problems.append(
                KeyProblem(
                    "metrics_generator.storage.path",
                    "the metrics-generator needs a WAL path for remote write",
                )
            )
    return problems
