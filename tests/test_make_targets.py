"""The make targets a new user types first, run through make as the README says.

``make up``/``make down`` run Compose v2 in whichever form the machine has (the docker plugin,
or the standalone ``docker-compose`` that ``make setup`` puts in .tools/bin) and, without a
Docker engine, say so in one line. ``make help`` lists every target the README names.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


_OUTER_MAKE = frozenset({"MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"})


def _make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # Under `make test` the suite inherits make's own variables: a nested make would then
        # prefix its messages with "make[1]:" and pass on the outer flags.
        env={
            **{k: v for k, v in os.environ.items() if k not in _OUTER_MAKE},
            **(env or {}),
        },
    )


def _script_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the recipe printed, without make's own "make: *** [...] Error 1" line."""
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.strip() and not line.startswith("make:")]


def _readme_make_targets() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    # Only code (fenced blocks and `spans`): prose may say "make sure".
    code = re.findall(r"```.*?```", text, flags=re.DOTALL)
    code += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.DOTALL))
    return {target for snippet in code for target in re.findall(r"\bmake ([a-z][\w-]*)", snippet)}


def test_make_help_lists_every_target_the_readme_names() -> None:
    named = _readme_make_targets()
    assert {"setup", "setup-python", "up", "down", "verify"} <= named  # the parser finds them

    result = _make("-s", "help")

    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert sorted(named - listed) == []


def _fake_bin(tmp_path: Path, *, plugin: bool, standalone_version: str) -> Path:
    """A docker CLI (with or without the compose plugin) and a docker-compose, both logging."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    docker_compose_answer = (
        'if [ "$2" = version ]; then echo "Docker Compose version v2.29.7"; exit 0; fi\n'
        if plugin
        # What the real docker CLI answers without the plugin.
        else 'echo "docker: unknown command: docker compose" >&2; exit 1\n'
    )
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = compose ]; then\n'
        f"  {docker_compose_answer}"
        "fi\n"
        f'echo "docker $*" >> {log}\n'
    )
    (bin_dir / "docker-compose").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then '
        f'echo "{standalone_version}"; exit 0; fi\n'
        f'echo "docker-compose $*" >> {log}\n'
    )
    for tool in ("docker", "docker-compose"):
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_make_up_and_down_use_whichever_compose_v2_exists(tmp_path: Path) -> None:
    # PATH on make's command line replaces the Makefile's (which puts .tools/bin first).
    standalone = tmp_path / "standalone"
    standalone.mkdir()
    path = f"PATH={_fake_bin(standalone, plugin=False, standalone_version='2.26.1')}:/usr/bin:/bin"
    up, down = _make("up", path), _make("down", path)

    assert up.returncode == 0, up.stdout + up.stderr
    assert down.returncode == 0, down.stdout + down.stderr
    assert _calls(standalone) == [
        "docker-compose ls --quiet",
        "docker-compose up -d --build",
        "docker-compose ls --quiet",
        "docker-compose down",
    ]

    # The docker plugin wins when it works; a Compose 1.x beside it is never used.
    with_plugin = tmp_path / "plugin"
    with_plugin.mkdir()
    path = f"PATH={_fake_bin(with_plugin, plugin=True, standalone_version='1.29.2')}:/usr/bin:/bin"
    up = _make("up", path)

    assert up.returncode == 0, up.stdout + up.stderr
    assert _calls(with_plugin) == ["docker compose ls --quiet", "docker compose up -d --build"]


def test_make_up_with_only_compose_1x_says_how_to_get_v2(tmp_path: Path) -> None:
    path = f"PATH={_fake_bin(tmp_path, plugin=False, standalone_version='1.29.2')}:/usr/bin:/bin"
    result = _make("up", path)

    assert result.returncode != 0
    [line] = _script_lines(result)
    assert "Docker Compose v2 not found" in line
    assert "make setup-system" in line
    assert "signalbox stack up" in line
    assert _calls(tmp_path) == []  # Compose 1.x was not run


def test_make_up_without_a_docker_engine_says_so_in_one_line(tmp_path: Path) -> None:
    # The real Compose v2 of this machine (plugin or .tools/bin), pointed at an engine that
    # is not there, whatever this machine runs.
    engine = f"unix://{tmp_path}/docker.sock"
    for target, native in (("up", "signalbox stack up"), ("down", "signalbox stack down")):
        result = _make(target, env={"DOCKER_HOST": engine})

        assert result.returncode != 0
        [line] = _script_lines(result)
        assert "no Docker engine reachable" in line
        assert engine.removeprefix("unix://") in line  # Compose's own reason, kept
        assert native in line
