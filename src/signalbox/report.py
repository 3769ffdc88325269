"""Findings collected by a command, and how they are reported.

Every command collects all findings first, then reports once: a human table (or JSON with
``--output json``) on stdout, diagnostics on stderr, and an exit code:
0 all good, 1 a check failed, 2 misuse.

A warning is a finding that works today but should be changed (a configuration key the pinned
release still accepts but has deprecated): it is reported, and it does not fail the command.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_MISUSE = 2


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    WARNING = "warning"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Finding:
    """One result of one check: what was checked, where, and what was found."""

    check: str
    status: Status
    message: str
    location: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def passed(cls, check: str, message: str, location: str = "", **details: Any) -> Finding:
        return cls(check, Status.PASSED, message, location, details)

    @classmethod
    def failed(cls, check: str, message: str, location: str = "", **details: Any) -> Finding:
        return cls(check, Status.FAILED, message, location, details)

    @classmethod
    def warning(cls, check: str, message: str, location: str = "", **details: Any) -> Finding:
        return cls(check, Status.WARNING, message, location, details)

    @classmethod
    def skipped(cls, check: str, message: str, location: str = "", **details: Any) -> Finding:
        return cls(check, Status.SKIPPED, message, location, details)


def exit_code(findings: Iterable[Finding]) -> int:
    """1 when a check failed; warnings alone exit 0."""
    return EXIT_FAILED if any(f.status is Status.FAILED for f in findings) else EXIT_OK


def render(findings: list[Finding], output: str, stream: TextIO = sys.stdout) -> None:
    """Write the findings as a table (``text``) or a JSON document (``json``)."""
    if output == "json":
        document = {
            "ok": exit_code(findings) == EXIT_OK,
            "counts": _counts(findings),
            "findings": [asdict(f) for f in findings],
        }
        json.dump(document, stream, indent=2, default=str)
        stream.write("\n")
        return
    _render_text(findings, stream)


def _render_text(findings: list[Finding], stream: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    # Not a terminal (CI logs, pipes): wide enough that messages are not folded into slivers.
    console = Console(file=stream, highlight=False, width=None if stream.isatty() else 160)
    table = Table(show_header=True, header_style="bold", expand=False)
    for column in ("check", "status", "location", "message"):
        table.add_column(column, overflow="fold")
    style = {
        Status.PASSED: "green",
        Status.FAILED: "red",
        Status.WARNING: "magenta",
        Status.SKIPPED: "yellow",
    }
    for f in findings:
        table.add_row(f.check, f"[{style[f.status]}]{f.status.value}[/]", f.location, f.message)
    console.print(table)
    counts = _counts(findings)
    verdict = "FAILED" if counts["failed"] else "OK"
    words = {"warning": "warnings"}
    summary = ", ".join(f"{n} {words.get(status, status)}" for status, n in counts.items())
    console.print(f"{verdict}: {summary}")


def _counts(findings: list[Finding]) -> dict[str, int]:
    """Findings per status; ``warning`` only when there is one, so that commands that never
    warn (verify) keep the report shape their users parse."""
    counts = {s.value: sum(f.status is s for f in findings) for s in Status}
    if not counts[Status.WARNING.value]:
        del counts[Status.WARNING.value]
    return counts
