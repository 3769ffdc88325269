"""Grafana provisioning: shapes, uid references, `$$` escaping, Sentry fields, env, links.

- datasources/*.yaml: apiVersion 1; every datasource has a name, type and fixed lowercase uid,
  unique; access proxy (``direct`` makes browsers call the backends);
- every ``datasourceUid`` (and ``datasource.uid``) anywhere in provisioning names a provisioned
  uid (a reference by display name, like 'Mimir' for uid mimir, is exactly the bug caught);
- Grafana expands ``$VAR``/``${VAR}`` in provisioning files: a Grafana macro must be written
  ``$${__value.raw}``; each environment variable used must be set by the image or compose;
- the Sentry datasource has exactly the plugin's fields (jsonData url, orgSlug, tlsSkipVerify;
  secureJsonData authToken), and the plugin is installed at a pinned version;
- Prometheus exemplars point at Tempo with the label Tempo's metrics-generator writes; the
  Loki derived field reads trace_id from structured metadata (matcherType label) with an
  anchored label-key regex (``^trace_id$``: Grafana tests it unanchored against every key);
- no setting the pinned Grafana ignores (the Tempo datasource's ``lokiSearch``);
- the dashboard provider reads the folder the Dockerfile copies the dashboards to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from signalbox.checks import _tools
from signalbox.checks._keyschema import get
from signalbox.report import Finding

CHECK = "grafana-provisioning"
_PROVISIONING = Path("grafana/provisioning")
_UID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_BUILTIN_UIDS = {"__expr__", "grafana", "-- Grafana --", "-- Mixed --", "-- Dashboard --"}
# Core datasource types shipped with Grafana; anything else is a plugin that must be installed.
_CORE_TYPES = {
    "prometheus",
    "loki",
    "tempo",
    "jaeger",
    "zipkin",
    "elasticsearch",
    "graphite",
    "influxdb",
    "mysql",
    "grafana-postgresql-datasource",
    "postgres",
    "mssql",
    "cloudwatch",
    "stackdriver",
    "grafana-azure-monitor-datasource",
    "alertmanager",
    "grafana-testdata-datasource",
    "grafana-pyroscope-datasource",
    "opentsdb",
}
_SENTRY_TYPE = "grafana-sentry-datasource"
# grafana/sentry-datasource pkg/plugin/settings.go (v2.2.4): the only settings the plugin reads.
_SENTRY_JSON = {"url", "orgSlug", "tlsSkipVerify"}
_SENTRY_SECURE = {"authToken"}
# $name or ${name}, not preceded by another $ (Grafana's escape).
_DOLLAR = re.compile(r"(?<!\$)\$(\{)?([A-Za-z_][A-Za-z0-9_.]*)")
_TEMPO_DEFAULT_EXEMPLAR_LABEL = "traceID"
# jsonData keys Grafana 13 no longer reads, per datasource type, and why.
_INERT_JSON = {
    "tempo": {
        "lokiSearch": "Grafana 11 removed the Tempo query editor's Loki search tab; search "
        "logs in Loki and follow the trace_id link instead",
    },
}


def run(root: Path) -> list[Finding]:
    folder = root / _PROVISIONING
    if not folder.is_dir():
        return [Finding.failed(CHECK, "no grafana/provisioning folder", str(_PROVISIONING))]
    files = _tools.bundle_files(folder, ["**/*.yaml", "**/*.yml"])
    documents: dict[str, Any] = {}
    findings: list[Finding] = []
    for path in files:
        location = _tools.relative(path, root)
        try:
            documents[location] = _tools.load_yaml(path)
        except ValueError as exc:
            findings.append(Finding.failed(CHECK, str(exc), location))

    datasources: dict[str, dict[str, Any]] = {}
    for location, document in documents.items():
        if "/datasources/" in f"/{location}":
            findings.extend(_datasource_file(location, document, datasources))
        elif "/dashboards/" in f"/{location}":
            findings.extend(_dashboard_provider(root, location, document))
    if not datasources:
        findings.append(
            Finding.failed(CHECK, "no datasource is provisioned", f"{_PROVISIONING}/datasources")
        )

    available_env = _grafana_environment(root)
    for location, document in documents.items():
        findings.extend(_references(location, document, datasources))
        findings.extend(_dollars(location, document, available_env))
    findings.extend(_sentry(root, datasources))
    findings.extend(_links(root, datasources))
    if not any(f.status.value == "failed" for f in findings):
        findings.append(
            Finding.passed(
                CHECK,
                f"{len(files)} files; datasources {', '.join(sorted(datasources))}; "
                "all uid references resolve; macros escaped",
                str(_PROVISIONING),
            )
        )
    return findings


def _datasource_file(
    location: str, document: Any, datasources: dict[str, dict[str, Any]]
) -> list[Finding]:
    if not isinstance(document, dict) or document.get("apiVersion") != 1:
        return [Finding.failed(CHECK, "must be a mapping with apiVersion: 1", location)]
    items = document.get("datasources") or []
    if not isinstance(items, list):
        return [Finding.failed(CHECK, "datasources must be a list", location)]
    findings = []
    names: set[str] = {str(d.get("name")) for d in datasources.values()}
    for index, item in enumerate(items):
        where = f"{location}: datasources[{index}]"
        if not isinstance(item, dict):
            findings.append(Finding.failed(CHECK, "each datasource must be a mapping", where))
            continue
        missing = [key for key in ("name", "type", "uid") if not item.get(key)]
        if missing:
            findings.append(Finding.failed(CHECK, f"missing {', '.join(missing)}", where))
            continue
        uid, name = str(item["uid"]), str(item["name"])
        where = f"{location}: {uid}"
        if not _UID.match(uid):
            findings.append(
                Finding.failed(CHECK, f"uid '{uid}' must be fixed lowercase [a-z0-9_-]", where)
            )
        if uid in datasources or name in names:
            findings.append(Finding.failed(CHECK, f"duplicate uid or name '{uid}'", where))
        if item.get("access", "proxy") != "proxy":
            findings.append(
                Finding.failed(
                    CHECK,
                    f"access: {item.get('access')}; use proxy (direct makes every browser "
                    "call the backend, which is private)",
                    where,
                )
            )
        if item["type"] != _SENTRY_TYPE and not item.get("url"):
            findings.append(Finding.failed(CHECK, "no url", where))
        datasources[uid] = {**item, "_location": location}
        names.add(name)
    return findings


def _dashboard_provider(root: Path, location: str, document: Any) -> list[Finding]:
    if not isinstance(document, dict) or document.get("apiVersion") != 1:
        return [Finding.failed(CHECK, "must be a mapping with apiVersion: 1", location)]
    providers = document.get("providers")
    if not isinstance(providers, list) or not providers:
        return [Finding.failed(CHECK, "no providers list", location)]
    findings = []
    copied = _dockerfile_copy_targets(root)
    for index, provider in enumerate(providers):
        where = f"{location}: providers[{index}]"
        path = get(provider, "options.path")
        if not isinstance(provider, dict) or provider.get("type", "file") != "file" or not path:
            findings.append(Finding.failed(CHECK, "needs type file and options.path", where))
        elif copied and not any(str(path).rstrip("/") == c.rstrip("/") for c in copied):
            findings.append(
                Finding.failed(
                    CHECK,
                    f"options.path {path} is not where grafana/Dockerfile copies the dashboards "
                    f"({', '.join(copied)})",
                    where,
                )
            )
    return findings


def _references(
    location: str, document: Any, datasources: dict[str, dict[str, Any]]
) -> list[Finding]:
    findings = []
    for path, uid in _uid_references(document, ""):
        if uid in datasources or uid in _BUILTIN_UIDS:
            continue
        by_name = [
            u for u, d in datasources.items() if str(d.get("name", "")).lower() == uid.lower()
        ]
        hint = f" (that is the name of uid '{by_name[0]}'; reference the uid)" if by_name else ""
        findings.append(
            Finding.failed(
                CHECK,
                f"references datasource uid '{uid}', which is not provisioned{hint}",
                f"{location}: {path}",
            )
        )
    return findings


def _uid_references(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if key == "datasourceUid" and isinstance(value, str):
                yield child, value
            elif key == "datasource" and isinstance(value, dict) and "uid" in value:
                yield f"{child}.uid", str(value["uid"])
            else:
                yield from _uid_references(value, child)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _uid_references(value, f"{path}[{index}]")


def _dollars(location: str, document: Any, available_env: set[str]) -> list[Finding]:
    findings = []
    for path, text in _strings(document, ""):
        for match in _DOLLAR.finditer(text):
            name = match[2]
            where = f"{location}: {path}"
            if name.startswith("__"):
                written = match[0] + ("}" if match[1] else "")
                findings.append(
                    Finding.failed(
                        CHECK,
                        f"Grafana macro {written} is not escaped: Grafana expands it from the "
                        f"environment while provisioning (to nothing); write ${written}",
                        where,
                    )
                )
            elif name not in available_env:
                findings.append(
                    Finding.failed(
                        CHECK,
                        f"${name} is set neither in grafana/Dockerfile (ENV) nor in the grafana "
                        "service of docker-compose.yml: Grafana would provision an empty value "
                        f"(a literal dollar is written $${name})",
                        where,
                    )
                )
    return findings


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")


def _sentry(root: Path, datasources: dict[str, dict[str, Any]]) -> list[Finding]:
    findings = []
    sentries = {u: d for u, d in datasources.items() if d.get("type") == _SENTRY_TYPE}
    for uid, item in sentries.items():
        where = f"{item['_location']}: {uid}"
        json_data = item.get("jsonData") or {}
        secure = item.get("secureJsonData") or {}
        extra = sorted(set(json_data) - _SENTRY_JSON)
        if extra:
            findings.append(
                Finding.failed(
                    CHECK,
                    f"jsonData {', '.join(extra)} unknown to {_SENTRY_TYPE} (it reads only "
                    f"{', '.join(sorted(_SENTRY_JSON))})",
                    where,
                )
            )
        if "orgSlug" not in json_data:
            findings.append(Finding.failed(CHECK, "jsonData.orgSlug is required", where))
        url = str(json_data.get("url") or "")
        if url and "$" not in url and not re.match(r"^https?://[^/]+/?$", url):
            findings.append(
                Finding.failed(CHECK, f"jsonData.url '{url}' must be an origin only", where)
            )
        if set(secure) != _SENTRY_SECURE:
            findings.append(
                Finding.failed(
                    CHECK,
                    f"secureJsonData must hold exactly authToken (has {sorted(secure) or 'none'})",
                    where,
                )
            )
    plugin_types = {d.get("type") for d in datasources.values()} - _CORE_TYPES
    dockerfile = root / "grafana" / "Dockerfile"
    text = dockerfile.read_text() if dockerfile.is_file() else ""
    for plugin in sorted(str(p) for p in plugin_types):
        pinned = re.search(
            rf"plugins\s+install\s+{re.escape(plugin)}\s+\d+\.\d+\.\d+|{re.escape(plugin)}@\d+\.\d+\.\d+",
            text,
        )
        if not pinned:
            findings.append(
                Finding.failed(
                    CHECK,
                    f"plugin {plugin} is not installed at a pinned version in grafana/Dockerfile",
                    "grafana/Dockerfile",
                )
            )
    return findings


def _links(root: Path, datasources: dict[str, dict[str, Any]]) -> list[Finding]:
    findings = []
    by_type: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for uid, item in datasources.items():
        by_type.setdefault(str(item.get("type")), []).append((uid, item))
    tempo_uids = {uid for uid, _ in by_type.get("tempo", [])}
    label = _tempo_exemplar_label(root)
    for uid, item in by_type.get("prometheus", []):
        where = f"{item['_location']}: {uid}"
        destinations = get(item, "jsonData.exemplarTraceIdDestinations", []) or []
        to_tempo = [
            d for d in destinations if isinstance(d, dict) and d.get("datasourceUid") in tempo_uids
        ]
        if tempo_uids and not to_tempo:
            findings.append(Finding.failed(CHECK, "no exemplarTraceIdDestinations to Tempo", where))
        elif tempo_uids and label not in {d.get("name") for d in to_tempo}:
            findings.append(
                Finding.failed(
                    CHECK,
                    "exemplar destinations read "
                    f"{sorted(str(d.get('name')) for d in to_tempo)}, but "
                    f"Tempo's metrics-generator labels exemplars '{label}' "
                    "(overrides.defaults.metrics_generator.trace_id_label_name)",
                    where,
                )
            )
    for uid, item in by_type.get("loki", []):
        for field in get(item, "jsonData.derivedFields", []) or []:
            if not isinstance(field, dict):
                continue
            where = f"{item['_location']}: {uid}"
            if field.get("datasourceUid") in tempo_uids and field.get("matcherType") != "label":
                findings.append(
                    Finding.failed(
                        CHECK,
                        f"derived field {field.get('name')} uses a regex over the line; OTLP "
                        "logs carry trace_id as structured metadata: use matcherType: label",
                        where,
                    )
                )
            if field.get("matcherType") == "label" and not _anchored(field.get("matcherRegex")):
                findings.append(
                    Finding.failed(
                        CHECK,
                        f"derived field {field.get('name')}: matcherRegex "
                        f"{field.get('matcherRegex')!r} is not anchored; Grafana links the "
                        "first label key it matches anywhere in (trace_id also matches "
                        "parent_trace_id): write ^trace_id$",
                        where,
                    )
                )
    for uid, item in datasources.items():
        for key, why in _INERT_JSON.get(str(item.get("type")), {}).items():
            if key in (item.get("jsonData") or {}):
                findings.append(
                    Finding.failed(
                        CHECK,
                        f"jsonData.{key} does nothing: {why}; remove it",
                        f"{item['_location']}: {uid}",
                    )
                )
    return findings


def _anchored(regex: Any) -> bool:
    """``^...$`` as Grafana sees it: provisioning turns ``$$`` into ``$``."""
    text = str(regex or "").replace("$$", "$")
    return text.startswith("^") and text.endswith("$") and not text.endswith("\\$")


def _tempo_exemplar_label(root: Path) -> str:
    path = root / "tempo" / "tempo.yaml"
    try:
        document = _tools.load_yaml(path) if path.is_file() else None
    except ValueError:
        document = None
    value = get(document, "overrides.defaults.metrics_generator.trace_id_label_name")
    return str(value) if value else _TEMPO_DEFAULT_EXEMPLAR_LABEL


def _grafana_environment(root: Path) -> set[str]:
    """Variables Grafana has at provisioning time: Dockerfile ENV plus the compose service's."""
    names: set[str] = set()
    dockerfile = root / "grafana" / "Dockerfile"
    if dockerfile.is_file():
        text = re.sub(r"\\\n", " ", dockerfile.read_text())
        for line in text.splitlines():
            if re.match(r"^\s*ENV\s", line):
                names.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", line))
                if match := re.match(r"^\s*ENV\s+([A-Za-z_][A-Za-z0-9_]*)\s+[^=]*$", line):
                    names.add(match[1])
    compose = root / "docker-compose.yml"
    if compose.is_file():
        try:
            document = _tools.load_yaml(compose)
        except ValueError:
            document = None
        environment = get(document, "services.grafana.environment", {}) or {}
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        names.update(str(k) for k in environment)
    return names


def _dockerfile_copy_targets(root: Path) -> list[str]:
    dockerfile = root / "grafana" / "Dockerfile"
    if not dockerfile.is_file():
        return []
    return re.findall(r"^\s*COPY\s+(?:--\S+\s+)*dashboards/?\s+(\S+)", dockerfile.read_text(), re.M)
