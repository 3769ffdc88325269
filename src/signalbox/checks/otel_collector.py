"""OpenTelemetry Collector: the config as the real collector reads it, and what it points at.

- The collector's own ``validate`` command on ``otel-collector/config.yaml`` (and with the
  ``sentry.yaml`` overlay), run by the binary ``make backends`` builds from
  ``tools/backends/otelcol``: unknown keys, bad values and undefined pipeline components are
  reported as the collector itself reports them.
- The builder manifest lists exactly the components the config uses, at the release the
  Dockerfile's image pins, and the generated ``go.mod`` follows the manifest.
- Every exporter endpoint names a compose service, and both sample services send their OTLP
  to the collector.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from signalbox.checks import _tools
from signalbox.checks._tools import ToolMissing, find_tool, load_yaml, relative
from signalbox.report import Finding

CHECK = "otel-collector"

_FOLDER = "otel-collector"
_WRAPPER = Path("tools/backends/otelcol")
_SECTIONS = ("extensions", "receivers", "processors", "exporters", "connectors")
_IMAGE = re.compile(r"^FROM\s+otel/opentelemetry-collector-contrib:(\S+)", re.MULTILINE)
_ENV_DEFAULT = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Component types that are not simply the module's name minus its kind ("batchprocessor").
_TYPES = {
    "otlpexporter": "otlp_grpc",
    "otlphttpexporter": "otlp_http",
    "healthcheckextension": "health_check",
    "memorylimiterprocessor": "memory_limiter",
    "tailsamplingprocessor": "tail_sampling",
    "probabilisticsamplerprocessor": "probabilistic_sampler",
}
_KINDS = ("processor", "exporter", "receiver", "extension", "connector")
# What the sentry.yaml overlay needs to be validated on its own (placeholders, never sent).
_OVERLAY_ENV = {
    "SENTRY_OTLP_TRACES_ENDPOINT": "https://o0.ingest.sentry.io/api/0/integration/otlp/v1/traces",
    "SENTRY_OTLP_PUBLIC_KEY": "validate-only",
}


def run(root: Path) -> list[Finding]:
    folder = root / _FOLDER
    config_path = folder / "config.yaml"
    if not config_path.is_file():
        return [Finding.skipped(CHECK, "no otel-collector/config.yaml in this bundle")]
    findings: list[Finding] = []
    try:
        config = load_yaml(config_path) or {}
    except ValueError as exc:
        return [Finding.failed(CHECK, str(exc), relative(config_path, root))]
    overlay_path = folder / "sentry.yaml"
    overlay = load_yaml(overlay_path) if overlay_path.is_file() else {}

    findings.extend(_real_validate(root, folder, overlay_path))
    findings.extend(_manifest(root, folder, [config, overlay or {}]))
    findings.extend(_endpoints(root, config))
    return findings


def _real_validate(root: Path, folder: Path, overlay_path: Path) -> list[Finding]:
    binary = find_tool("otelcol", root)
    if binary is None:
        return [
            Finding.failed(
                CHECK,
                "the collector binary is not built, so the config was not checked by it: "
                "run `make backends`",
                relative(folder, root),
            )
        ]
    runs: list[tuple[str, list[Path], dict[str, str]]] = [
        ("config.yaml", [folder / "config.yaml"], {})
    ]
    if overlay_path.is_file():
        runs.append(
            ("config.yaml + sentry.yaml", [folder / "config.yaml", overlay_path], _OVERLAY_ENV)
        )
    findings = []
    for label, files, env in runs:
        command = [binary, "validate", *(f"--config=file:{f}" for f in files)]
        try:
            result = _tools.run(command, env={"PATH": "/usr/bin:/bin", **env}, timeout=60)
        except ToolMissing as exc:
            return [Finding.failed(CHECK, str(exc), relative(folder, root))]
        where = relative(files[-1], root)
        if result.returncode == 0:
            findings.append(Finding.passed(CHECK, f"the collector accepts {label}", where))
        else:
            findings.append(
                Finding.failed(
                    CHECK,
                    f"the collector refuses {label}: {_last_error(result.output)}",
                    where,
                )
            )
    return findings


def _last_error(output: str) -> str:
    """The collector's error: from its ``Error:`` line to the end, on one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    first = next((i for i, line in enumerate(lines) if line.startswith("Error")), len(lines) - 1)
    return " ".join(lines[first:]).removeprefix("Error: ") or "(no output)"


