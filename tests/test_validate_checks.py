"""Every `signalbox validate` stack check against a passing and a failing fixture bundle.

Fixtures live in tests/fixtures/validate/<check>/<case>/, each a miniature repository. A passing
fixture must produce no failed finding; a failing one must fail with each message a user needs
to fix the problem (asserted as substrings, together with where it was found).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from signalbox.checks import (
    compose,
    dockerfiles,
    grafana_provisioning,
    loki,
    prometheus,
    railway,
    tempo,
    yaml_lint,
)
from signalbox.report import EXIT_OK, Finding, Status, exit_code, render

FIXTURES = Path(__file__).parent / "fixtures" / "validate"
REPO = Path(__file__).resolve().parents[1]


def _failed(findings: list[Finding]) -> list[str]:
    return [f"{f.location} | {f.message}" for f in findings if f.status is Status.FAILED]


@pytest.mark.parametrize(
    ("module", "case"),
    [
        (compose, "compose/good"),
        (prometheus, "prometheus/good"),
        (loki, "loki/good"),
        (tempo, "tempo/good"),
        (grafana_provisioning, "grafana/good"),
        (railway, "railway/good"),
        (dockerfiles, "dockerfiles/good"),
        (yaml_lint, "yaml_lint/good"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_passing_fixture_has_no_failure(module: object, case: str) -> None:
    findings = module.run(FIXTURES / case)  # type: ignore[attr-defined]
    assert findings, "a check must always report something"
    assert _failed(findings) == []
    assert any(f.status is Status.PASSED for f in findings)


FAILING = [
    (
        compose,
        "compose/bad-schema",
        ["not valid with .env.example as .env", "Additional property volumez is not allowed"],
    ),
    (
        compose,
        "compose/bad-practices",
        [
            "compose reads API_TOKEN but .env.example does not document it",
            "documents STALE_SETTING, which docker-compose.yml never reads",
            "API_TOKEN has neither a default",
            "services.cache | image redis:latest is not pinned",
            "services.web | no healthcheck",
            "services.web | port 8080 published on 0.0.0.0; bind it to 127.0.0.1",
            "services.worker | build.context worker does not exist",
            "services.worker | depends_on web without condition: service_healthy",
        ],
    ),
    (
        prometheus,
        "prometheus/bad-rendering",
        [
            "(railway rendering) | renderer refused",
            "FASTAPI_APP_TARGETS: 'fastapi-app.railway.internal' is not host:port",
        ],
    ),
    (
        prometheus,
        "prometheus/bad-config",
        ["(compose rendering) | promtool check config", "field scrape_intervall not found"],
    ),
    (
        prometheus,
        "prometheus/bad-rules",
        [
            "prometheus/rules/ | promtool check rules",
            "unclosed left parenthesis",
            "prometheus/tests/ | promtool test rules",
        ],
    ),
    (
        loki,
        "loki/bad-keys",
        [
            "storage_config.boltdb_shipper.shared_store | refused by Loki 3.7 (removed in 3.0)",
            "limits_config.enforce_metric_name | refused by Loki 3.7",
            "chunk_store_config.max_look_back_period | refused by Loki 3.7",
            "limits_config.retention_perod | unknown key for Loki 3.7; did you mean "
            "retention_period?",
            "schema_config.configs | the newest period must use store tsdb and schema v13",
            "compactor.delete_request_store | required since Loki 3.0",
        ],
    ),
    (loki, "loki/bad-version", ["no key schema for loki 3.9 (the Dockerfile's version)"]),
    (
        loki,
        "loki/inert-cache",
        [
            "loki.yaml: query_range.results_cache | has no effect: Loki reads it only with "
            "query_range.cache_results: true (default false)",
            "loki.yaml: query_range.volume_results_cache | has no effect: Loki reads it only "
            "with query_range.cache_volume_results: true (default true)",
        ],
    ),
    (
        tempo,
        "tempo/bad-2x",
        [
            "tempo.yaml: ingester | refused by Tempo 3.0 (removed in 3.0)",
            "tempo.yaml: compactor | refused by Tempo 3.0 (removed in 3.0): removed; retention "
            "is backend_worker.compaction.block_retention",
            "metrics_generator.processor.local_blocks | refused by Tempo 3.0",
            "storage.trace.block.version | refused by Tempo 3.0 (removed in 3.0): not a valid "
            "block version",
            "trace_id_lable_name | unknown key for Tempo 3.0; did you mean trace_id_label_name?",
            "protocols.grpc.endpoint | '(default)' listens on localhost only",
            "remote_write | send_exemplars: true is needed",
        ],
    ),
    (
        grafana_provisioning,
        "grafana/bad",
        [
            "prometheus | access: direct; use proxy",
            "Jaeger | uid 'Jaeger' must be fixed lowercase",
            "datasourceUid | references datasource uid 'Prometheus', which is not provisioned "
            "(that is the name of uid 'prometheus'; reference the uid)",
            "tracesToLogsV2.datasourceUid | references datasource uid 'Loki'",
            "serviceMap.datasourceUid | references datasource uid 'mimir', which is not "
            "provisioned",
            "derivedFields[0].url | Grafana macro ${__value.raw} is not escaped",
            "write $${__value.raw}",
            "secureJsonData.token | $SENTRY_TOKEN is set neither in grafana/Dockerfile",
            "sentry | jsonData organization unknown to grafana-sentry-datasource",
            "sentry | jsonData.orgSlug is required",
            "sentry | jsonData.url 'https://sentry.io/organizations/acme/' must be an origin only",
            "sentry | secureJsonData must hold exactly authToken",
            "plugin grafana-sentry-datasource is not installed at a pinned version",
            "exemplar destinations read ['trace_id'], but Tempo's metrics-generator labels "
            "exemplars 'traceID'",
            "loki | derived field TraceID uses a regex over the line",
            "loki | derived field Investigate: matcherRegex 'trace_id' is not anchored",
            "write ^trace_id$",
            "tempo | jsonData.lokiSearch does nothing: Grafana 11 removed the Tempo query "
            "editor's Loki search tab",
            "options.path /var/lib/grafana/dashboards is not where grafana/Dockerfile copies",
        ],
    ),
    (
        railway,
        "railway/bad",
        [
            "railway.toml | healthcheckPath in the root railway.toml would apply to every service",
            "web/railway.toml | unknown key deploy.healthCheckPath",
            "deploy.restartPolicyType 'SOMETIMES' not one of",
            "build.builder must be DOCKERFILE",
            "build.dockerfilePath web.Dockerfile does not exist",
            "build.watchPatterns ['**'] reach outside /web/",
            "deploy.healthcheckPath is not set",
        ],
    ),
    (
        dockerfiles,
        "dockerfiles/bad",
        [
            "FROM grafana/tempo:latest is not pinned to an exact version",
            "FROM python:3.11 is not pinned to an exact version",
            "line 3: DL3008 Pin versions in apt get install",
            "line 5: DL3025",
        ],
    ),
    (
        yaml_lint,
        "yaml_lint/bad",
        [
            "broken.yml:2 | syntax: syntax error",
            'duplicate.yaml:3 | key-duplicates: duplication of key "port"',
            "duplicate.yaml:3 | trailing-spaces",
            "duplicate.yaml:4 | truthy",
        ],
    ),
]


@pytest.mark.parametrize(
    ("module", "case", "expected"), FAILING, ids=[case for _, case, _ in FAILING]
)
def test_failing_fixture_fails_with_a_clear_message(
    module: object, case: str, expected: list[str]
) -> None:
    failed = _failed(module.run(FIXTURES / case))  # type: ignore[attr-defined]
    report = "\n".join(failed)
    missing = [text for text in expected if not any(text in line for line in failed)]
    assert not missing, f"expected messages not found: {missing}\nfailures were:\n{report}"


@pytest.mark.parametrize(
    "module", [loki, tempo, grafana_provisioning, prometheus], ids=lambda m: m.CHECK
)
def test_the_repository_stack_passes(module: object) -> None:
    """The project's own Loki, Tempo, Grafana and Prometheus files pass their checks."""
    findings = module.run(REPO)  # type: ignore[attr-defined]
    assert _failed(findings) == []


