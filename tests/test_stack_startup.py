"""The start-up scripts baked into the stack's images, run as the images run them.

- prometheus/render-config.sh renders the scrape targets from the environment and refuses bad
  values naming the variable; prometheus/entrypoint.sh passes the project's flags;
- grafana/signalbox-entrypoint.sh refuses to start without an admin password.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RENDER = REPO / "prometheus" / "render-config.sh"
ENTRYPOINT = REPO / "prometheus" / "entrypoint.sh"
TEMPLATE = REPO / "prometheus" / "prometheus.yml"
# dash is Debian's /bin/sh; the images run busybox sh. Both are POSIX shells without bashisms.
SHELLS = ["dash", "sh"]


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ["PATH"], **env}
    return subprocess.run(
        command, env=full_env, capture_output=True, text=True, timeout=30, check=False
    )


def _render(tmp_path: Path, env: dict[str, str], shell: str = "sh") -> tuple[int, str, dict]:
    output = tmp_path / "prometheus.yml"
    result = _run([shell, str(RENDER), str(TEMPLATE), str(output)], env)
    config = yaml.safe_load(output.read_text()) if result.returncode == 0 else {}
    return result.returncode, result.stderr, config


def _targets(config: dict) -> dict[str, list[str]]:
    return {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }


@pytest.mark.parametrize("shell", SHELLS)
def test_defaults_scrape_the_compose_service_names(tmp_path: Path, shell: str) -> None:
    code, stderr, config = _render(tmp_path, {}, shell)
    assert code == 0, stderr
    assert _targets(config) == {
        "prometheus": ["localhost:9090"],
        "fastapi-app": ["fastapi-app:8000"],
        "api": ["api:9091"],
        "loki": ["loki:3100"],
        "tempo": ["tempo:3200"],
        "grafana": ["grafana:3000"],
        "otel-collector": ["otel-collector:8888"],
    }
    assert config["global"]["scrape_interval"] == "15s"
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == []
    assert config["rule_files"] == ["rules/*.yml"]


def test_railway_private_domains_ipv6_and_lists(tmp_path: Path) -> None:
    code, stderr, config = _render(
        tmp_path,
        {
            "FASTAPI_APP_TARGETS": "fastapi-app.railway.internal:8000",
            "API_TARGETS": " api-1.railway.internal:9091 , [fd12:3456::7]:9091 ",
            "ALERTMANAGER_TARGETS": "alertmanager.railway.internal:9093",
            "GRAFANA_TARGETS": "",
            "PROMETHEUS_SCRAPE_INTERVAL": "5s",
        },
    )
    assert code == 0, stderr
    targets = _targets(config)
    assert targets["fastapi-app"] == ["fastapi-app.railway.internal:8000"]
    assert targets["api"] == ["api-1.railway.internal:9091", "[fd12:3456::7]:9091"]
    assert targets["grafana"] == []  # set but empty: that job scrapes nothing
    assert config["global"]["scrape_interval"] == "5s"
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager.railway.internal:9093"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"FASTAPI_APP_TARGETS": "fastapi-app.railway.internal"},
            "FASTAPI_APP_TARGETS: 'fastapi-app.railway.internal' is not host:port",
        ),
        (
            {"API_TARGETS": "api:9091', evil: 'x:1"},
            "API_TARGETS: 'api:9091'' is not host:port",  # YAML injection refused
        ),
        ({"LOKI_TARGETS": "http://loki:3100"}, "LOKI_TARGETS: 'http://loki:3100'"),
        (
            {"PROMETHEUS_SCRAPE_INTERVAL": "15"},
            "PROMETHEUS_SCRAPE_INTERVAL: '15' is not a Prometheus duration",
        ),
    ],
)
def test_bad_values_fail_naming_the_variable(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    code, stderr, _ = _render(tmp_path, env)
    assert code == 1
    assert message in stderr
    assert not (tmp_path / "prometheus.yml").exists(), "no half-rendered config is left behind"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    code, stderr, _ = _render(
        tmp_path, {"API_TARGETS": "nope", "TEMPO_TARGETS": "x", "PROMETHEUS_SCRAPE_TIMEOUT": "?"}
    )
    assert code == 1
    assert "API_TARGETS" in stderr and "TEMPO_TARGETS" in stderr
    assert "PROMETHEUS_SCRAPE_TIMEOUT" in stderr
    assert "3 invalid setting(s)" in stderr


def test_unknown_placeholder_in_the_template_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "template.yml"
    template.write_text("global:\n  scrape_interval: ${SCRAPE_EVERY}\n")
    output = tmp_path / "out.yml"
    result = _run(["sh", str(RENDER), str(template), str(output)], {})
    assert result.returncode == 1
    assert "unknown placeholder(s): ${SCRAPE_EVERY}" in result.stderr
    assert not output.exists()


def _entrypoint(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the image's entrypoint with `echo` standing in for Prometheus: prints its flags."""
    return _run(
        ["sh", str(ENTRYPOINT), "--log.level=debug"],
        {
            "PROMETHEUS_BIN": "echo",
            "PROMETHEUS_TEMPLATE": str(TEMPLATE),
            "PROMETHEUS_CONFIG": str(tmp_path / "prometheus.yml"),
            "PROMETHEUS_DATA_DIR": str(tmp_path / "data"),
            **env,
        },
    )


