"""External tools the stack checks run (Compose v2, promtool, hadolint), and how to find them.

A missing tool is never a silent pass: callers turn ``ToolMissing`` into a failed finding that
says how to install the tool.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Directories that never hold bundle files (dependencies, caches, tool installs).
EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".venv",
        "node_modules",
        ".tools",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        "__pycache__",
        "fixtures",
    }
)

INSTALL_HINT = "run scripts/install-system-deps.sh (or `make setup`)"


class ToolMissing(Exception):
    """The tool is not installed (or is a version that cannot do the job)."""


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()


def find_tool(name: str, root: Path) -> str | None:
    """``name`` from the project's .tools/bin, then PATH, then the running Python's bin dir."""
    for candidate in (root / ".tools" / "bin" / name, _repo_root() / ".tools" / "bin" / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return None


def run(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> ToolResult:
    try:
        completed = subprocess.run(
            list(command),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return ToolResult(124, "", f"{command[0]} did not finish within {exc.timeout:.0f}s")
    except OSError as exc:
        raise ToolMissing(f"cannot run {command[0]}: {exc}") from exc
    return ToolResult(completed.returncode, completed.stdout, completed.stderr)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment, so the caller's shell variables cannot mask a problem."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(extra or {})
    return env


def compose_command(root: Path) -> list[str]:
    """The Compose v2 command line; Compose 1.x rejects current compose files."""
    candidates: list[list[str]] = []
    standalone = find_tool("docker-compose", root)
    if standalone:
        candidates.append([standalone])
    docker = shutil.which("docker")
    if docker:
        candidates.append([docker, "compose"])
    for command in candidates:
        result = run([*command, "version"], env=clean_env(), timeout=20)
        if result.returncode == 0 and re.search(r"version v?2\.", result.stdout):
            return command
    raise ToolMissing(f"Docker Compose v2 not found (Compose 1.x cannot check); {INSTALL_HINT}")


def tool(name: str, root: Path, package: str) -> str:
    found = find_tool(name, root)
    if not found:
        raise ToolMissing(f"{name} not found ({package}); {INSTALL_HINT}")
    return found


def bundle_files(root: Path, patterns: Iterable[str]) -> list[Path]:
    """Files under ``root`` matching any glob pattern, outside dependency and cache folders.

    Walks with pruning: node_modules and .venv hold tens of thousands of files.
    """
    compiled = [_glob_regex(p) for p in patterns]
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS)
        base = Path(folder)
        for name in files:
            relative_path = (base / name).relative_to(root).as_posix()
            if any(rx.fullmatch(relative_path) for rx in compiled):
                found.append(base / name)
    return sorted(found)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``**/x.yml`` matches x.yml at any depth (including the top); ``*`` stays in one folder."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def load_yaml(path: Path) -> Any:
    """Parsed YAML; raises ValueError with the file and position on a syntax error."""
    try:
        return yaml.load(path.read_text(), Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from exc


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def compose_variables(text: str) -> dict[str, tuple[str, str]]:
    """Variables a compose file interpolates: name -> (operator, default or message)."""
    return {m[1]: (m[2] or "", m[3] or "") for m in _VAR.finditer(text)}


def resolve_defaults(value: str, env: Mapping[str, str] | None = None) -> str:
    """Interpolate ``${VAR}``, ``${VAR:-default}`` as compose does, from ``env`` or defaults."""
    env = env or {}

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match[1], match[2] or "", match[3] or ""
        if env.get(name):
            return env[name]
        return argument if operator in (":-", "-") else ""

    return _VAR.sub(replace, value)


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[3]
