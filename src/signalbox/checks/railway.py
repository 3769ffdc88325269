"""railway.toml files against Railway's documented config-as-code keys.

Reference: https://docs.railway.com/config-as-code/reference (the JSON schema at
railway.com/railway.schema.json is the authority; it cannot be fetched offline, so the
documented keys are listed here). Every service folder's railway.toml must build its
Dockerfile, watch only its own folder, declare a health check path and a restart policy. The
root railway.toml is what Railway falls back to for a service without a config path, so it
must hold only settings that suit every service.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from signalbox.checks import _tools
from signalbox.report import Finding

CHECK = "railway"
_BUILD_KEYS = {
    "builder",
    "buildCommand",
    "dockerfilePath",
    "watchPatterns",
    "railpackVersion",
    "nixpacksConfigPath",
    "nixpacksPlan",
    "nixpacksVersion",
    "buildEnvironment",
}
_DEPLOY_KEYS = {
    "startCommand",
    "preDeployCommand",
    "numReplicas",
    "multiRegionConfig",
    "healthcheckPath",
    "healthcheckTimeout",
    "restartPolicyType",
    "restartPolicyMaxRetries",
    "cronSchedule",
    "sleepApplication",
    "overlapSeconds",
    "drainingSeconds",
    "requiredMountPath",
    "runtime",
    "region",
    "limitOverride",
}
_TOP_KEYS = {"$schema", "build", "deploy", "environments"}
_BUILDERS = {"DOCKERFILE", "RAILPACK", "NIXPACKS"}
_RESTART = {"ON_FAILURE", "ALWAYS", "NEVER"}
# Settings that belong to one service and would be wrong for the others in the root file.
_SERVICE_ONLY = {"watchPatterns", "healthcheckPath", "startCommand", "preDeployCommand"}


def run(root: Path) -> list[Finding]:
    root = root.resolve()
    files = _tools.bundle_files(root, ["railway.toml", "**/railway.toml"])
    if not (root / "railway.toml").is_file():
        return [Finding.failed(CHECK, "no root railway.toml", "railway.toml")]
    findings = []
    for path in files:
        location = _tools.relative(path, root)
        try:
            document = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            findings.append(Finding.failed(CHECK, f"not valid TOML: {exc}", location))
            continue
        problems = _keys(document)
        folder = path.parent.relative_to(root)
        if folder == Path():
            problems += _root_file(document)
        else:
            problems += _service_file(document, root, path.parent, folder)
        if problems:
            findings.extend(Finding.failed(CHECK, p, location) for p in problems)
        else:
            role = "fallback for every service" if folder == Path() else f"service /{folder}"
            findings.append(Finding.passed(CHECK, f"documented keys; {role}", location))
    return findings


def _keys(document: dict[str, Any]) -> list[str]:
    problems = [f"unknown top-level key {k}" for k in sorted(set(document) - _TOP_KEYS)]
    sections = [("build", document.get("build") or {}, _BUILD_KEYS)]
    sections.append(("deploy", document.get("deploy") or {}, _DEPLOY_KEYS))
    for name, section, allowed in sections:
        if not isinstance(section, dict):
            problems.append(f"[{name}] must be a table")
            continue
        problems += [f"unknown key {name}.{k}" for k in sorted(set(section) - allowed)]
    build, deploy = document.get("build") or {}, document.get("deploy") or {}
    if "builder" in build and build["builder"] not in _BUILDERS:
        problems.append(f"build.builder {build['builder']!r} not one of {sorted(_BUILDERS)}")
    if "restartPolicyType" in deploy and deploy["restartPolicyType"] not in _RESTART:
        problems.append(
            f"deploy.restartPolicyType {deploy['restartPolicyType']!r} not one of "
            f"{sorted(_RESTART)}"
        )
    for key in ("healthcheckTimeout", "restartPolicyMaxRetries", "numReplicas"):
        if key in deploy and (not isinstance(deploy[key], int) or deploy[key] < 0):
            problems.append(f"deploy.{key} must be a non-negative integer")
    path = deploy.get("healthcheckPath")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        problems.append("deploy.healthcheckPath must start with /")
    patterns = build.get("watchPatterns")
    if patterns is not None and (
        not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns)
    ):
        problems.append("build.watchPatterns must be a list of strings")
    return problems


def _root_file(document: dict[str, Any]) -> list[str]:
    settings = {**(document.get("build") or {}), **(document.get("deploy") or {})}
    return [
        f"{key} in the root railway.toml would apply to every service without a config path; "
        "set it in the service folder's railway.toml"
        for key in sorted(_SERVICE_ONLY & set(settings))
    ]


def _service_file(document: dict[str, Any], root: Path, folder: Path, relative: Path) -> list[str]:
    build, deploy = document.get("build") or {}, document.get("deploy") or {}
    problems = []
    if build.get("builder") != "DOCKERFILE":
        problems.append("build.builder must be DOCKERFILE (the image is the tested artefact)")
    dockerfile = build.get("dockerfilePath")
    if not dockerfile:
        problems.append("build.dockerfilePath is not set")
    else:
        # Relative to the service's root directory, or absolute from the repository root.
        base = root if str(dockerfile).startswith("/") else folder
        if not (base / str(dockerfile).lstrip("/")).is_file():
            problems.append(f"build.dockerfilePath {dockerfile} does not exist")
    patterns = build.get("watchPatterns") or []
    prefix = f"/{relative.as_posix()}/"
    if not patterns:
        problems.append(f'build.watchPatterns missing (e.g. ["{prefix}**"])')
    elif not all(str(p).lstrip("!").startswith(prefix) for p in patterns):
        problems.append(f"build.watchPatterns {patterns} reach outside {prefix}")
    if not deploy.get("healthcheckPath"):
        problems.append("deploy.healthcheckPath is not set")
    if not deploy.get("restartPolicyType"):
        problems.append("deploy.restartPolicyType is not set")
    return problems
