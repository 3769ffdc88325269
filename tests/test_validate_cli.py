"""`signalbox validate` as a user runs it: exit codes, JSON output, check selection, and a
missing tool reported as a failure (never as a silent pass)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from signalbox import validate
from signalbox.checks import _tools, compose, dockerfiles, prometheus
from signalbox.report import Status

FIXTURES = Path(__file__).parent / "fixtures" / "validate"


def _validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signalbox", "validate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_exit_0_and_json_when_the_selected_checks_pass() -> None:
    result = _validate(str(FIXTURES / "tempo" / "good"), "--check", "tempo", "--output", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert document["counts"] == {"passed": 1, "failed": 0, "skipped": 0}
    assert document["findings"][0]["check"] == "tempo"
    assert "tempo done" in result.stderr  # progress goes to stderr, never into the JSON


def test_exit_1_and_every_finding_reported_when_a_check_fails() -> None:
    result = _validate(str(FIXTURES / "tempo" / "bad-2x"), "--check", "tempo", "--check", "loki")
    assert result.returncode == 1
    # All findings are collected before reporting: Tempo's several problems and Loki's absence.
    assert "ingester" in result.stdout
    assert "trace_id_lable_name" in result.stdout
    assert "missing loki/Dockerfile" in result.stdout
    assert "FAILED:" in result.stdout


def test_exit_2_on_misuse() -> None:
    missing_dir = _validate(str(FIXTURES / "does-not-exist"))
    assert missing_dir.returncode == 2
    assert "is not a directory" in missing_dir.stderr
    unknown_check = _validate(str(FIXTURES), "--check", "kubernetes")
    assert unknown_check.returncode == 2
    assert "unknown check kubernetes" in unknown_check.stderr
    bad_output = _validate(str(FIXTURES), "--output", "xml")
    assert bad_output.returncode == 2


def test_only_a_signalbox_bundle_is_validated_in_full(tmp_path: Path) -> None:
    # An empty folder, or an unrelated project: one misuse error, not a failure per check.
    empty = _validate(str(tmp_path))
    (tmp_path / "README.md").write_text("# another project\n")
    (tmp_path / "src").mkdir()
    unrelated = _validate(str(tmp_path))
    for result in (empty, unrelated):
        assert result.returncode == 2
        assert f"{tmp_path} is not a Signalbox bundle" in result.stderr
        assert result.stdout == ""

    # One component folder is enough: a partial bundle gets every check, and its part passes.
    partial = _validate(str(FIXTURES / "tempo" / "good"), "--output", "json")
    assert partial.returncode == 1
    statuses = {f["check"]: f["status"] for f in json.loads(partial.stdout)["findings"]}
    assert statuses["tempo"] == "passed"
    assert statuses["compose"] == "failed"
    # The fixtures of the component checks are partial bundles too.
    for kind in ("compose", "prometheus", "loki", "tempo", "grafana"):
        for case in (FIXTURES / kind).iterdir():
            assert validate._is_bundle(case), case
    # --check picks the checks explicitly, in any folder: a Dockerfile alone is checked.
    picked = _validate(str(FIXTURES / "dockerfiles" / "good"), "--check", "dockerfiles")
    assert picked.returncode == 0, picked.stdout + picked.stderr


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without Compose, promtool or hadolint: empty PATH, no .tools, no venv bin."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_tools, "_repo_root", lambda: tmp_path)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))


@pytest.mark.usefixtures("no_tools")
def test_missing_tools_fail_with_install_instructions() -> None:
    for module, case, tool in [
        (compose, "compose/good", "Docker Compose v2 not found"),
        (prometheus, "prometheus/good", "promtool not found"),
        (dockerfiles, "dockerfiles/good", "hadolint not found"),
    ]:
        findings = module.run(FIXTURES / case)
        assert [f.status for f in findings] == [Status.FAILED], module.CHECK
        assert tool in findings[0].message
        assert "scripts/install-system-deps.sh" in findings[0].message


def test_compose_1x_is_not_accepted_as_compose(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian bookworm's docker-compose 1.29 cannot check current files: not a substitute."""
    fake = tmp_path / "docker-compose"
    fake.write_text("#!/bin/sh\necho 'docker-compose version 1.29.2, build unknown'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(_tools, "_repo_root", lambda: tmp_path)
    with pytest.raises(_tools.ToolMissing, match=r"Compose 1\.x cannot check"):
        _tools.compose_command(tmp_path)
