"""Alert rules and their delivery: every alert is documented, tested both ways, and routed.

- Every alert in prometheus/rules has summary, description and runbook annotations and a
  severity label the Alertmanager routes (page, ticket, warning).
- Every alert has a promtool test case where it fires and one where it must not
  (prometheus/tests/*.yml; running them is the prometheus check's job).
- The Alertmanager config rendered from ALERT_* variables (alertmanager/render-config.sh)
  passes `amtool check-config`, routes every severity to a receiver with a destination, and
  refuses to start with no destination at all: nothing fires into the void.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from signalbox.report import Finding

_SEVERITIES = ("page", "ticket", "warning")
_REQUIRED_ANNOTATIONS = ("summary", "description", "runbook")
_TIMEOUT_S = 30
# Placeholder destinations for the offline check only (nothing is sent).
_SAMPLE_ENV = {
    "ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
    "ALERT_EMAIL_TO": "oncall@example.com",
    "ALERT_EMAIL_FROM": "alertmanager@example.com",
    "ALERT_SMTP_SMARTHOST": "smtp.example.com:587",
}


def run(root: Path) -> list[Finding]:
    alerts = _alerts(root)
    findings = [_documented(name, rule, where) for name, (rule, where) in alerts.items()]
    findings += _tested(root, alerts)
    findings += _alertmanager(root)
    return findings


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _yaml_files(directory: Path) -> list[Path]:
    return (
        sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]) if directory.is_dir() else []
    )


def _alerts(root: Path) -> dict[str, tuple[dict[str, Any], str]]:
    alerts: dict[str, tuple[dict[str, Any], str]] = {}
    for file in _yaml_files(root / "prometheus" / "rules"):
        doc = _load(file)
        for group in (doc or {}).get("groups") or [] if isinstance(doc, dict) else []:
            for rule in (group or {}).get("rules") or []:
                if isinstance(rule, dict) and rule.get("alert"):
                    alerts[str(rule["alert"])] = (rule, file.relative_to(root).as_posix())
    return alerts


def _documented(name: str, rule: dict[str, Any], where: str) -> Finding:
    annotations = rule.get("annotations") or {}
    missing = [a for a in _REQUIRED_ANNOTATIONS if not str(annotations.get(a, "")).strip()]
    severity = (rule.get("labels") or {}).get("severity")
    problems = []
    if missing:
        problems.append(f"missing annotation(s) {', '.join(missing)}")
    if severity not in _SEVERITIES:
        problems.append(f"severity label {severity!r} is not one of {', '.join(_SEVERITIES)}")
    if problems:
        return Finding.failed("alerting.rules", f"{name}: {'; '.join(problems)}", where)
    return Finding.passed("alerting.rules", f"{name}: documented, severity {severity}", where)


def _tested(root: Path, alerts: dict[str, tuple[dict[str, Any], str]]) -> list[Finding]:
    fires: set[str] = set()
    quiet: set[str] = set()
    for file in _yaml_files(root / "prometheus" / "tests"):
        doc = _load(file)
        for test in (doc or {}).get("tests") or [] if isinstance(doc, dict) else []:
            for case in (test or {}).get("alert_rule_test") or []:
                if not isinstance(case, dict):
                    continue
                (fires if case.get("exp_alerts") else quiet).add(str(case.get("alertname")))
    findings = []
    for name, (_, where) in alerts.items():
        gaps = []
        if name not in fires:
            gaps.append("no promtool case where it fires")
        if name not in quiet:
            gaps.append("no promtool case where it stays quiet (exp_alerts: [])")
        if gaps:
            findings.append(Finding.failed("alerting.tests", f"{name}: {'; '.join(gaps)}", where))
        else:
            findings.append(
                Finding.passed("alerting.tests", f"{name}: tested firing and quiet", where)
            )
    return findings


def _alertmanager(root: Path) -> list[Finding]:
    script = root / "alertmanager" / "render-config.sh"
    where = "alertmanager/render-config.sh"
    if not script.is_file():
        return [
            Finding.failed(
                "alerting.alertmanager",
                "no Alertmanager config renderer: Prometheus alerts would notify nobody",
                where,
            )
        ]
    amtool = shutil.which("amtool")
    if amtool is None:
        return [
            Finding.failed(
                "alerting.alertmanager",
                "amtool not found: install Debian's prometheus-alertmanager "
                "(scripts/install-system-deps.sh)",
                where,
            )
        ]
    findings = []
    empty = _render(script, {})
    if empty.returncode == 0:
        findings.append(
            Finding.failed(
                "alerting.alertmanager",
                "renders a config with no notification channel; it must refuse to start",
                where,
            )
        )
    rendered = _render(script, _SAMPLE_ENV)
    if rendered.returncode != 0:
        return [
            *findings,
            Finding.failed(
                "alerting.alertmanager", f"render failed: {rendered.stderr.strip()}", where
            ),
        ]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "alertmanager.yml"
        config.write_text(rendered.stdout, encoding="utf-8")
        check = _amtool(amtool, "check-config", str(config))
        if check.returncode != 0:
            message = (check.stdout + check.stderr).strip().splitlines()
            return [
                *findings,
                Finding.failed(
                    "alerting.alertmanager",
                    f"amtool check-config: {' '.join(message)[-400:]}",
                    where,
                ),
            ]
        routed = _routes(amtool, config, rendered.stdout)
    findings += routed
    if not any(f.status.value == "failed" for f in findings):
        findings.append(
            Finding.passed(
                "alerting.alertmanager",
                "config passes amtool check-config; every severity reaches Slack and email",
                where,
            )
        )
    return findings


def _routes(amtool: str, config: Path, text: str) -> list[Finding]:
    doc = yaml.safe_load(text)
    receivers = {r["name"]: r for r in doc.get("receivers") or []}
    findings = []
    for severity in _SEVERITIES:
        result = _amtool(
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={config}",
            f"severity={severity}",
            "alertname=Probe",
            "job=probe",
        )
        names = result.stdout.strip().split(",")
        for name in names:
            receiver = receivers.get(name.strip(), {})
            if not (receiver.get("slack_configs") and receiver.get("email_configs")):
                findings.append(
                    Finding.failed(
                        "alerting.alertmanager",
                        f"severity={severity} goes to receiver {name.strip()!r}, which lacks "
                        "the configured Slack or email destination",
                        "alertmanager/render-config.sh",
                    )
                )
    return findings


def _render(script: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_")}
    env.update(extra)
    return subprocess.run(
        ["sh", str(script), "--print"],
        env=env,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )


def _amtool(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [amtool, *args], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
    )
