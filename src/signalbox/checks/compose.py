"""docker-compose.yml: valid for Compose v2 with and without .env, and safe to run.

- ``config -q`` with .env.example as the .env file, and with no .env at all (only the required
  variables set): every other setting must have a default;
- with nothing set, Compose must stop and name each required variable (the fail-fast message);
- every ``build.context`` exists and holds its Dockerfile; images are pinned; every service has a
  healthcheck; ``depends_on`` waits for health; published ports are bound to loopback;
- every variable the compose file reads is documented in .env.example, and vice versa.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from signalbox.checks import _tools
from signalbox.report import Finding

CHECK = "compose"
_COMPOSE_FILES = ("docker-compose.yml", "docker-compose.yaml", "compose.yaml", "compose.yml")
_PLACEHOLDER = "signalbox-validate-placeholder"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_PINNED_TAG = re.compile(r"^[^:@]+(:[^:@]*\d+\.\d+\.\d+[^:@]*)?(@sha256:[0-9a-f]{64})?$")


def run(root: Path) -> list[Finding]:
    compose_file = next((root / n for n in _COMPOSE_FILES if (root / n).is_file()), None)
    if compose_file is None:
        return [Finding.failed(CHECK, f"no compose file ({', '.join(_COMPOSE_FILES)})", ".")]
    root = root.resolve()
    compose_file = compose_file.resolve()
    location = _tools.relative(compose_file, root)
    try:
        command = _tools.compose_command(root)
    except _tools.ToolMissing as exc:
        return [Finding.failed(CHECK, str(exc), location)]

    try:
        document = _tools.load_yaml(compose_file)
    except ValueError as exc:
        return [Finding.failed(CHECK, str(exc), location)]
    # Interpolation applies to values, not to comments: collect variables from the parsed file.
    variables = _tools.compose_variables("\n".join(_strings(document)))
    required = sorted(n for n, (op, _) in variables.items() if op in (":?", "?"))
    filled = {name: _PLACEHOLDER for name in required}
    blank = sorted(n for n, (op, _) in variables.items() if op == "")
    env_example = root / ".env.example"
    findings: list[Finding] = []

    with tempfile.TemporaryDirectory(prefix="signalbox-compose-") as scratch:
        empty_env_file = Path(scratch) / "empty.env"
        empty_env_file.write_text("")
        # Every profile, so optional services (e.g. alertmanager) are checked too.
        base = [*command, "--project-directory", str(root), "-f", str(compose_file)]
        base += ["--profile", "*"]

        def config(env_file: Path, extra_env: dict[str, str], *args: str) -> _tools.ToolResult:
            return _tools.run(
                [*base, "--env-file", str(env_file), "config", *args],
                cwd=root,
                env=_tools.clean_env({"HOME": scratch, **extra_env}),
            )

        if env_example.is_file():
            result = config(env_example, filled, "-q")
            findings.append(_outcome(result, location, "valid with .env.example as .env", required))
            findings.extend(_env_documentation(variables, env_example, root))
        else:
            findings.append(
                Finding.failed(CHECK, "no .env.example documenting the settings", location)
            )

        result = config(empty_env_file, filled, "-q")
        findings.append(_outcome(result, location, "valid without .env (defaults)", required))

        if required:
            findings.append(_fails_fast(config(empty_env_file, {}, "-q"), location, required))
        if blank:
            findings.append(
                Finding.failed(
                    CHECK,
                    f"{', '.join(blank)} has neither a default (${{X:-default}}) nor a required "
                    "marker (${X:?message}): unset, Compose silently uses an empty string",
                    location,
                )
            )

        rendered = config(empty_env_file, filled, "--format", "json")
        if rendered.returncode == 0:
            try:
                model = json.loads(rendered.stdout)
            except json.JSONDecodeError as exc:
                findings.append(Finding.failed(CHECK, f"unreadable config output: {exc}", location))
            else:
                findings.extend(_services(model, root, location))
    return findings


def _outcome(result: _tools.ToolResult, location: str, what: str, required: list[str]) -> Finding:
    if result.returncode == 0:
        note = f" (required: {', '.join(required)})" if required else ""
        return Finding.passed(CHECK, f"{what}{note}", location)
    return Finding.failed(CHECK, f"not {what}: {_first_line(result.output)}", location)


def _fails_fast(result: _tools.ToolResult, location: str, required: list[str]) -> Finding:
    missing = [name for name in required if name not in result.output]
    if result.returncode != 0 and not missing:
        return Finding.passed(
            CHECK, f"stops with a message naming {', '.join(required)} when unset", location
        )
    if result.returncode == 0:
        return Finding.failed(
            CHECK, f"accepted with required {', '.join(required)} unset", location
        )
    return Finding.failed(
        CHECK,
        f"error when {', '.join(missing)} is unset does not name it: {_first_line(result.output)}",
        location,
    )


def _env_documentation(
    variables: dict[str, tuple[str, str]], env_example: Path, root: Path
) -> list[Finding]:
    documented = set()
    for line in env_example.read_text().splitlines():
        if match := re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", line):
            documented.add(match[1])
    location = _tools.relative(env_example, root)
    undocumented = sorted(set(variables) - documented)
    unused = sorted(documented - set(variables))
    if not undocumented and not unused:
        return [
            Finding.passed(CHECK, f"documents all {len(documented)} compose settings", location)
        ]
    findings = []
    if undocumented:
        findings.append(
            Finding.failed(
                CHECK,
                f"compose reads {', '.join(undocumented)} but .env.example does not document it",
                location,
            )
        )
    if unused:
        findings.append(
            Finding.failed(
                CHECK,
                f"documents {', '.join(unused)}, which docker-compose.yml never reads",
                location,
            )
        )
    return findings


def _services(model: dict[str, Any], root: Path, location: str) -> list[Finding]:
    findings: list[Finding] = []
    services: dict[str, Any] = model.get("services") or {}
    for name, service in sorted(services.items()):
        where = f"{location}: services.{name}"
        problems = [
            *_build_problems(service, root),
            *_image_problems(service),
            *_health_problems(service),
            *_dependency_problems(service, services),
            *_port_problems(service),
        ]
        if problems:
            findings.extend(Finding.failed(CHECK, problem, where) for problem in problems)
        else:
            findings.append(
                Finding.passed(CHECK, "builds, pinned, healthcheck, loopback ports", where)
            )
    return findings


def _build_problems(service: dict[str, Any], root: Path) -> list[str]:
    build = service.get("build")
    if not build:
        return []
    context = Path(build.get("context", "."))
    if not context.is_absolute():
        context = root / context
    shown = _tools.relative(context, root)
    if not context.is_dir():
        return [f"build.context {shown} does not exist"]
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    if not dockerfile.is_file():
        return [f"build.context {shown} has no {dockerfile.name}"]
    return []


def _image_problems(service: dict[str, Any]) -> list[str]:
    image = service.get("image")
    if not image or service.get("build"):
        return []  # built images are pinned by their Dockerfile's FROM (dockerfiles check)
    if not _PINNED_TAG.match(image) or (":" not in image and "@" not in image):
        return [f"image {image} is not pinned to an exact version (x.y.z tag or digest)"]
    return []


def _health_problems(service: dict[str, Any]) -> list[str]:
    health = service.get("healthcheck") or {}
    test = health.get("test") or []
    if health.get("disable") or not test or test[0] == "NONE":
        return ["no healthcheck"]
    return []


def _dependency_problems(service: dict[str, Any], services: dict[str, Any]) -> list[str]:
    problems = []
    for dependency, rule in sorted((service.get("depends_on") or {}).items()):
        if dependency not in services:
            problems.append(f"depends_on {dependency}, which is not a service")
        elif rule.get("condition") not in ("service_healthy", "service_completed_successfully"):
            problems.append(f"depends_on {dependency} without condition: service_healthy")
    return problems


def _port_problems(service: dict[str, Any]) -> list[str]:
    problems = []
    for port in service.get("ports") or []:
        host_ip = port.get("host_ip") or "0.0.0.0"  # compose's default, reported
        if port.get("published") and host_ip not in _LOOPBACK:
            problems.append(
                f"port {port.get('published')} published on {host_ip}; bind it to 127.0.0.1"
            )
    return problems


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"
