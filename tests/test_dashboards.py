"""Dashboards as code and the dashboard/query checks of `signalbox validate`.

Fixtures: tests/fixtures/dashboards/valid is a small bundle that passes every check; each file
in invalid/ breaks exactly one thing and is dropped into a copy of that bundle.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from signalbox.checks import dashboards as check
from signalbox.dashboards import build_all, render
from signalbox.dashboards._kit import INVESTIGATION_UID
from signalbox.report import Finding, Status

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "dashboards"


def _failed(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status is Status.FAILED]


def _bundle(tmp_path: Path, dashboard: Path | None = None, folder: str = "Services") -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(FIXTURES / "valid", root)
    if dashboard is not None:
        target = root / "grafana" / "dashboards" / folder
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(dashboard, target / dashboard.name)
    return root


def test_committed_dashboards_are_the_generator_output() -> None:
    generated = build_all()
    committed = {
        p.relative_to(REPO / "grafana" / "dashboards").as_posix(): p
        for p in (REPO / "grafana" / "dashboards").rglob("*.json")
    }
    assert set(committed) == set(generated), "run `python -m signalbox.dashboards`"
    for relative, dashboard in generated.items():
        assert committed[relative].read_text(encoding="utf-8") == render(dashboard), (
            f"{relative} differs from the generator: run `python -m signalbox.dashboards`"
        )


def test_the_repository_dashboards_and_rules_pass_every_check() -> None:
    findings = check.run(REPO)
    assert _failed(findings) == []
    schema_passed = {f.location for f in findings if f.check == "dashboards.schema"}
    assert len(schema_passed) == len(build_all())


def test_the_issue_asks_for_these_dashboards_in_folders() -> None:
    titles = {path.split("/")[0] + ": " + d["title"] for path, d in build_all().items()}
    assert titles == {
        "Errors: Sentry error tracking",
        "Errors: Error investigation",
        "Services: Service overview",
        "Services: API monitor",
        "Telemetry: Logs",
        "Telemetry: Traces",
        "Platform: Stack health",
    }
    sentry = build_all()["Errors/sentry-errors.json"]
    assert sentry["refresh"] == "10s"
    assert sentry["time"] == {"from": "now-24h", "to": "now"}
    assert [v["name"] for v in sentry["templating"]["list"]] == ["project", "environment"]


def test_the_sentry_dashboard_passes_the_sentry_checks_with_several_projects(
    tmp_path: Path,
) -> None:
    """$project is multi-value with All: the Environment list must still come back, and the
    counts must not stop at one page of issues."""
    sentry = build_all()["Errors/sentry-errors.json"]
    project = next(v for v in sentry["templating"]["list"] if v["name"] == "project")
    assert project["multi"] and project["includeAll"]
    root = _bundle(tmp_path)
    target = root / "grafana" / "dashboards" / "Errors" / "sentry-errors.json"
    target.parent.mkdir(parents=True)
    target.write_text(render(sentry), encoding="utf-8")
    findings = [
        f for f in check.run(root) if f.location == "grafana/dashboards/Errors/sentry-errors.json"
    ]
    assert _failed(findings) == []
    assert any(f.check == "dashboards.sentry" for f in findings)


def _links_of(dashboard: dict[str, Any], field: str) -> list[str]:
    urls = []
    for panel in dashboard["panels"]:
        for override in panel["fieldConfig"]["overrides"]:
            if override["matcher"]["options"] == field:
                for prop in override["properties"]:
                    if prop["id"] == "links":
                        urls += [link["url"] for link in prop["value"]]
    return urls


def _trace_id_columns(panel: dict[str, Any]) -> set[str]:
    """Columns of a table panel that show trace ids, by datasource."""
    if panel["type"] != "table":
        return set()
    uid = panel["datasource"]["uid"]
    if uid == "sentry":
        return {"trace"} & {f for t in panel["targets"] for f in t.get("eventsFields", [])}
    if uid == "tempo":
        return {"traceID"}  # TraceQL search results
    if uid == "loki":
        return {"trace_id"}  # structured metadata, extracted from the labels field
    return set()


def test_every_trace_id_column_links_to_error_investigation() -> None:
    checked = []
    for path, dashboard in build_all().items():
        for panel in dashboard["panels"]:
            for column in _trace_id_columns(panel):
                urls = _links_of({"panels": [panel]}, column)
                assert any(
                    f"/d/{INVESTIGATION_UID}/" in u and "var-trace_id=${__value.raw}" in u
                    for u in urls
                ), f"{path} / {panel['title']}: {column} does not link to Error investigation"
                checked.append(f"{path}:{column}")
    # Error logs, error traces, slow traces, Sentry error events on two dashboards.
    assert len(checked) == 5, checked


def test_latency_panels_request_exemplars() -> None:
    overview = build_all()["Services/service-overview.json"]
    latency = next(p for p in overview["panels"] if p["title"].startswith("Latency"))
    assert [t["expr"].split("(")[0] for t in latency["targets"]] == ["histogram_quantile"] * 3
    assert all(t["exemplar"] for t in latency["targets"])


def test_the_valid_fixture_passes(tmp_path: Path) -> None:
    findings = check.run(_bundle(tmp_path))
    assert _failed(findings) == []
    assert {f.check for f in findings} >= {
        "dashboards.metadata",
        "dashboards.datasources",
        "dashboards.variables",
        "dashboards.sentry",
        "dashboards.schema",
        "dashboards.queries",
    }


_INVALID = [
    ("bad-schema", "dashboards.schema", "/schemaVersion must be number"),
    ("bad-schema", "dashboards.schema", "gridPos must have required property 'w'"),
    ("no-metadata", "dashboards.metadata", "uid missing"),
    ("no-metadata", "dashboards.metadata", "tags missing"),
    ("unknown-datasource", "dashboards.datasources", "did you mean 'mimir'"),
    ("datasource-by-name", "dashboards.datasources", "given by name 'Prometheus'"),
    ("datasource-wrong-type", "dashboards.datasources", "of type 'prometheus', not 'loki'"),
    ("undefined-variable", "dashboards.variables", "$instance is used"),
    ("promql-syntax", "dashboards.queries", "promql syntax error"),
    ("logql-syntax", "dashboards.queries", "logql syntax error"),
    ("traceql-syntax", "dashboards.queries", "traceql syntax error"),
    ("traceql-syntax", "dashboards.queries", "Tempo queryType 'nativeSearch' is not one of"),
    ("sentry-unknown-type", "dashboards.sentry", "queryType 'errors' does not exist"),
    ("sentry-bad-field", "dashboards.sentry", "'eventsQuery' is not a issues query field"),
    ("sentry-bad-field", "dashboards.sentry", "issuesSort 'newest' is not one of"),
    ("sentry-bad-field", "dashboards.sentry", "issuesLimit must be an integer"),
    (
        "sentry-multi-value-variable",
        "dashboards.sentry",
        "variable environment: projectIds references $project, which can hold several values",
    ),
    (
        "sentry-issue-count",
        "dashboards.sentry",
        "Unresolved issues: counts the rows of Sentry issues query A, which returns one page",
    ),
    (
        "sentry-issue-count",
        "dashboards.sentry",
        "Issues by status: counts the rows of Sentry issues query A",
    ),
    ("unknown-metric", "dashboards.metrics", "metric 'http_requests_total'"),
    ("unknown-loki-label", "dashboards.loki-labels", "stream label 'app'"),
    ("unknown-loki-label", "dashboards.loki-labels", "label 'userId'"),
    ("unknown-loki-label", "dashboards.loki-labels", "variable app: label 'app' is not an index"),
]


@pytest.fixture(scope="module")
def invalid_findings(tmp_path_factory: pytest.TempPathFactory) -> list[Finding]:
    """All invalid fixtures beside the valid one in one bundle: one run of the checks."""
    root = _bundle(tmp_path_factory.mktemp("invalid"))
    for fixture in sorted((FIXTURES / "invalid").glob("*.json")):
        shutil.copy(fixture, root / "grafana" / "dashboards" / "Services" / fixture.name)
    return check.run(root)


@pytest.mark.parametrize(("fixture", "check_name", "expected"), _INVALID)
def test_each_invalid_fixture_fails_with_a_clear_message(
    invalid_findings: list[Finding], fixture: str, check_name: str, expected: str
) -> None:
    location = f"grafana/dashboards/Services/{fixture}.json"
    failed = [f for f in _failed(invalid_findings) if f.location == location]
    messages = [f.message for f in failed if f.check == check_name]
    assert any(expected in m for m in messages), [f"{f.check}: {f.message}" for f in failed]


def test_every_invalid_fixture_is_caught_and_only_it_is_blamed(
    invalid_findings: list[Finding],
) -> None:
    blamed = {f.location for f in _failed(invalid_findings)}
    fixtures = {
        f"grafana/dashboards/Services/{p.name}" for p in (FIXTURES / "invalid").glob("*.json")
    }
    assert blamed == fixtures


def test_a_dashboard_outside_any_folder_fails(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    source = FIXTURES / "valid" / "grafana" / "dashboards" / "Services" / "valid.json"
    doc = json.loads(source.read_text())
    doc["uid"] = "top-level"
    (root / "grafana" / "dashboards" / "top.json").write_text(json.dumps(doc))
    failed = _failed(check.run(root))
    assert [f.location for f in failed] == ["grafana/dashboards/top.json"]
    assert "no folder" in failed[0].message


def test_rules_get_the_promql_and_metric_checks(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    shutil.copy(FIXTURES / "invalid-rules" / "unknown-metric.yml", root / "prometheus" / "rules")
    failed = _failed(check.run(root))
    messages = {f.message for f in failed}
    assert any("RequestsFailing: metric 'http_requests_errors_total'" in m for m in messages)
    assert any("job:broken:rate5m: promql syntax error" in m for m in messages)
    assert {f.location for f in failed} == {"prometheus/rules/unknown-metric.yml"}


def test_missing_node_is_a_failure_that_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("signalbox.checks._querycheck.shutil.which", lambda _name: None)
    failed = _failed(check.run(_bundle(tmp_path)))
    assert [f.message for f in failed] == [
        "node is not on PATH (Node 20+ is needed for query checks)"
    ]


def test_unreadable_json_and_missing_provisioning_are_reported(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    (root / "grafana" / "dashboards" / "Services" / "broken.json").write_text("{not json")
    shutil.rmtree(root / "grafana" / "provisioning" / "datasources")
    failed = _failed(check.run(root))
    by_check = {f.check: f for f in failed}
    assert "not valid JSON" in by_check["dashboards.files"].message
    assert "no provisioned datasource" in by_check["dashboards.datasources"].message


def test_interpolate_replaces_every_variable_syntax() -> None:
    text = 'rate(x{a=~"$a", b="${b}", c="${c:regex}", d="[[d]]"}[$__rate_interval])'
    values = {"a": "1", "b": "2", "c": "3", "d": "4", "__rate_interval": "5m"}
    assert check.interpolate(text, values) == 'rate(x{a=~"1", b="2", c="3", d="4"}[5m])'
