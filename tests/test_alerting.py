"""Alert rules reach people: the alerting check, the Alertmanager renderer, and a real delivery.

The delivery test runs Debian's real Prometheus and Alertmanager on loopback: a rule fires in
Prometheus, Alertmanager (configured by alertmanager/render-config.sh, the image's entrypoint)
posts to a Slack-webhook receiver and mails an SMTP receiver, both real wire formats.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from receivers import wait_for
from services import free_port, run_service

from signalbox.checks import alerting
from signalbox.report import Finding, Status

REPO = Path(__file__).resolve().parents[1]
RENDER = REPO / "alertmanager" / "render-config.sh"
FIXTURES = REPO / "tests" / "fixtures" / "alerting"


@pytest.fixture(autouse=True, scope="module")
def _tools() -> None:
    for tool in ("amtool", "prometheus-alertmanager", "prometheus"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not installed: run `make setup-system` (Debian packages)")


def _failed(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.status is Status.FAILED]


def _bundle(tmp_path: Path, renderer: Path = RENDER) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(FIXTURES / "valid", root)
    (root / "alertmanager").mkdir()
    shutil.copy(renderer, root / "alertmanager" / "render-config.sh")
    return root


def _render(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_")}
    return subprocess.run(
        ["sh", str(RENDER), "--print"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


# --- the check -----------------------------------------------------------------------------


def test_the_repository_alerts_are_documented_tested_and_routed() -> None:
    findings = alerting.run(REPO)
    assert _failed(findings) == []
    tested = {f.message.split(":")[0] for f in findings if f.check == "alerting.tests"}
    assert tested == {
        "HighErrorRatio",
        "ErrorBudgetBurnFast",
        "ErrorBudgetBurnSlow",
        "HighLatencyP95",
        "ProbeFailing",
        "ScrapeTargetDown",
        "TelemetryDropped",
        "AlertNotificationsFailing",
        "OtelCollectorExportFailing",
    }


def test_the_valid_fixture_passes(tmp_path: Path) -> None:
    assert _failed(alerting.run(_bundle(tmp_path))) == []


def test_an_undocumented_untested_alert_fails(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    shutil.copy(FIXTURES / "invalid" / "undocumented.yml", root / "prometheus" / "rules")
    messages = [f.message for f in _failed(alerting.run(root))]
    assert (
        "FixtureUndocumented: missing annotation(s) runbook; severity label None is not one of "
        "page, ticket, warning" in messages
    )
    assert (
        "FixtureUndocumented: no promtool case where it fires; no promtool case where it stays "
        "quiet (exp_alerts: [])" in messages
    )


def test_an_alert_only_tested_firing_fails(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    (root / "prometheus" / "tests" / "rules_test.yml").unlink()
    shutil.copy(FIXTURES / "invalid" / "only_fires_test.yml", root / "prometheus" / "tests")
    messages = [f.message for f in _failed(alerting.run(root))]
    assert messages == ["FixtureTargetDown: no promtool case where it stays quiet (exp_alerts: [])"]


def test_a_renderer_that_notifies_nobody_fails(tmp_path: Path) -> None:
    root = _bundle(tmp_path, FIXTURES / "invalid" / "void-render-config.sh")
    messages = [f.message for f in _failed(alerting.run(root))]
    assert "renders a config with no notification channel; it must refuse to start" in messages
    assert any("lacks the configured Slack or email destination" in m for m in messages)


def test_no_renderer_at_all_fails(tmp_path: Path) -> None:
    root = _bundle(tmp_path)
    shutil.rmtree(root / "alertmanager")
    [finding] = _failed(alerting.run(root))
    assert "Prometheus alerts would notify nobody" in finding.message


# --- the renderer --------------------------------------------------------------------------


def test_renderer_refuses_to_start_without_a_destination() -> None:
    result = _render()
    assert result.returncode == 1
    assert "set ALERT_SLACK_WEBHOOK_URL and/or ALERT_EMAIL_TO" in result.stderr


def test_renderer_names_every_bad_variable_at_once() -> None:
    result = _render(
        ALERT_EMAIL_TO="oncall@example.com,not-an-address",
        ALERT_SLACK_WEBHOOK_URL="hooks.slack.com/x",
        ALERT_GROUP_WAIT="soon",
    )
    assert result.returncode == 1
    for expected in (
        "ALERT_SLACK_WEBHOOK_URL must be an http(s) URL",
        "ALERT_EMAIL_FROM is required when ALERT_EMAIL_TO is set",
        "ALERT_SMTP_SMARTHOST (host:port) is required",
        "ALERT_EMAIL_TO: 'not-an-address' is not an email address",
        "ALERT_GROUP_WAIT: 'soon' is not a duration",
        "5 problem(s); not starting",
    ):
        assert expected in result.stderr


def test_renderer_rejects_line_breaks_that_could_inject_yaml() -> None:
    result = _render(ALERT_SLACK_WEBHOOK_URL="https://x.example/\nreceivers: []")
    assert result.returncode == 1
    assert "ALERT_SLACK_WEBHOOK_URL contains a line break or tab" in result.stderr


@pytest.mark.parametrize(
    ("env", "slack", "mail"),
    [
        ({"ALERT_SLACK_WEBHOOK_URL": 'https://hooks.slack.com/services/T/B/a"b\\c'}, True, False),
        (
            {
                "ALERT_EMAIL_TO": "a@example.com,b@example.com",
                "ALERT_EMAIL_FROM": "am@example.com",
                "ALERT_SMTP_SMARTHOST": "smtp.example.com:587",
                "ALERT_SMTP_USERNAME": "am",
                "ALERT_SMTP_PASSWORD": 'p"a\\ss word',
            },
            False,
            True,
        ),
    ],
)
def test_rendered_configs_pass_amtool_and_keep_secrets_verbatim(
    tmp_path: Path, env: dict[str, str], slack: bool, mail: bool
) -> None:
    import yaml

    result = _render(**env)
    assert result.returncode == 0, result.stderr
    config = tmp_path / "am.yml"
    config.write_text(result.stdout)
    check = subprocess.run(
        ["amtool", "check-config", str(config)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    doc = yaml.safe_load(result.stdout)
    [receiver] = doc["receivers"]
    assert bool(receiver.get("slack_configs")) is slack
    assert bool(receiver.get("email_configs")) is mail
    if slack:
        assert receiver["slack_configs"][0]["api_url"] == env["ALERT_SLACK_WEBHOOK_URL"]
    if mail:
        assert doc["global"]["smtp_auth_password"] == env["ALERT_SMTP_PASSWORD"]
        assert receiver["email_configs"][0]["to"] == env["ALERT_EMAIL_TO"]


# --- real delivery -------------------------------------------------------------------------


class _SlackWebhook:
    """An HTTP receiver for Slack incoming-webhook posts (JSON bodies)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class _SmtpSink:
    """A minimal SMTP server (RFC 5321 commands Alertmanager uses) keeping each message."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                recipients: list[str] = []
                self._say("220 sink ESMTP")
                while line := self.rfile.readline():
                    command = line.decode().strip()
                    verb = command.split(" ")[0].split(":")[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self._say("250 sink")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip(" <>"))
                        self._say("250 ok")
                    elif verb == "DATA":
                        self._say("354 end with <CRLF>.<CRLF>")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk
                        message = email.message_from_bytes(data, policy=email.policy.default)
                        outer.messages.append((recipients, message))  # type: ignore[arg-type]
                        self._say("250 queued")
                    elif verb == "QUIT":
                        self._say("221 bye")
                        return
                    else:  # MAIL, RSET, NOOP
                        self._say("250 ok")

            def _say(self, text: str) -> None:
                self.wfile.write(text.encode() + b"\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receivers() -> Iterator[tuple[_SlackWebhook, _SmtpSink]]:
    slack, smtp = _SlackWebhook(), _SmtpSink()
    yield slack, smtp
    slack.server.shutdown()
    smtp.server.shutdown()


_PROBE_RULES = """
groups:
  - name: delivery-probe
    rules:
      - alert: DeliveryProbe
        expr: vector(1)
        labels: {severity: page, job: delivery-probe}
        annotations:
          summary: "delivery-probe is failing"
          description: "A rule that always fires, to prove notifications arrive."
          runbook: "Nothing to do: this is a test."
          dashboard: "/d/signalbox-stack-health/stack-health"
