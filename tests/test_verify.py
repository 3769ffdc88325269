"""``signalbox verify`` against loopback servers that answer like Grafana, Tempo, Loki and Sentry.

The servers (tests/fixtures/api/fakes.py) answer with the documented shapes kept in
tests/fixtures/api/<product>/*.json and check each request (path, query, auth header, body):
a request the real product would reject fails the test through ``stack.problems``. The
Prometheus leg against a real Prometheus is in test_verify_prometheus.py.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from signalbox.cli import main

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "api"))
from fakes import FakeStack

_ENV = (
    "SIGNALBOX_SERVICE_URL",
    "GRAFANA_URL",
    "GRAFANA_TOKEN",
    "TEMPO_URL",
    "LOKI_URL",
    "PROMETHEUS_URL",
    "SENTRY_URL",
    "SENTRY_ORG",
    "SENTRY_AUTH_TOKEN",
    "SENTRY_PROJECT",
    "SENTRY_ENVIRONMENT",
    "SENTRY_DSN",
    "SENTRY_DSN_FASTAPI",
    # --compose's ports
    "FASTAPI_APP_PORT",
    "PROMETHEUS_PORT",
    "LOKI_PORT",
    "TEMPO_PORT",
    "GRAFANA_PORT",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def stack() -> Iterator[FakeStack]:
    with FakeStack() as fakes:
        yield fakes


class Run:
    def __init__(self, code: int, out: str, err: str, seconds: float) -> None:
        self.code, self.out, self.err, self.seconds = code, out, err, seconds
        self.document: dict[str, Any] = json.loads(out) if out.lstrip().startswith("{") else {}

    def finding(self, check: str) -> dict[str, Any]:
        matches = [f for f in self.document["findings"] if f["check"] == check]
        assert len(matches) == 1, f"{check!r} in {[f['check'] for f in self.document['findings']]}"
        return matches[0]

    def status(self, check: str) -> str:
        return str(self.finding(check)["status"])


def verify(capsys: pytest.CaptureFixture[str], *args: str, output: str = "json") -> Run:
    started = time.monotonic()
    code = main(
        ["verify", *args, "--output", output, "--poll-interval", "0.05"]
        + ([] if any(a.startswith("--timeout") for a in args) else ["--timeout", "3"])
    )
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err, time.monotonic() - started)


def direct(stack: FakeStack, *extra: str) -> list[str]:
    """Tempo, Loki and Sentry read directly; a later --only in ``extra`` wins."""
    return [
        "--only",
        "tempo,loki,sentry",
        "--service-url",
        stack.service.url,
        "--tempo-url",
        stack.tempo.url,
        "--loki-url",
        stack.loki.url,
        "--sentry-url",
        stack.sentry.url,
        "--sentry-org",
        stack.sentry.org,
        "--sentry-token",
        stack.sentry.token,
        "--sentry-project",
        "fastapi-app",
        "--sentry-environment",
        "demo",
        *extra,
    ]


def through_grafana(stack: FakeStack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("SIGNALBOX_SERVICE_URL", stack.service.url)
    monkeypatch.setenv("GRAFANA_URL", stack.grafana.url)
    monkeypatch.setenv("GRAFANA_TOKEN", stack.grafana.token)
    monkeypatch.setenv("SENTRY_ENVIRONMENT", "demo")
    monkeypatch.setenv("SENTRY_DSN_FASTAPI", "https://public@o1.ingest.sentry.io/4505000000000001")
    return []


LEGS = ("tempo /error", "tempo /chain", "loki /error", "loki /chain", "sentry /error")


def test_direct_backends_show_both_traces_with_time_to_visible(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.telemetry.delay = 0.4
    run = verify(capsys, *direct(stack))

    assert run.code == 0, run.out
    assert stack.problems == []
    for check in LEGS:
        finding = run.finding(check)
        assert finding["status"] == "passed", finding
        assert 0.4 <= finding["details"]["seconds"] < 3, finding
        assert finding["details"]["via"] == "direct"
    # The trace ids looked for are the ones the service received in traceparent.
    error_id, chain_id = stack.service.seen
    assert run.finding("tempo /error")["details"]["trace_id"] == error_id
    assert run.finding("tempo /chain")["details"]["trace_id"] == chain_id
    assert error_id != chain_id
    assert run.finding("tempo /chain")["details"]["spans_by_service"] == {
        "fastapi-app": 1,
        "api": 1,
    }
    assert run.finding("loki /chain")["details"]["lines_by_service"] == {"fastapi-app": 2, "api": 2}
    assert run.finding("sentry /error")["details"]["project"] == "fastapi-app"
    # Only the legs asked for (--only tempo,loki,sentry) are reported.
    assert run.document["ok"] is True
    assert run.document["verdict"] == "VERIFIED"
    assert run.document["counts"] == {"passed": 7, "failed": 0, "skipped": 0}
    assert {f["details"].get("backend") for f in run.document["findings"]} == {
        None,  # the probe requests
        "tempo",
        "loki",
        "sentry",
    }


def test_text_output_has_a_row_per_leg_and_a_one_line_verdict(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    run = verify(capsys, *direct(stack), output="text")

    assert run.code == 0
    for check in (*LEGS, "service /error", "service /chain"):
        assert check in run.out
    verdict = run.out.strip().splitlines()[-1]
    assert verdict.startswith("VERIFIED: trace ids ")
    assert verdict.endswith(" visible in loki, sentry, tempo")
    assert stack.service.seen[0] in run.out.replace("\n", "")
    assert "waiting up to 3 s for tempo, loki, sentry" in run.err


def test_every_leg_through_grafana_with_only_grafana_configured(
    stack: FakeStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = verify(capsys, *through_grafana(stack, monkeypatch))

    assert run.code == 0, run.out
    assert stack.problems == []
    for check in (*LEGS, "prometheus /error"):
        assert run.status(check) == "passed", run.finding(check)
        assert run.finding(check)["details"]["via"] == "grafana"
    health = [f for f in run.document["findings"] if f["check"] == "grafana datasource"]
    assert {f["location"] for f in health} == {
        "uid prometheus (prometheus)",
        "uid loki (loki)",
        "uid tempo (tempo)",
        "uid sentry (grafana-sentry-datasource)",
    }
    assert all(f["status"] == "passed" for f in health)
    # Tempo and Loki were only reached through Grafana's proxy, which drops the caller's token.
    assert stack.tempo.requests and stack.loki.requests
    assert all("authorization" not in r.headers for r in stack.tempo.requests + stack.loki.requests)
    # Sentry was asked through /api/ds/query with the project id from SENTRY_DSN_FASTAPI.
    sentry_asks = [r for r in stack.sentry.requests if r.path.endswith("/events/")]
    assert sentry_asks and all(r.query["project"] == ["4505000000000001"] for r in sentry_asks)
    assert all(r.query["environment"] == ["demo"] for r in sentry_asks)


def test_broken_propagation_fails_the_chain_legs_only(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.service.break_propagation = True
    run = verify(capsys, *direct(stack, "--timeout", "1"), output="text")

    assert run.code == 1
    assert "NOT VERIFIED" in run.out.strip().splitlines()[-1]
    run = verify(capsys, *direct(stack, "--timeout", "1"))
    for check in ("tempo /error", "loki /error", "sentry /error"):
        assert run.status(check) == "passed"
    tempo_chain = run.finding("tempo /chain")
    assert tempo_chain["status"] == "failed"
    assert "not visible after" in tempo_chain["message"]
    assert "none yet from api" in tempo_chain["message"]
    assert "none yet from api" in run.finding("loki /chain")["message"]


def test_a_service_that_ignores_traceparent_fails_every_leg(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.service.ignore_traceparent = True
    run = verify(capsys, *direct(stack, "--timeout", "1"))

    assert run.code == 1
    assert run.status("service /error") == "passed"  # the request itself worked
    for check in LEGS:
        assert run.status(check) == "failed"
        assert "not visible after" in run.finding(check)["message"]


def test_legs_not_configured_make_the_verdict_incomplete_not_verified(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    only_prometheus = ("--service-url", stack.service.url, "--prometheus-url", stack.prometheus.url)
    run = verify(capsys, *only_prometheus)

    assert run.code == 1
    assert run.document["ok"] is False
    assert run.document["verdict"] == "INCOMPLETE"
    assert run.status("prometheus /error") == "passed"
    # Exemplars mark failed requests only: /chain (a success) is not looked for in Prometheus.
    assert "prometheus /chain" not in [f["check"] for f in run.document["findings"]]
    for check in ("grafana", "tempo /error", "loki /chain", "sentry /error"):
        finding = run.finding(check)
        assert finding["status"] == "skipped"  # reported, never as passed
        assert finding["message"].startswith("not configured")
    assert not stack.loki.requests and not stack.sentry.requests

    verdict = verify(capsys, *only_prometheus, output="text").out.strip().splitlines()[-1]
    assert verdict.startswith("INCOMPLETE: trace ids ")
    assert verdict.endswith(
        " visible in prometheus; not checked (not configured): grafana, tempo, loki, sentry: "
        "configure them, or narrow the check with --only prometheus"
    )


def test_only_narrows_the_legs_explicitly(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    run = verify(
        capsys,
        "--service-url",
        stack.service.url,
        "--tempo-url",
        stack.tempo.url,
        "--no-chain",
        "--only",
        "Tempo",
    )

    assert run.code == 0
    assert run.document["verdict"] == "VERIFIED"
    assert [f["check"] for f in run.document["findings"]] == ["service /error", "tempo /error"]
    assert run.status("tempo /error") == "passed"
    assert not stack.loki.requests and not stack.sentry.requests
    assert [r.path for r in stack.service.requests] == ["/error"]


def test_only_reads_through_grafana_without_judging_the_other_datasources(
    stack: FakeStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.grafana.unhealthy = {"loki"}  # not asked for: not a reason to fail
    run = verify(capsys, *through_grafana(stack, monkeypatch), "--only", "tempo")

    assert run.code == 0, run.out
    assert run.status("grafana") == "passed"  # the way to Tempo is checked
    health = [f for f in run.document["findings"] if f["check"] == "grafana datasource"]
    assert [f["location"] for f in health] == ["uid tempo (tempo)"]
    assert run.status("tempo /chain") == "passed"
    assert run.finding("tempo /chain")["details"]["via"] == "grafana"
    assert not stack.loki.requests


def test_compose_preset_reads_the_published_localhost_ports(
    stack: FakeStack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here: only exported variables
    monkeypatch.setenv("FASTAPI_APP_PORT", str(stack.service.port))
    monkeypatch.setenv("TEMPO_PORT", str(stack.tempo.port))
    monkeypatch.setenv("LOKI_PORT", str(stack.loki.port))
    monkeypatch.setenv("PROMETHEUS_PORT", str(stack.prometheus.port))
    run = verify(capsys, "--compose", "--only", "tempo,loki,prometheus")

    assert run.code == 0, run.out
    for check in ("tempo /chain", "loki /chain", "prometheus /error"):
        assert run.status(check) == "passed"
    assert run.finding("service /error")["location"].startswith("GET http://localhost:")


def test_compose_preset_reads_the_env_file_as_compose_does(
    stack: FakeStack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    (tmp_path / ".env").write_text(
        "# cp .env.example .env, then edited: Compose's syntax\n"
        f"FASTAPI_APP_PORT={stack.service.port}\n"
        f'LOKI_PORT="{stack.loki.port}"\n'
        f"export PROMETHEUS_PORT={stack.prometheus.port}  # moved\n"
        f"TEMPO_PORT={_closed_port_url().rsplit(':', 1)[1]}\n"
        f"SENTRY_URL='{stack.sentry.url}'\n"
        f"SENTRY_ORG={stack.sentry.org}\n"
        f"SENTRY_AUTH_TOKEN={stack.sentry.token}\n"
        "SENTRY_ENVIRONMENT=demo\n"
        "SENTRY_DSN_FASTAPI=https://public@o1.ingest.sentry.io/4505000000000001\n"
    )
    monkeypatch.setenv("TEMPO_PORT", str(stack.tempo.port))  # exported: wins over .env
    # Run from a subfolder: Compose finds its file, and the .env beside it, in a parent.
    (tmp_path / "examples").mkdir()
    monkeypatch.chdir(tmp_path / "examples")
    run = verify(capsys, "--compose", "--only", "tempo,loki,prometheus,sentry")

    assert run.code == 0, run.out
    for check in (*LEGS, "prometheus /error"):
        assert run.status(check) == "passed", run.finding(check)
    assert run.finding("service /error")["location"] == (
        f"GET http://localhost:{stack.service.port}/error"
    )
    assert run.finding("sentry /error")["details"]["via"] == "direct"
    events = [r for r in stack.sentry.requests if r.path.endswith("/events/")]
    assert events and all(r.query["environment"] == ["demo"] for r in events)
    assert all(r.query["project"] == ["4505000000000001"] for r in events)


def test_compose_preset_checks_grafana_once_a_token_is_given(
    stack: FakeStack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    (tmp_path / ".env").write_text(
        "".join(
            f"{name}={fake.port}\n"
            for name, fake in (
                ("FASTAPI_APP_PORT", stack.service),
                ("TEMPO_PORT", stack.tempo),
                ("LOKI_PORT", stack.loki),
                ("PROMETHEUS_PORT", stack.prometheus),
                ("GRAFANA_PORT", stack.grafana),
            )
        )
        + "SENTRY_ENVIRONMENT=demo\n"
        + "SENTRY_DSN_FASTAPI=https://public@o1.ingest.sentry.io/4505000000000001\n"
    )
    monkeypatch.chdir(tmp_path)

    without_token = verify(capsys, "--compose")
    assert without_token.code == 1
    assert without_token.document["verdict"] == "INCOMPLETE"
    assert "set GRAFANA_TOKEN" in without_token.finding("grafana")["message"]

    monkeypatch.setenv("GRAFANA_TOKEN", stack.grafana.token)
    run = verify(capsys, "--compose")
    assert run.code == 0, run.out
    assert run.document["verdict"] == "VERIFIED"  # all five legs
    assert run.status("grafana") == "passed"
    assert run.finding("tempo /error")["details"]["via"] == "direct"
    assert run.finding("sentry /error")["details"]["via"] == "grafana"


def test_compose_preset_refuses_a_port_that_is_not_a_number(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    (tmp_path / ".env").write_text("LOKI_PORT=31OO\n")
    monkeypatch.chdir(tmp_path)

    assert main(["verify", "--compose"]) == 2
    captured = capsys.readouterr()
    assert f"LOKI_PORT='31OO' (in the environment or {tmp_path / '.env'}) is not a port" in (
        captured.err
    )
    assert captured.out == ""


# --- Grafana failure shapes ----------------------------------------------------------------


def test_grafana_rejecting_the_token_fails_fast_and_names_the_variable(
    stack: FakeStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    through_grafana(stack, monkeypatch)
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_wrong")
    run = verify(capsys, "--timeout", "20")

    assert run.code == 1
    assert run.seconds < 5  # nothing to wait for when the token is wrong
    grafana = [f for f in run.document["findings"] if f["check"] == "grafana"]
    assert grafana[0]["status"] == "passed"  # /api/health needs no token
    assert grafana[1]["status"] == "failed"
    assert "401 Invalid API key" in grafana[1]["message"]
    assert "GRAFANA_TOKEN" in grafana[1]["message"]
    for check in (*LEGS, "prometheus /error"):
        assert run.status(check) == "failed"
        assert "Grafana is unusable" in run.finding(check)["message"]
    assert not stack.tempo.requests


def test_grafana_with_a_failing_database_is_reported(
    stack: FakeStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.grafana.fail = "grafana/health_database_failing"
    run = verify(capsys, *through_grafana(stack, monkeypatch))

    assert run.code == 1
    grafana = next(f for f in run.document["findings"] if f["check"] == "grafana")
    assert grafana["message"] == "Grafana 13.2.1 reports database 'failing'"
    assert "Grafana is unusable" in run.finding("tempo /error")["message"]


def test_viewer_token_that_cannot_list_datasources_checks_the_fixed_uids(
    stack: FakeStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.grafana.role = "viewer"
    run = verify(capsys, *through_grafana(stack, monkeypatch))

    assert run.code == 0, run.out
    health = [f for f in run.document["findings"] if f["check"] == "grafana datasource"]
    assert sorted(f["location"] for f in health) == [
        "uid loki",
        "uid prometheus",
        "uid sentry",
        "uid tempo",
    ]
    assert all("fixed uids" in f["message"] for f in health)


def test_unhealthy_datasource_fails_its_legs_with_grafanas_reason(
    stack: FakeStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.grafana.unhealthy = {"loki"}
    run = verify(capsys, *through_grafana(stack, monkeypatch), "--timeout", "20")

    assert run.code == 1
    assert run.seconds < 5
    loki_health = next(f for f in run.document["findings"] if f["location"] == "uid loki (loki)")
    assert loki_health["status"] == "failed"
    assert "Unable to connect with Loki" in loki_health["message"]
    assert "unhealthy" in run.finding("loki /error")["message"]
    assert run.status("tempo /chain") == "passed"
    assert not stack.loki.requests


@pytest.mark.parametrize("role", ["admin", "viewer"])
def test_missing_loki_datasource_fails_but_missing_sentry_is_skipped(
    stack: FakeStack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    role: str,
) -> None:
    stack.grafana.role = role
    stack.grafana.missing = {"loki", "sentry"}
    run = verify(capsys, *through_grafana(stack, monkeypatch))

    assert run.code == 1
    assert "has no datasource with uid 'loki'" in run.finding("loki /error")["message"]
    assert run.status("sentry /error") == "skipped"
    assert run.status("tempo /error") == "passed"


def test_sentry_datasource_without_organization_means_sentry_not_set_up(
    stack: FakeStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.grafana.sentry_org = ""
    run = verify(capsys, *through_grafana(stack, monkeypatch))

    assert run.code == 1
    assert run.document["verdict"] == "INCOMPLETE"
    assert run.status("sentry /error") == "skipped"
    assert not stack.sentry.requests
    without_sentry = verify(capsys, "--only", "grafana,tempo,loki,prometheus")
    assert without_sentry.code == 0
    assert without_sentry.document["verdict"] == "VERIFIED"


def test_sentry_token_rejected_inside_grafana_is_reported(
    stack: FakeStack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack.grafana.sentry_token = "sntrys_stale"  # the datasource holds a rotated-out token
    run = verify(capsys, *through_grafana(stack, monkeypatch), "--timeout", "20")

    assert run.code == 1
    assert run.seconds < 5
    message = run.finding("sentry /error")["message"]
    assert "Sentry datasource 'sentry': 401 Unauthorized Invalid token" in message
    assert run.status("tempo /error") == "passed"


# --- Sentry failure shapes (direct) --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fail", "expected"),
    [
        (
            ("--sentry-token", "sntrys_wrong"),
            None,
            "rejected the credentials (401 Invalid token): check SENTRY_AUTH_TOKEN",
        ),
        ((), "sentry/forbidden", "refused access (403 You do not have permission"),
        (
            ("--sentry-org", "someone-else"),
            None,
            "404 The requested resource does not exist: wrong URL",
        ),
    ],
)
def test_sentry_errors_fail_fast_with_the_reason(
    stack: FakeStack,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    fail: str | None,
    expected: str,
) -> None:
    stack.sentry.fail = fail
    run = verify(capsys, *direct(stack, *args, "--timeout", "20"))

    assert run.code == 1
    assert run.seconds < 5
    assert expected in run.finding("sentry /error")["message"]
    assert run.status("tempo /error") == "passed"


def test_sentry_rate_limit_is_waited_out(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.sentry.fail, stack.sentry.fail_times = "sentry/rate_limited", 3
    run = verify(capsys, *direct(stack))

    assert run.code == 0, run.finding("sentry /error")
    assert len(stack.sentry.requests) >= 4


def test_sentry_event_in_another_environment_is_not_accepted(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.service.environment = "staging"
    run = verify(capsys, *direct(stack, "--timeout", "1"))

    assert run.code == 1
    assert "not visible after" in run.finding("sentry /error")["message"]
    assert all(
        r.query.get("environment") == ["demo"]
        for r in stack.sentry.requests
        if r.path.endswith("/events/")
    )


def test_unknown_sentry_project_lists_the_ones_the_token_sees(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    run = verify(capsys, *direct(stack, "--sentry-project", "nope", "--timeout", "20"))

    assert run.code == 1
    assert run.seconds < 5
    assert (
        "no project 'nope' (visible to this token: api, fastapi-app)"
        in run.finding("sentry /error")["message"]
    )


def test_sentry_project_slug_is_resolved_to_the_id_the_api_filters_on(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    run = verify(capsys, *direct(stack))

    assert run.code == 0
    events = [r for r in stack.sentry.requests if r.path.endswith("/events/")]
    assert events and all(r.query["project"] == ["4505000000000001"] for r in events)
    assert all(r.query["dataset"] == ["errors"] for r in events)
    assert sum(r.path.endswith("/projects/") for r in stack.sentry.requests) == 1


# --- Tempo / Loki failure shapes -----------------------------------------------------------


def test_tempo_5xx_is_retried_until_the_deadline_then_reported(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.tempo.fail = "tempo/upstream_error"
    run = verify(capsys, *direct(stack, "--timeout", "1"))

    assert run.code == 1
    message = run.finding("tempo /error")["message"]
    assert "not visible after" in message
    assert "answered 500 rpc error: code = Unavailable" in message
    assert len(stack.tempo.requests) > 4
    assert run.status("loki /error") == "passed"


def test_tempo_that_never_answers_times_out_per_request(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.tempo.fail, stack.tempo.hang_seconds = "hang", 3
    run = verify(capsys, *direct(stack, "--timeout", "1", "--request-timeout", "0.3", "--no-chain"))

    assert run.code == 1
    assert "did not answer within 0.3 s" in run.finding("tempo /error")["message"]
    assert run.seconds < 3


def test_loki_refusing_the_request_is_fatal(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.loki.fail = "loki/no_org_id"
    run = verify(capsys, *direct(stack, "--timeout", "20"))

    assert run.code == 1
    assert run.seconds < 5
    assert "rejected the credentials (401 no org id)" in run.finding("loki /error")["message"]


def test_a_url_that_is_not_the_product_says_so(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Grafana's web UI answers 200 text/html for any non-API path: a classic wrong URL.
    run = verify(capsys, *direct(stack, "--loki-url", stack.grafana.url, "--timeout", "20"))

    assert run.code == 1
    assert run.seconds < 5
    message = run.finding("loki /error")["message"]
    assert "not JSON: is this URL really Loki?" in message


def test_nothing_listening_is_reported_as_cannot_connect(
    capsys: pytest.CaptureFixture[str], stack: FakeStack
) -> None:
    closed = _closed_port_url()
    run = verify(capsys, *direct(stack, "--tempo-url", closed, "--timeout", "0.5", "--no-chain"))

    assert run.code == 1
    assert (
        f"cannot connect to Tempo at {closed}/api/v2/traces/"
        in run.finding("tempo /error")["message"]
    )


def test_unreachable_backends_fail_fast_naming_the_address(
    capsys: pytest.CaptureFixture[str], stack: FakeStack
) -> None:
    # Refused (nothing listens), no connection at all (a full accept queue drops the SYN, as a
    # firewall would) and a name that does not resolve: waiting until the deadline cannot help.
    refused = _closed_port_url()
    with _unanswered_port() as silent:
        run = verify(
            capsys,
            *direct(stack, "--tempo-url", refused, "--loki-url", silent),
            "--prometheus-url",
            "http://prometheus.invalid:9090",
            "--only",
            "tempo,loki,prometheus,sentry",
            "--timeout",
            "30",
            "--request-timeout",
            "1",
        )

    assert run.code == 1
    assert run.seconds < 6
    for probe in ("/error", "/chain"):
        assert (
            f"cannot connect to Tempo at {refused}/api/v2/traces/"
            in run.finding(f"tempo {probe}")["message"]
        )
        assert (
            f"cannot connect to Loki at {silent}/loki/api/v1/query_range: no connection"
            in run.finding(f"loki {probe}")["message"]
        )
    assert "cannot resolve host 'prometheus.invalid'" in run.finding("prometheus /error")["message"]
    assert run.status("sentry /error") == "passed"


def test_service_down_fails_every_leg_without_waiting(
    capsys: pytest.CaptureFixture[str], stack: FakeStack
) -> None:
    run = verify(capsys, *direct(stack, "--service-url", _closed_port_url(), "--timeout", "20"))

    assert run.code == 1
    assert run.seconds < 5
    assert "cannot reach the service" in run.finding("service /error")["message"]
    for check in LEGS:
        assert "request failed" in run.finding(check)["message"]


def test_unexpected_status_from_the_service_is_a_failure_and_legs_still_report(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.service.chain_status = 503  # the downstream is unreachable
    run = verify(capsys, *direct(stack, "--timeout", "1"))

    assert run.code == 1
    chain = run.finding("service /chain")
    assert chain["status"] == "failed"
    assert chain["message"].startswith("answered 503, expected 200: downstream_unavailable")
    assert "none yet from api" in run.finding("tempo /chain")["message"]
    assert run.status("tempo /error") == "passed"


# --- misuse --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "--service-url or SIGNALBOX_SERVICE_URL"),
        (
            ["--service-url", "localhost:8000", "--tempo-url", "http://t"],
            {},
            "is not an http:// or https:// URL",
        ),
        (["--service-url", "http://s"], {}, "nothing to verify against"),
        (["--service-url", "http://s"], {"GRAFANA_URL": "http://g"}, "GRAFANA_TOKEN is not"),
        (["--service-url", "http://s", "--tempo-url", "ftp://t"], {}, "--tempo-url / TEMPO_URL"),
        (
            ["--service-url", "http://s", "--tempo-url", "http://t"],
            {"SENTRY_ORG": "o"},
            "SENTRY_AUTH_TOKEN is not",
        ),
        (
            ["--service-url", "http://s", "--tempo-url", "http://t", "--timeout", "0"],
            {},
            "must be > 0",
        ),
        (
            ["--service-url", "http://s", "--tempo-url", "http://t", "--only", "tempo,jaeger"],
            {},
            "unknown leg jaeger; legs: grafana, tempo, loki, prometheus, sentry",
        ),
    ],
)
def test_misuse_exits_2_naming_what_to_set(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["verify", *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


@contextmanager
def _unanswered_port() -> Iterator[str]:
    """A port whose accept queue is full: Linux drops further SYNs, so connecting times out."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        address = server.getsockname()
        queued = [socket.socket() for _ in range(3)]
        try:
            for client in queued:
                client.setblocking(False)
                client.connect_ex(address)
            time.sleep(0.1)
            yield f"http://127.0.0.1:{address[1]}"
        finally:
            for client in queued:
                client.close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