def test_entrypoint_passes_the_project_flags(tmp_path: Path) -> None:
    result = _entrypoint(tmp_path, {"PROMETHEUS_RETENTION_TIME": "30d"})
    assert result.returncode == 0, result.stderr
    flags = result.stdout.split()
    assert f"--config.file={tmp_path / 'prometheus.yml'}" in flags
    assert "--storage.tsdb.retention.time=30d" in flags
    assert "--storage.tsdb.retention.size=5GB" in flags
    assert "--web.listen-address=:9090" in flags
    assert "--web.enable-remote-write-receiver" in flags
    assert "--enable-feature=exemplar-storage" in flags
    assert flags[-1] == "--log.level=debug"  # extra arguments are passed through
    assert (tmp_path / "prometheus.yml").is_file()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PROMETHEUS_RETENTION_TIME": "a month"}, "PROMETHEUS_RETENTION_TIME: 'a month'"),
        ({"PROMETHEUS_RETENTION_SIZE": "5G"}, "PROMETHEUS_RETENTION_SIZE: '5G' is not a size"),
        ({"API_TARGETS": "api"}, "API_TARGETS: 'api' is not host:port"),
    ],
)
def test_entrypoint_fails_fast_on_bad_settings(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = _entrypoint(tmp_path, env)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == "", "Prometheus must not be started"


GRAFANA_ENTRYPOINT = REPO / "grafana" / "signalbox-entrypoint.sh"


@pytest.mark.parametrize(
    ("password", "message"),
    [
        (None, "GF_SECURITY_ADMIN_PASSWORD is not set"),
        ("", "GF_SECURITY_ADMIN_PASSWORD is not set"),
        ("admin", "is Grafana's default 'admin'"),
    ],
)
def test_grafana_refuses_default_credentials(password: str | None, message: str) -> None:
    env = {} if password is None else {"GF_SECURITY_ADMIN_PASSWORD": password}
    result = _run(["sh", str(GRAFANA_ENTRYPOINT)], env)
    assert result.returncode == 1
    assert message in result.stderr


def test_grafana_starts_with_a_password() -> None:
    # Past the checks it execs the image's /run.sh, which does not exist outside the image.
    result = _run(["sh", str(GRAFANA_ENTRYPOINT)], {"GF_SECURITY_ADMIN_PASSWORD": "s3cret-pw"})
    assert "GF_SECURITY_ADMIN_PASSWORD" not in result.stderr
    assert "/run.sh" in result.stderr
    assert result.returncode == 127
