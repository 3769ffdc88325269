"""``signalbox validate [DIR]``: check the bundle offline and report every finding.

Runs every check of ``signalbox.checks`` against DIR (default: the current directory): the
compose file, both Prometheus renderings and the rules, Loki and Tempo against their versions'
key schemas, Grafana provisioning, railway.toml files, Dockerfiles and YAML. All findings are
collected, then reported; exit 0 when nothing failed, 1 when a check failed, 2 on misuse.
A folder that is not a Signalbox bundle (no compose file, none of the component folders) is
misuse, unless --check names the checks to run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from signalbox.checks import all_checks
from signalbox.report import Finding, exit_code, render

# What marks a Signalbox bundle: a compose file, or one of the component folders the checks
# read. One is enough, so that a partial bundle (a single component, as in the test fixtures)
# is still checked, while an empty or unrelated folder gets one clear error instead of a
# failure from every check.
_COMPOSE_FILES = ("docker-compose.yml", "docker-compose.yaml", "compose.yaml", "compose.yml")
_COMPONENT_FOLDERS = ("prometheus", "loki", "tempo", "grafana", "alertmanager")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check the bundle offline (compose, Prometheus, Loki, Tempo, Grafana, Railway)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument(
        "directory", nargs="?", default=".", help="the bundle's root folder (default: .)"
    )
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.add_argument(
        "--check",
        action="append",
        metavar="NAME",
        help="run only this check (repeatable); names as in the report",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from signalbox.cli import UsageError

    root = Path(args.directory)
    if not root.is_dir():
        raise UsageError(f"validate: {root} is not a directory")
    if not args.check and not _is_bundle(root):
        raise UsageError(
            f"validate: {root} is not a Signalbox bundle: it has no compose file "
            f"({', '.join(_COMPOSE_FILES)}) and none of the folders "
            f"{', '.join(f + '/' for f in _COMPONENT_FOLDERS)}; give the bundle's root folder, "
            "or pick checks with --check"
        )
    checks = all_checks()
    if args.check:
        known = {_name(module) for module, _ in checks}
        unknown = sorted(set(args.check) - known)
        if unknown:
            raise UsageError(
                f"validate: unknown check {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        checks = [(m, c) for m, c in checks if _name(m) in args.check]

    findings: list[Finding] = []
    for module, check in checks:
        started = time.monotonic()
        try:
            findings.extend(check(root))
        except Exception as exc:  # a bug in a check must not hide the other checks' findings
            findings.append(
                Finding.failed(_name(module), f"the check itself crashed: {exc!r}", str(root))
            )
        print(
            f"validate: {_name(module)} done in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
    render(findings, args.output)
    return exit_code(findings)


def _is_bundle(root: Path) -> bool:
    return any((root / name).is_file() for name in _COMPOSE_FILES) or any(
        (root / name).is_dir() for name in _COMPONENT_FOLDERS
    )


def _name(module: str) -> str:
    """Report name of a check module: ``grafana_provisioning`` -> ``grafana-provisioning``."""
    return module.replace("_", "-")