"""


def test_a_firing_prometheus_rule_reaches_slack_and_email(
    tmp_path: Path, receivers: tuple[_SlackWebhook, _SmtpSink]
) -> None:
    slack, smtp = receivers
    am_port = free_port()
    am_env = {
        "ALERTMANAGER_BIN": shutil.which("prometheus-alertmanager") or "",
        "ALERTMANAGER_CONFIG_FILE": str(tmp_path / "alertmanager.yml"),
        "ALERT_SLACK_WEBHOOK_URL": slack.url,
        "ALERT_EMAIL_TO": "oncall@example.com",
        "ALERT_EMAIL_FROM": "alertmanager@example.com",
        "ALERT_SMTP_SMARTHOST": smtp.address,
        "ALERT_SMTP_REQUIRE_TLS": "false",
        "ALERT_GROUP_WAIT": "1s",
        "ALERT_GRAFANA_URL": "http://grafana.example:3000",
    }
    am_command = [
        "sh",
        str(RENDER),
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address=",
    ]
    (tmp_path / "rules.yml").write_text(_PROBE_RULES)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"
        "alerting:\n  alertmanagers:\n"
        f"    - static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\n"
    )
    prom_port = free_port()
    prom_command = [
        "prometheus",
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        # Alertmanager discovery lands ~5 s after start; resend firing alerts soon after that
        # instead of the default 1 minute.
        "--rules.alert.resend-delay=1s",
    ]
    with (
        run_service(am_command, tmp_path, am_env, port=am_port, ready_path="/-/ready") as am,
        run_service(prom_command, tmp_path, {}, port=prom_port, ready_path="/-/ready") as prom,
    ):
        try:
            wait_for(lambda: slack.posts and smtp.messages, timeout=30, message="Slack + email")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{am.output()[-3000:]}\n{prom.output()[-3000:]}") from None

    post = slack.posts[0]
    text = json.dumps(post)
    assert "[FIRING:1] DeliveryProbe delivery-probe" in text
    assert "*delivery-probe is failing* (page)" in text
    assert "Runbook: Nothing to do: this is a test." in text
    assert "Dashboard: http://grafana.example:3000/d/signalbox-stack-health/stack-health" in text
    recipients, message = smtp.messages[0]
    assert recipients == ["oncall@example.com"]
    assert message["Subject"] == "[FIRING] DeliveryProbe delivery-probe: delivery-probe is failing"
    assert message["From"] == "alertmanager@example.com"
    # The rendered file holds the webhook secret: only its owner may read it.
    assert (tmp_path / "alertmanager.yml").stat().st_mode & 0o077 == 0