def test_compose_reports_every_required_variable_by_name() -> None:
    findings = compose.run(FIXTURES / "compose" / "good")
    fail_fast = [f for f in findings if "when unset" in f.message]
    assert [f.status for f in fail_fast] == [Status.PASSED]
    assert "ADMIN_PASSWORD" in fail_fast[0].message


def test_deprecated_tempo_keys_are_warnings_and_validate_still_exits_0() -> None:
    findings = tempo.run(FIXTURES / "tempo" / "deprecated")
    warnings = [f"{f.location} | {f.message}" for f in findings if f.status is Status.WARNING]
    assert warnings == [
        "tempo/tempo.yaml: metrics_generator_client | deprecated in Tempo 3.0, still accepted "
        "by 3.0: ignored (the generator runs in-process or reads Kafka); remove the block",
        "tempo/tempo.yaml: storage.trace.block.version | deprecated in Tempo 3.0, still "
        "accepted by 3.0: vParquet3 is documented as removed; use vParquet4 (the default)",
    ]
    assert _failed(findings) == []
    assert any(f.status is Status.PASSED for f in findings)
    assert exit_code(findings) == EXIT_OK
    out = io.StringIO()
    render(findings, "json", out)
    document = json.loads(out.getvalue())
    assert document["ok"] is True
    assert document["counts"] == {"passed": 1, "failed": 0, "warning": 2, "skipped": 0}
    text = io.StringIO()
    render(findings, "text", text)
    assert "OK: 1 passed, 0 failed, 2 warnings, 0 skipped" in text.getvalue()