def _manifest(root: Path, folder: Path, documents: list[dict[str, Any]]) -> list[Finding]:
    manifest_path = root / _WRAPPER / "manifest.yaml"
    where = relative(manifest_path, root)
    if not manifest_path.is_file():
        return [Finding.failed(CHECK, "no builder manifest (tools/backends/otelcol)", where)]
    manifest = load_yaml(manifest_path) or {}
    findings: list[Finding] = []

    built: dict[str, str] = {}  # component type -> module path
    versions: set[str] = set()
    for section in _SECTIONS:
        for entry in manifest.get(section) or []:
            module, _, version = str(entry.get("gomod", "")).partition(" ")
            built[_component_type(module)] = module
            versions.add(version.strip().lstrip("v"))
    used = {
        str(name).split("/")[0]
        for document in documents
        for section in _SECTIONS
        for name in (document.get(section) or {})
    }
    missing = sorted(used - set(built))
    unused = sorted(set(built) - used)
    if missing:
        findings.append(
            Finding.failed(
                CHECK,
                f"the config uses {', '.join(missing)}, which the builder manifest does not "
                "build: add the module to the manifest, then `make backends-generate`",
                where,
            )
        )
    if unused:
        findings.append(
            Finding.failed(
                CHECK,
                f"the manifest builds {', '.join(unused)}, which the config never uses: "
                "remove it (the collector should hold only what it runs)",
                where,
            )
        )
    if not missing and not unused:
        findings.append(
            Finding.passed(CHECK, f"the manifest builds exactly the {len(used)} components used")
        )

    dockerfile = folder / "Dockerfile"
    image = _IMAGE.search(dockerfile.read_text()) if dockerfile.is_file() else None
    dist_version = str((manifest.get("dist") or {}).get("version", ""))
    if image is None:
        findings.append(
            Finding.failed(
                CHECK,
                "the Dockerfile does not pin otel/opentelemetry-collector-contrib",
                relative(dockerfile, root),
            )
        )
    elif {dist_version} | versions != {image[1]}:
        findings.append(
            Finding.failed(
                CHECK,
                f"the image pins {image[1]} but the manifest builds "
                f"{', '.join(sorted({dist_version} | versions))}: one version per component, "
                "so tests run what the image runs",
                where,
            )
        )
    else:
        findings.append(Finding.passed(CHECK, f"image and manifest both at {image[1]}", where))

    go_mod = root / _WRAPPER / "go.mod"
    requires = go_mod.read_text() if go_mod.is_file() else ""
    stale = sorted(module for module in built.values() if module not in requires)
    if stale:
        findings.append(
            Finding.failed(
                CHECK,
                f"go.mod does not require {', '.join(stale)}: run `make backends-generate`",
                relative(go_mod, root),
            )
        )
    return findings


def _component_type(module: str) -> str:
    """``.../processor/tailsamplingprocessor`` -> ``tail_sampling``, as the config names it."""
    name = module.rsplit("/", 1)[-1]
    if name in _TYPES:
        return _TYPES[name]
    for kind in _KINDS:
        name = name.removesuffix(kind)
    return name


def _endpoints(root: Path, config: dict[str, Any]) -> list[Finding]:
    compose_path = root / "docker-compose.yml"
    if not compose_path.is_file():
        return []
    services: dict[str, Any] = (load_yaml(compose_path) or {}).get("services") or {}
    collector = services.get(_FOLDER)
    if collector is None:
        return [
            Finding.failed(CHECK, "docker-compose.yml has no otel-collector service", "compose")
        ]
    collector_env = collector.get("environment") or {}
    findings: list[Finding] = []
    for name, exporter in (config.get("exporters") or {}).items():
        for key, value in (exporter or {}).items():
            if not key.endswith("endpoint") or not isinstance(value, str):
                continue
            variable = _ENV_DEFAULT.search(value)
            url = value
            if variable:
                # compose's value wins over the config's default, as at run time.
                url = str(collector_env.get(variable[1]) or variable[2] or "")
            host = urlsplit(url).hostname
            if host not in services:
                findings.append(
                    Finding.failed(
                        CHECK,
                        f"exporter {name} sends to {url!r}, but {host!r} is no compose service",
                        f"{_FOLDER}/config.yaml",
                    )
                )
    for service in ("fastapi-app", "api"):
        env = (services.get(service) or {}).get("environment") or {}
        endpoint = str(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""))
        if urlsplit(endpoint).hostname != _FOLDER:
            findings.append(
                Finding.failed(
                    CHECK,
                    f"{service} sends OTLP to {endpoint or 'nowhere'!r}, not to the collector "
                    "(OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318)",
                    "docker-compose.yml",
                )
            )
    if not findings:
        findings.append(
            Finding.passed(CHECK, "exporters reach compose services; both services send to it")
        )
    return findings
