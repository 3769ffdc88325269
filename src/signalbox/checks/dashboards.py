"""Dashboards and rules: schema, metadata, datasource references, variables and queries.

Every dashboard under grafana/dashboards must validate against Grafana's dashboard JSON schema
(generated from the pinned npm @grafana/schema, tools/querycheck/schema), have a uid, title,
tags and a folder, reference only provisioned datasource uids and defined variables. Every
PromQL, LogQL and TraceQL expression must parse with Grafana's own lezer grammars, every Sentry
query must use a query type and fields the plugin defines (a variable query must not reference a
multi-value variable, which the plugin cannot interpolate there; a count of Sentry issues must
not be the row count of the plugin's one page of issues), every metric must be one something
in the stack exposes, and every Loki label one the services send. Alert and recording rules in
prometheus/rules get the PromQL and metric-name checks too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from signalbox.checks import _metrics
from signalbox.checks._querycheck import Batch, QueryCheckUnavailable, QueryFacts
from signalbox.checks._querycheck import run as run_querycheck
from signalbox.report import Finding

Json = dict[str, Any]

_UID_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# $name, ${name}, ${name:format}, ${name.path}, [[name]] (Grafana's variable syntaxes).
_VAR_RE = re.compile(r"\$\{(\w+)(?:[.:][^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
# Grafana's global variables and link macros.
# https://grafana.com/docs/grafana/latest/dashboards/variables/add-template-variables/#global-variables
_BUILTIN_VARS = frozenset(
    {
        "__interval",
        "__interval_ms",
        "__rate_interval",
        "__rate_interval_ms",
        "__range",
        "__range_s",
        "__range_ms",
        "__auto",
        "__from",
        "__to",
        "__now",
        "__timeFilter",
        "timeFilter",
        "__timezone",
        "__dashboard",
        "__org",
        "__user",
        "__name",
        "__all",
        "__url",
        "__url_time_range",
        "__value",
        "__data",
        "__field",
        "__series",
        "__trace",
        "__span",
        "__tags",
    }
)
# A variable's saved selection and options hold values ($__all), not references.
_VARIABLE_STATE_RE = re.compile(r"^/templating/list/\d+/(current|options)(/|$)")
_SPECIAL_DATASOURCES = frozenset({"-- Grafana --", "-- Mixed --", "-- Dashboard --", "grafana"})
# Sample values a query is parsed with (syntax only; the real-run test uses its own values).
_SYNTAX_VALUES = {
    "__interval": "1m",
    "__rate_interval": "1m",
    "__range": "1h",
    "__auto": "1m",
    "__interval_ms": "60000",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
_TRACE_LOOKUP_RE = re.compile(r"^\s*(\$\{?\w+\}?|[0-9A-Fa-f]{1,32})\s*$")
_TEMPO_QUERY_TYPES = frozenset({"traceql", "traceqlSearch", "serviceMap"})

# grafana-sentry-datasource 2.2: query fields per type (pkg/query/model.go, and which fields each
# handler in pkg/handlers/handlers.go reads); variable queries from src/types.ts.
_SENTRY_COMMON = frozenset({"refId", "datasource", "queryType", "hide", "key", "datasourceId"})
_EVENTS_FIELDS = frozenset(
    {
        "projectIds",
        "environments",
        "eventsQuery",
        "eventsFields",
        "eventsSort",
        "eventsSortDirection",
        "eventsLimit",
    }
)
_EVENTS_STATS_FIELDS = frozenset(
    {
        "projectIds",
        "environments",
        "eventsStatsQuery",
        "eventsStatsYAxis",
        "eventsStatsGroups",
        "eventsStatsSort",
        "eventsStatsLimit",
    }
)
_SENTRY_FIELDS: dict[str, frozenset[str]] = {
    "issues": frozenset({"projectIds", "environments", "issuesQuery", "issuesSort", "issuesLimit"}),
    "events": _EVENTS_FIELDS,
    "spans": _EVENTS_FIELDS,
    "eventsStats": _EVENTS_STATS_FIELDS,
    "spansStats": _EVENTS_STATS_FIELDS,
    "metrics": frozenset(
        {
            "projectIds",
            "environments",
            "metricsField",
            "metricsQuery",
            "metricsGroupBy",
            "metricsSort",
            "metricsOrder",
            "metricsLimit",
        }
    ),
    "statsV2": frozenset(
        {
            "projectIds",
            "statsCategory",
            "statsFields",
            "statsGroupBy",
            "statsInterval",
            "statsOutcome",
            "statsReason",
        }
    ),
}
_SENTRY_LIST_FIELDS = frozenset(
    {
        "projectIds",
        "environments",
        "eventsFields",
        "eventsStatsYAxis",
        "eventsStatsGroups",
        "statsCategory",
        "statsFields",
        "statsGroupBy",
        "statsOutcome",
        "statsReason",
    }
)
_SENTRY_INT_FIELDS = frozenset({"issuesLimit", "eventsLimit", "eventsStatsLimit", "metricsLimit"})
_SENTRY_ENUMS: dict[str, frozenset[str]] = {
    "issuesSort": frozenset({"inbox", "new", "date", "priority", "freq", "user"}),
    "eventsSortDirection": frozenset({"asc", "desc"}),
    "metricsOrder": frozenset({"asc", "desc"}),
}
_SENTRY_VARIABLE_FIELDS: dict[str, frozenset[str]] = {
    "projects": frozenset({"type", "teamSlug"}),
    "environments": frozenset({"type", "projectIds"}),
    "teams": frozenset({"type"}),
}
_SENTRY_TYPE = "grafana-sentry-datasource"


@dataclass(frozen=True)
class PanelQuery:
    """One query of one panel (or annotation / variable) and where it lives."""

    dashboard: str
    location: str
    lang: str  # promql | logql | traceql | trace-lookup | servicemap | sentry
    expr: str
    target: Json


def run(root: Path) -> list[Finding]:
    findings: list[Finding] = []
    dashboards = _load_dashboards(root, findings)
    datasources = _provisioned_datasources(root, findings)
    providers = _providers(root)
    rules = _rule_exprs(root, findings)
    if not dashboards and not rules:
        return findings
    for path, doc in dashboards.items():
        findings += _metadata(path, doc, providers)
        if datasources is not None:
            findings += _datasource_refs(path, doc, datasources)
        findings += _variables(path, doc)
        findings += _sentry(path, doc)
    findings += _queries(root, dashboards, rules)
    return findings


# --- loading -------------------------------------------------------------------------------


def _load_dashboards(root: Path, findings: list[Finding]) -> dict[str, Json]:
    base = root / "grafana" / "dashboards"
    files = sorted(base.rglob("*.json")) if base.is_dir() else []
    if not files:
        findings.append(
            Finding.failed("dashboards.files", "no dashboard JSON files", "grafana/dashboards")
        )
        return {}
    loaded: dict[str, Json] = {}
    for file in files:
        rel = file.relative_to(root).as_posix()
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            findings.append(Finding.failed("dashboards.files", f"not valid JSON: {exc}", rel))
            continue
        if not isinstance(doc, dict):
            findings.append(Finding.failed("dashboards.files", "not a JSON object", rel))
            continue
        loaded[rel] = doc
    return loaded


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # the provisioning check of `signalbox validate` reports unreadable YAML


def _provisioned_datasources(root: Path, findings: list[Finding]) -> dict[str, str] | None:
    """uid -> type of every provisioned datasource, or None when there is no provisioning."""
    files = _yaml_files(root / "grafana" / "provisioning" / "datasources")
    found: dict[str, str] = {}
    for file in files:
        doc = _load_yaml(file)
        for ds in (doc or {}).get("datasources") or [] if isinstance(doc, dict) else []:
            if isinstance(ds, dict) and isinstance(ds.get("uid"), str):
                found[ds["uid"]] = str(ds.get("type", ""))
    if not found:
        findings.append(
            Finding.failed(
                "dashboards.datasources",
                "no provisioned datasource with a uid: dashboard references cannot resolve",
                "grafana/provisioning/datasources",
            )
        )
        return None
    return found


def _providers(root: Path) -> list[Json]:
    providers: list[Json] = []
    for file in _yaml_files(root / "grafana" / "provisioning" / "dashboards"):
        doc = _load_yaml(file)
        if isinstance(doc, dict):
            providers += [p for p in doc.get("providers") or [] if isinstance(p, dict)]
    return providers


def _rule_exprs(root: Path, findings: list[Finding]) -> list[tuple[str, str, str]]:
    """(location, expr, recorded name or '') for every rule in prometheus/rules."""
    rules: list[tuple[str, str, str]] = []
    for file in _yaml_files(root / "prometheus" / "rules"):
        rel = file.relative_to(root).as_posix()
        doc = _load_yaml(file)
        if not isinstance(doc, dict):
            findings.append(Finding.failed("rules.files", "not a YAML rule file", rel))
            continue
        for group in doc.get("groups") or []:
            for rule in (group or {}).get("rules") or []:
                if not isinstance(rule, dict) or not isinstance(rule.get("expr"), str):
                    continue
                name = rule.get("alert") or rule.get("record") or "?"
                rules.append((f"{rel} {name}", rule["expr"], rule.get("record") or ""))
    return rules


# --- metadata, datasources, variables ------------------------------------------------------


def _metadata(path: str, doc: Json, providers: list[Json]) -> list[Finding]:
    problems = []
    uid = doc.get("uid")
    if not isinstance(uid, str) or not _UID_RE.match(uid):
        problems.append("uid missing or not 1-40 characters of letters, digits, - and _")
    if not isinstance(doc.get("title"), str) or not doc["title"].strip():
        problems.append("title missing")
    tags = doc.get("tags")
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
        problems.append("tags missing (a non-empty list of strings)")
    folder = _folder(path, providers)
    if not folder:
        problems.append(
            "no folder: put the file in a sub-folder of grafana/dashboards (provider with "
            "foldersFromFilesStructure) or give its provider a `folder`"
        )
    if problems:
        return [Finding.failed("dashboards.metadata", "; ".join(problems), path)]
    return [Finding.passed("dashboards.metadata", f"uid {uid}, folder {folder!r}", path)]


def _folder(path: str, providers: list[Json]) -> str:
    parts = Path(path).parts  # grafana/dashboards/<folder>/.../<file>.json
    in_subfolder = len(parts) > 3
    for provider in providers:
        options = provider.get("options") or {}
        if in_subfolder and options.get("foldersFromFilesStructure"):
            return parts[2]
        if provider.get("folder"):
            return str(provider["folder"])
    return ""


def _walk(node: Any, trail: str = "") -> Iterator[tuple[str, str, Any]]:
    """Yield (json path, key, value) for every key of every object below node."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{trail}/{key}"
            yield here, key, value
            yield from _walk(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{trail}/{index}")


def _variable_names(doc: Json) -> dict[str, Json]:
    variables = (doc.get("templating") or {}).get("list") or []
    return {v["name"]: v for v in variables if isinstance(v, dict) and "name" in v}


def _datasource_refs(path: str, doc: Json, provisioned: dict[str, str]) -> list[Finding]:
    variables = _variable_names(doc)
    problems = []
    count = 0
    for where, key, value in _walk(doc):
        if key == "datasource" and value is not None:
            count += 1
            if isinstance(value, str):
                problems.append(f"{where}: datasource given by name {value!r}; reference a uid")
                continue
            if not isinstance(value, dict):
                problems.append(f"{where}: datasource is not an object")
                continue
            uid, kind = value.get("uid"), value.get("type")
            problems += _check_ref(where, uid, kind, provisioned, variables)
        elif key == "datasourceUid" and isinstance(value, str):
            count += 1
            problems += _check_ref(where, value, None, provisioned, variables)
    if problems:
        return [Finding.failed("dashboards.datasources", p, path) for p in problems]
    return [Finding.passed("dashboards.datasources", f"{count} references resolve", path)]


def _check_ref(
    where: str, uid: Any, kind: Any, provisioned: dict[str, str], variables: dict[str, Json]
) -> list[str]:
    if not isinstance(uid, str) or not uid:
        return [f"{where}: datasource without a uid"]
    if uid in _SPECIAL_DATASOURCES:
        return []
    match = _VAR_RE.fullmatch(uid)
    if match:
        name = next(g for g in match.groups() if g)
        if variables.get(name, {}).get("type") == "datasource":
            return []
        return [f"{where}: datasource uid {uid} is not a datasource variable"]
    if uid not in provisioned:
        near = [u for u in provisioned if u.lower() == uid.lower()]
        hint = f" (uids are case-sensitive: did you mean {near[0]!r}?)" if near else ""
        return [
            f"{where}: datasource uid {uid!r} is not provisioned "
            f"(provisioned: {', '.join(sorted(provisioned))}){hint}"
        ]
    if kind and provisioned[uid] and kind != provisioned[uid]:
        return [f"{where}: datasource {uid!r} is of type {provisioned[uid]!r}, not {kind!r}"]
    return []


def _variables(path: str, doc: Json) -> list[Finding]:
    defined = set(_variable_names(doc))
    used: dict[str, str] = {}
    for where, _key, value in _walk(doc):
        if isinstance(value, str) and not _VARIABLE_STATE_RE.match(where):
            for match in _VAR_RE.finditer(value):
                name = next(g for g in match.groups() if g)
                used.setdefault(name, where)
    undefined = {n: w for n, w in used.items() if n not in defined and n not in _BUILTIN_VARS}
    if undefined:
        return [
            Finding.failed(
                "dashboards.variables", f"${name} is used at {where} but not defined", path
            )
            for name, where in sorted(undefined.items())
        ]
    return [Finding.passed("dashboards.variables", f"{len(used)} variables, all defined", path)]


# --- queries -------------------------------------------------------------------------------


def panel_queries(doc: Json) -> list[PanelQuery]:
    """Every query of a dashboard: panel targets, annotation and variable queries."""
    uid = str(doc.get("uid", "?"))
    out: list[PanelQuery] = []

    def add(location: str, target: Json, default_ds: Any) -> None:
        ds = target.get("datasource") if isinstance(target.get("datasource"), dict) else default_ds
        kind = ds.get("type") if isinstance(ds, dict) else None
        if kind == "prometheus" and isinstance(target.get("expr"), str):
            out.append(PanelQuery(uid, location, "promql", target["expr"], target))
        elif kind == "loki" and isinstance(target.get("expr"), str):
            out.append(PanelQuery(uid, location, "logql", target["expr"], target))
        elif kind == "tempo":
            query_type = target.get("queryType", "")
            query = str(target.get("query", ""))
            if query_type == "serviceMap":
                out.append(PanelQuery(uid, location, "servicemap", "", target))
            elif query_type == "traceql" and _TRACE_LOOKUP_RE.match(query):
                out.append(PanelQuery(uid, location, "trace-lookup", query, target))
            else:
                out.append(PanelQuery(uid, location, "traceql", query, target))
        elif kind == _SENTRY_TYPE:
            out.append(PanelQuery(uid, location, "sentry", "", target))

    for index, panel in enumerate(_all_panels(doc)):
        title = panel.get("title") or f"panel {index}"
        for target in panel.get("targets") or []:
            if isinstance(target, dict):
                add(f"{title} [{target.get('refId', '?')}]", target, panel.get("datasource"))
    for annotation in (doc.get("annotations") or {}).get("list") or []:
        if isinstance(annotation, dict) and annotation.get("expr"):
            add(f"annotation {annotation.get('name')}", annotation, annotation.get("datasource"))
    for variable in (doc.get("templating") or {}).get("list") or []:
        if isinstance(variable, dict) and variable.get("type") == "query":
            query = variable.get("query")
            ds = variable.get("datasource")
            kind = ds.get("type") if isinstance(ds, dict) else None
            location = f"variable {variable.get('name')}"
            if kind == "prometheus" and isinstance(query, str):
                inner = _prometheus_variable_expr(query)
                if inner:
                    out.append(PanelQuery(uid, location, "promql", inner, variable))
            elif kind == _SENTRY_TYPE:
                out.append(PanelQuery(uid, location, "sentry-variable", "", variable))
            elif kind == "loki" and isinstance(query, dict) and query.get("label"):
                # Label values of one label: that label must be one the services send.
                out.append(PanelQuery(uid, location, "loki-label", str(query["label"]), variable))
    return out


def _all_panels(doc: Json) -> Iterator[Json]:
    for panel in doc.get("panels") or []:
        if isinstance(panel, dict):
            yield panel
            for nested in panel.get("panels") or []:  # collapsed rows
                if isinstance(nested, dict):
                    yield nested


def _prometheus_variable_expr(query: str) -> str:
    """The PromQL inside label_values(<selector>, label) / query_result(<expr>), if any."""
    query = query.strip()
    match = re.fullmatch(r"label_values\((.*),\s*\w+\s*\)", query, re.DOTALL)
    if match:
        return match.group(1)
    match = re.fullmatch(r"query_result\((.*)\)", query, re.DOTALL)
    return match.group(1) if match else ""


def interpolate(text: str, values: dict[str, str]) -> str:
    """Replace Grafana variables with values (unknown ones with ``x``)."""

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        return values.get(name, "x")

    return _VAR_RE.sub(value, text)


def _queries(
    root: Path, dashboards: dict[str, Json], rules: list[tuple[str, str, str]]
) -> list[Finding]:
    findings: list[Finding] = []
    batch = Batch()
    where: dict[str, tuple[str, str, str]] = {}  # id -> (file, location, lang)
    for path, doc in dashboards.items():
        batch.dashboard(path, doc)
        for number, query in enumerate(panel_queries(doc)):
            key = f"{path}#{number}"
            if query.lang in ("promql", "logql", "traceql"):
                batch.query(key, query.lang, interpolate(query.expr, _SYNTAX_VALUES))
                where[key] = (path, query.location, query.lang)
            elif query.lang == "trace-lookup" and not _trace_lookup_ok(query.expr, doc):
                findings.append(
                    Finding.failed(
                        "dashboards.queries",
                        f"{query.location}: {query.expr!r} is neither TraceQL nor a trace id "
                        "variable",
                        path,
                    )
                )
            elif query.lang == "loki-label" and query.expr not in _metrics.LOKI_INDEX_LABELS:
                findings.append(
                    Finding.failed(
                        "dashboards.loki-labels",
                        f"{query.location}: label {query.expr!r} is not an index label the "
                        "services send",
                        path,
                    )
                )
            if query.lang in ("servicemap", "trace-lookup", "loki-label"):
                continue
            tempo_type = query.target.get("queryType")
            if query.lang == "traceql" and tempo_type not in _TEMPO_QUERY_TYPES:
                findings.append(
                    Finding.failed(
                        "dashboards.queries",
                        f"{query.location}: Tempo queryType {tempo_type!r} is not one of "
                        f"{', '.join(sorted(_TEMPO_QUERY_TYPES))}",
                        path,
                    )
                )
    recorded = {name for _, _, name in rules if name}
    for number, (location, expr, _) in enumerate(rules):
        key = f"rule#{number}"
        batch.query(key, "promql", expr)
        file, _, name = location.partition(" ")
        where[key] = (file, name, "promql")
    try:
        facts, schema_errors = run_querycheck(root, batch)
    except QueryCheckUnavailable as exc:
        return [*findings, Finding.failed("dashboards.queries", str(exc), "tools/querycheck")]

    for path, errors in schema_errors.items():
        if errors:
            findings += [Finding.failed("dashboards.schema", e, path) for e in errors[:10]]
        else:
            findings.append(
                Finding.passed("dashboards.schema", "valid against @grafana/schema", path)
            )
    known_metrics = _metrics.KNOWN_METRICS | recorded
    counts = {"syntax": 0, "metrics": 0, "labels": 0}
    for key, fact in facts.items():
        file, location, lang = where[key]
        findings += _query_findings(file, location, lang, fact, known_metrics, counts)
    findings.append(
        Finding.passed(
            "dashboards.queries",
            f"{counts['syntax']} PromQL/LogQL/TraceQL expressions parse; {counts['metrics']} "
            f"metric and {counts['labels']} Loki label references are known",
        )
    )
    return findings


def _query_findings(
    file: str,
    location: str,
    lang: str,
    fact: QueryFacts,
    known_metrics: frozenset[str] | set[str],
    counts: dict[str, int],
) -> list[Finding]:
    out: list[Finding] = []
    for error in fact.errors:
        out.append(Finding.failed("dashboards.queries", f"{location}: {error}", file))
    if not fact.errors:
        counts["syntax"] += 1
    unknown = _metrics.unknown(fact.metrics, known_metrics)
    for name in unknown:
        out.append(
            Finding.failed(
                "dashboards.metrics",
                f"{location}: metric {name!r} is exposed by nothing in the stack "
                "(signalbox/checks/_metrics.py lists what is)",
                file,
            )
        )
    counts["metrics"] += len(fact.metrics) - len(unknown)
    if lang == "logql":
        bad_stream = _metrics.unknown(fact.stream_labels, _metrics.LOKI_INDEX_LABELS)
        bad_filter = _metrics.unknown(
            fact.filter_labels, _metrics.LOKI_INDEX_LABELS | _metrics.LOKI_STRUCTURED_METADATA
        )
        for name in bad_stream:
            out.append(
                Finding.failed(
                    "dashboards.loki-labels",
                    f"{location}: stream label {name!r} is not an index label the services send "
                    f"({', '.join(sorted(_metrics.LOKI_INDEX_LABELS))})",
                    file,
                )
            )
        for name in bad_filter:
            out.append(
                Finding.failed(
                    "dashboards.loki-labels",
                    f"{location}: label {name!r} is neither an index label nor structured "
                    "metadata of the services' OTLP logs",
                    file,
                )
            )
        counts["labels"] += len(fact.stream_labels) + len(fact.filter_labels)
        counts["labels"] -= len(bad_stream) + len(bad_filter)
    return out


def _trace_lookup_ok(expr: str, doc: Json) -> bool:
    match = _VAR_RE.fullmatch(expr.strip())
    if not match:
        return bool(re.fullmatch(r"[0-9A-Fa-f]{16,32}", expr.strip()))
    name = next(g for g in match.groups() if g)
    return name in _variable_names(doc)


# --- Sentry --------------------------------------------------------------------------------


def _sentry(path: str, doc: Json) -> list[Finding]:
    problems: list[str] = []
    count = 0
    variables = _variable_names(doc)
    for query in panel_queries(doc):
        if query.lang == "sentry":
            count += 1
            problems += [f"{query.location}: {p}" for p in _sentry_target(query.target)]
        elif query.lang == "sentry-variable":
            count += 1
            problems += [
                f"{query.location}: {p}" for p in _sentry_variable(query.target, variables)
            ]
    for index, panel in enumerate(_all_panels(doc)):
        problems += [
            f"{panel.get('title') or f'panel {index}'}: {p}" for p in _sentry_issue_counts(panel)
        ]
    if problems:
        return [Finding.failed("dashboards.sentry", p, path) for p in problems]
    if not count:
        return []
    return [
        Finding.passed("dashboards.sentry", f"{count} Sentry queries use the plugin's fields", path)
    ]


def _sentry_target(target: Json) -> list[str]:
    query_type = target.get("queryType")
    if query_type not in _SENTRY_FIELDS:
        return [
            f"Sentry queryType {query_type!r} does not exist "
            f"(valid: {', '.join(sorted(_SENTRY_FIELDS))})"
        ]
    allowed = _SENTRY_FIELDS[query_type] | _SENTRY_COMMON
    problems = [
        f"field {key!r} is not a {query_type} query field of the Sentry plugin"
        for key in sorted(set(target) - allowed)
    ]
    for key in sorted(set(target) & _SENTRY_LIST_FIELDS):
        if not isinstance(target[key], list) or not all(isinstance(v, str) for v in target[key]):
            problems.append(f"{key} must be a list of strings")
    for key in sorted(set(target) & _SENTRY_INT_FIELDS):
        if not isinstance(target[key], int) or isinstance(target[key], bool):
            problems.append(f"{key} must be an integer")
    for key, valid in _SENTRY_ENUMS.items():
        if key in target and target[key] not in valid:
            problems.append(f"{key} {target[key]!r} is not one of {', '.join(sorted(valid))}")
    if query_type in ("spans", "spansStats") and "$" in json.dumps(target):
        problems.append(f"{query_type} queries are not interpolated: variables stay literal")
    return problems


def _sentry_variable(variable: Json, variables: dict[str, Json]) -> list[str]:
    query = variable.get("query")
    if not isinstance(query, dict):
        return ["Sentry variable query must be an object {type: projects|environments|teams}"]
    kind = query.get("type")
    if kind not in _SENTRY_VARIABLE_FIELDS:
        return [f"Sentry variable type {kind!r} is not projects, environments or teams"]
    extra = sorted(set(query) - _SENTRY_VARIABLE_FIELDS[kind] - {"refId"})
    problems = [f"field {key!r} is not a {kind} variable field" for key in extra]
    # Variable queries go through getTemplateSrv().replace(value) with no format (the plugin's
    # src/app/replace.ts, applyTemplateVariablesToVariableQuery), and each projectId is then
    # compared whole with a project id (src/app/utils.ts): several values, or All, arrive as
    # one string such as '{1,2}' and match nothing.
    for key in sorted(query):
        values = query[key] if isinstance(query[key], list) else [query[key]]
        for name in _referenced(v for v in values if isinstance(v, str)):
            referenced = variables.get(name, {})
            if referenced.get("multi") or referenced.get("includeAll"):
                problems.append(
                    f"{key} references ${name}, which can hold several values (multi-value or "
                    "All): the plugin interpolates variable queries without a format, so two "
                    "or more become one string like '{1,2}' that matches nothing and the list "
                    f"comes back empty; leave {key} empty or use a single-value variable"
                )
    return problems


def _referenced(texts: Iterable[str]) -> list[str]:
    """Names of the variables referenced in ``texts``, in order."""
    return [next(g for g in m.groups() if g) for t in texts for m in _VAR_RE.finditer(t)]


# Reducers that count rows (Grafana's fieldReducers ids).
_COUNT_REDUCERS = frozenset({"count", "distinctCount"})


def _sentry_issue_counts(panel: Json) -> list[str]:
    """A panel that counts the rows of an ``issues`` query must say the count is capped.

    The plugin fetches one page of issues (pkg/sentry/issues.go: one request, no cursor), so a
    row count stops at the page size. Counts come from aggregates (an ``events`` query with
    ``count_unique(issue)``, ``eventsStats`` with ``count()``); a panel that counts a page must
    name its size (the ``issuesLimit``) in its title.
    """
    if not _counts_rows(panel):
        return []
    default = panel.get("datasource")
    title = str(panel.get("title") or "")
    problems = []
    for target in panel.get("targets") or []:
        if not isinstance(target, dict) or target.get("queryType") != "issues":
            continue
        ds = target.get("datasource") if isinstance(target.get("datasource"), dict) else default
        if not isinstance(ds, dict) or ds.get("type") != _SENTRY_TYPE:
            continue
        limit = target.get("issuesLimit")
        if isinstance(limit, int) and re.search(rf"\b{limit}\b", title):
            continue
        problems.append(
            f"counts the rows of Sentry issues query {target.get('refId', '?')}, which returns "
            "one page (the plugin does not paginate): count with an aggregate (an events query "
            "with eventsFields ['count_unique(issue)'], or eventsStats), or put the page size "
            "(issuesLimit) in the title"
        )
    return problems


def _counts_rows(panel: Json) -> bool:
    reduce = (panel.get("options") or {}).get("reduceOptions") or {}
    if not reduce.get("values") and _COUNT_REDUCERS & set(reduce.get("calcs") or []):
        return True
    for transformation in panel.get("transformations") or []:
        options = (transformation or {}).get("options") or {}
        if transformation.get("id") == "groupBy":
            fields = (options.get("fields") or {}).values()
            if any(_COUNT_REDUCERS & set((f or {}).get("aggregations") or []) for f in fields):
                return True
        if transformation.get("id") == "reduce" and _COUNT_REDUCERS & set(
            options.get("reducers") or []
        ):
            return True
    return False
