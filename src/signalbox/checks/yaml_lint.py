"""YAML files of the bundle through yamllint (https://yamllint.readthedocs.io/).

The rules are the repository's .yamllint.yaml (yamllint's defaults with a 120-column limit and
no document-start marker); syntax errors and rule violations both fail.
"""

from __future__ import annotations

from pathlib import Path

from yamllint import linter  # type: ignore[import-untyped]
from yamllint.config import (  # type: ignore[import-untyped]
    YamlLintConfig,
    YamlLintConfigError,
)

from signalbox.checks import _tools
from signalbox.report import Finding

CHECK = "yaml-lint"
# Used when the bundle has no .yamllint.yaml of its own.
DEFAULT_CONFIG = """\
extends: default
rules:
  line-length: {max: 120}
  document-start: disable
  truthy: {allowed-values: ["true", "false"], check-keys: false}
  comments: {min-spaces-from-content: 1}
  indentation: {spaces: 2, indent-sequences: consistent}
"""


def run(root: Path) -> list[Finding]:
    root = root.resolve()
    config_file = root / ".yamllint.yaml"
    try:
        if config_file.is_file():
            config = YamlLintConfig(file=str(config_file))
        else:
            config = YamlLintConfig(content=DEFAULT_CONFIG)
    except YamlLintConfigError as exc:
        return [Finding.failed(CHECK, f"bad yamllint configuration: {exc}", ".yamllint.yaml")]
    files = _tools.bundle_files(root, ["*.yml", "*.yaml", "**/*.yml", "**/*.yaml"])
    files = [f for f in files if not config.is_file_ignored(str(f.relative_to(root)))]
    findings: list[Finding] = []
    for path in files:
        location = _tools.relative(path, root)
        problems = [
            p
            # The relative path: rule-level `ignore:` patterns are relative to the root.
            for p in linter.run(path.read_text(), config, location)
            if p.level in ("error", "warning")
        ]
        if problems:
            findings.extend(
                Finding.failed(CHECK, f"{p.rule or 'syntax'}: {p.desc}", f"{location}:{p.line}")
                for p in problems
            )
    if not any(f.status.value == "failed" for f in findings):
        findings.append(Finding.passed(CHECK, f"{len(files)} YAML files clean", "."))
    return findings
