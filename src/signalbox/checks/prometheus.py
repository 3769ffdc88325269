"""Prometheus: both renderings of the configuration template, the rules and the rule tests.

The template (prometheus/prometheus.yml) is rendered by the image's own renderer
(prometheus/render-config.sh) twice, with the environment docker-compose.yml gives the
prometheus service and with the Railway targets (prometheus/targets.railway.env), and each
result is checked with ``promtool check config``. Then ``promtool check rules`` on
prometheus/rules/*.yml and ``promtool test rules`` on prometheus/tests/*.yml.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from signalbox.checks import _tools
from signalbox.report import Finding

CHECK = "prometheus"
_TEMPLATE = Path("prometheus/prometheus.yml")
_RENDERER = Path("prometheus/render-config.sh")
_RAILWAY_ENV = Path("prometheus/targets.railway.env")
_COMPOSE = "docker-compose.yml"


def run(root: Path) -> list[Finding]:
    root = root.resolve()
    template, renderer = root / _TEMPLATE, root / _RENDERER
    missing = [str(p) for p in (_TEMPLATE, _RENDERER) if not (root / p).is_file()]
    if missing:
        return [Finding.failed(CHECK, f"missing {', '.join(missing)}", "prometheus/")]
    try:
        promtool = _tools.tool("promtool", root, "Debian package prometheus")
    except _tools.ToolMissing as exc:
        return [Finding.failed(CHECK, str(exc), str(_TEMPLATE))]

    findings: list[Finding] = []
    renderings: list[tuple[str, dict[str, str]]] = []
    compose_env = _compose_environment(root)
    if compose_env is None:
        findings.append(
            Finding.failed(CHECK, "docker-compose.yml has no prometheus service", _COMPOSE)
        )
    else:
        renderings.append(("compose", compose_env))
    railway_env = _read_env_file(root / _RAILWAY_ENV)
    if railway_env is None:
        findings.append(
            Finding.failed(CHECK, "missing the Railway targets file", str(_RAILWAY_ENV))
        )
    else:
        renderings.append(("railway", railway_env))

    with tempfile.TemporaryDirectory(prefix="signalbox-prometheus-") as scratch:
        for name, env in renderings:
            findings.append(
                _check_rendering(root, promtool, template, renderer, name, env, scratch)
            )
    findings.extend(_check_rules(root, promtool))
    findings.extend(_test_rules(root, promtool))
    return findings


def _check_rendering(
    root: Path,
    promtool: str,
    template: Path,
    renderer: Path,
    name: str,
    env: dict[str, str],
    scratch: str,
) -> Finding:
    where = f"{_TEMPLATE} ({name} rendering)"
    folder = Path(scratch) / name
    folder.mkdir()
    # Rule globs in the config are relative to it: mirror the image's /etc/prometheus layout.
    rules = root / "prometheus" / "rules"
    if rules.is_dir():
        (folder / "rules").symlink_to(rules.resolve(), target_is_directory=True)
    output = folder / "prometheus.yml"
    rendered = _tools.run(
        ["sh", str(renderer), str(template), str(output)], env=_tools.clean_env(env)
    )
    if rendered.returncode != 0:
        return Finding.failed(CHECK, f"renderer refused: {rendered.output}", where)
    checked = _tools.run([promtool, "check", "config", str(output)], cwd=folder)
    if checked.returncode != 0:
        return Finding.failed(CHECK, f"promtool check config: {_tail(checked.output)}", where)
    targets = sorted(v for k, v in env.items() if k.endswith("_TARGETS") and v)
    return Finding.passed(
        CHECK,
        "promtool check config passed" + (f" (targets {', '.join(targets)})" if targets else ""),
        where,
    )


def _check_rules(root: Path, promtool: str) -> list[Finding]:
    files = sorted((root / "prometheus" / "rules").glob("*.yml"))
    if not files:
        return [Finding.skipped(CHECK, "no rule files yet", "prometheus/rules/")]
    result = _tools.run(
        [promtool, "check", "rules", *(str(f) for f in files)], cwd=root / "prometheus"
    )
    where = "prometheus/rules/"
    if result.returncode != 0:
        return [Finding.failed(CHECK, f"promtool check rules: {_tail(result.output)}", where)]
    return [Finding.passed(CHECK, f"promtool check rules passed ({len(files)} files)", where)]


def _test_rules(root: Path, promtool: str) -> list[Finding]:
    tests_dir = root / "prometheus" / "tests"
    files = sorted(tests_dir.glob("*.yml"))
    if not files:
        return [Finding.skipped(CHECK, "no rule tests yet", "prometheus/tests/")]
    result = _tools.run(
        [promtool, "test", "rules", *(f.name for f in files)], cwd=tests_dir, timeout=120
    )
    where = "prometheus/tests/"
    if result.returncode != 0:
        return [Finding.failed(CHECK, f"promtool test rules: {_tail(result.output)}", where)]
    return [Finding.passed(CHECK, f"promtool test rules passed ({len(files)} files)", where)]


def _compose_environment(root: Path) -> dict[str, str] | None:
    """The prometheus service's environment in docker-compose.yml, defaults interpolated."""
    path = root / _COMPOSE
    if not path.is_file():
        return None
    try:
        document: Any = _tools.load_yaml(path)
    except ValueError:
        return None  # the compose check reports the syntax error
    service = ((document or {}).get("services") or {}).get("prometheus")
    if not isinstance(service, dict):
        return None
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment if "=" in item)
    return {str(k): _tools.resolve_defaults(str(v)) for k, v in environment.items()}


def _read_env_file(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _tail(text: str, lines: int = 6) -> str:
    """promtool's failure lines, without its progress chatter."""
    kept = [
        line.strip()
        for line in text.strip().splitlines()
        if line.strip() and not line.strip().startswith(("Checking ", "SUCCESS", "Unit Testing"))
    ]
    return " | ".join(kept[-lines:])
