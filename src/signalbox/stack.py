"""``signalbox stack up|down|status``: the bundle, natively, on loopback, without Docker.

Each component runs from the repository's own files and start-up scripts, with only paths and
addresses substituted, the way the images run them: Prometheus through
``prometheus/entrypoint.sh`` (Debian's ``prometheus``), the OpenTelemetry Collector through
``otel-collector/entrypoint.sh`` (the binary ``make backends`` builds), Alertmanager through
``alertmanager/render-config.sh`` when an ``ALERT_*`` destination is set, and both sample
services as ``python -m app`` and ``npm start``, wired as in ``docker-compose.yml``. Loki, Tempo
and Grafana are started from ``.tools/bin`` or the PATH when a binary is there; none is built
here (README, "What was verified how").

State and logs live under ``.stack/`` (``--state-dir``): ``down`` stops exactly the processes
``up`` recorded. Ports default to compose's and follow the same variables (``.env`` as compose
reads it, exported variables winning).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from signalbox.report import EXIT_FAILED, EXIT_OK

_LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class Component:
    """How one component starts natively and how to tell it is up."""

    name: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    health_url: str
    url: str
    version: str
    # Files written before start (rendered configs, links), relative to the state dir.
    prepare: Callable[[], None] | None = field(default=None, compare=False)


@dataclass
class Running:
    """One started component, as recorded in ``state.json``."""

    name: str
    pid: int
    url: str
    health_url: str
    version: str
    log: str
    started_at: float


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="run the bundle natively on loopback (no Docker): up, down, status",
        description=(
            "Start, stop or inspect the bundle run natively from the repository's own files "
            "(Prometheus, the OpenTelemetry Collector, Alertmanager, both sample services)."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="start every component and wait until each is healthy")
    up.add_argument(
        "--only",
        metavar="NAME,...",
        help="start only these components (names as in `stack status`)",
    )
    up.add_argument(
        "--timeout", type=float, default=60.0, help="seconds each component has to come up"
    )
    actions.add_parser("down", help="stop exactly what `stack up` started")
    status = actions.add_parser("status", help="what runs, and whether it answers")
    status.add_argument("--output", choices=("text", "json"), default="text")
    for sub in (up, actions.choices["down"], status):
        sub.add_argument(
            "--state-dir",
            default=".stack",
            help="where state and logs are kept (default: .stack in the bundle folder)",
        )
        sub.add_argument("--bundle", default=".", help="the bundle's root folder (default: .)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from signalbox.cli import UsageError

    bundle = Path(args.bundle).resolve()
    if not (bundle / "docker-compose.yml").is_file():
        raise UsageError(f"stack: {bundle} is not a Signalbox bundle (no docker-compose.yml)")
    state_dir = Path(args.state_dir)
    if not state_dir.is_absolute():
        state_dir = bundle / state_dir
    if args.action == "up":
        return _up(bundle, state_dir, args.only, args.timeout)
    if args.action == "down":
        return _down(state_dir)
    return _status(state_dir, args.output)


# --- up ---------------------------------------------------------------------------------------


def _up(bundle: Path, state_dir: Path, only: str | None, timeout: float) -> int:
    from signalbox.cli import UsageError

    if any(_alive(r) for r in _read_state(state_dir)):
        raise UsageError(f"stack: already up (state in {state_dir}); run `signalbox stack down`")
    env = _settings(bundle)
    available, unavailable = _components(bundle, state_dir, env)
    if only:
        wanted = [name.strip() for name in only.split(",") if name.strip()]
        known = {c.name for c in available} | set(unavailable)
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise UsageError(f"stack: unknown component {', '.join(unknown)}")
        missing = [name for name in wanted if name in unavailable]
        if missing:
            for name in missing:
                print(f"stack: {name}: {unavailable[name]}", file=sys.stderr)
            return EXIT_FAILED
        available = [c for c in available if c.name in wanted]
        unavailable = {}

    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    started: list[Running] = []
    for component in available:
        try:
            running = _start(component, state_dir)
        except OSError as exc:
            print(f"stack: {component.name} could not start: {exc}", file=sys.stderr)
            _stop_all(started)
            _write_state(state_dir, [])
            return EXIT_FAILED
        started.append(running)
        _write_state(state_dir, started)
        problem = _wait_healthy(running, timeout)
        if problem:
            print(f"stack: {component.name} did not come up: {problem}", file=sys.stderr)
            print(f"--- last lines of {running.log}", file=sys.stderr)
            print(_tail(Path(running.log)), file=sys.stderr)
            _stop_all(started)
            _write_state(state_dir, [])
            return EXIT_FAILED
        print(
            f"{running.name:<15} {running.url:<28} {running.version:<24} "
            f"pid {running.pid:<7} {running.log}"
        )
    for name, reason in unavailable.items():
        print(f"{name:<15} not started: {reason}")
    return EXIT_OK


def _start(component: Component, state_dir: Path) -> Running:
    if component.prepare is not None:
        component.prepare()
    log_path = state_dir / "logs" / f"{component.name}.log"
    with log_path.open("ab") as sink:
        process = subprocess.Popen(
            component.command,
            cwd=component.cwd,
            env=component.env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `down` stops npm's node too
        )
    return Running(
        component.name,
        process.pid,
        component.url,
        component.health_url,
        component.version,
        str(log_path),
        _process_start_time(process.pid),
    )


def _wait_healthy(running: Running, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if not _alive(running):
            return "the process exited"
        try:
            status = httpx.get(running.health_url, timeout=2).status_code
        except httpx.HTTPError as exc:
            last_error = str(exc) or type(exc).__name__
        else:
            if status == 200:
                return None
            last_error = f"HTTP {status}"
        time.sleep(0.25)
    return f"{running.health_url} did not answer 200 within {timeout:.0f} s ({last_error})"


# --- the components ----------------------------------------------------------------------------


def _settings(bundle: Path) -> dict[str, str]:
    """The environment: ``.env`` in the bundle as compose reads it, exported variables win."""
    env = _read_dotenv(bundle / ".env")
    env.update(os.environ)
    return env


def _read_dotenv(path: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    from signalbox.cli import UsageError

    raw = env.get(name, "") or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UsageError(f"stack: {name}: {raw!r} is not a port number")
    return int(raw)


@dataclass(frozen=True)
class _Bundle:
    """What every component's start-up is derived from."""

    root: Path
    state_dir: Path
    env: Mapping[str, str]
    ports: Mapping[str, int]

    @property
    def path(self) -> str:
        """PATH with the bundle's own tools first (the pinned Node from `make setup-node`)."""
        return f"{self.root / '.tools' / 'bin'}{os.pathsep}{self.env.get('PATH', os.defpath)}"

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.path)

    def local(self, port: str) -> str:
        return f"127.0.0.1:{self.ports[port]}"


# Ports and their variables, defaults as in docker-compose.yml (Tempo's OTLP receiver: where
# the collector sends traces when a Tempo runs natively beside it).
_PORTS = {
    "prometheus": ("PROMETHEUS_PORT", 9090),
    "alertmanager": ("ALERTMANAGER_PORT", 9093),
    "otlp_grpc": ("OTELCOL_OTLP_GRPC_PORT", 4317),
    "otlp_http": ("OTELCOL_OTLP_HTTP_PORT", 4318),
    "otelcol_metrics": ("OTELCOL_METRICS_PORT", 8888),
    "otelcol_health": ("OTELCOL_HEALTH_PORT", 13133),
    "fastapi": ("FASTAPI_APP_PORT", 8000),
    "api": ("API_PORT", 9091),
    "loki": ("LOKI_PORT", 3100),
    "tempo_otlp_http": ("TEMPO_OTLP_HTTP_PORT", 14318),
}
# Not built on this project's machines: their Go modules are AGPL-licensed.
_NOT_BUILT = (
    "not built here: its Go module is AGPL-licensed, which this project's build machines may "
    "not use (README, 'What was verified how')"
)


def _components(
    root: Path, state_dir: Path, env: Mapping[str, str]
) -> tuple[list[Component], dict[str, str]]:
    """What ``up`` starts, in order, and what it cannot start here (with the reason)."""
    ports = {name: _port(env, variable, default) for name, (variable, default) in _PORTS.items()}
    bundle = _Bundle(root, state_dir, env, ports)
    available: list[Component] = []
    unavailable: dict[str, str] = {}
    for name, build in (
        ("prometheus", _prometheus),
        ("alertmanager", _alertmanager),
        ("otel-collector", _collector),
        ("loki", lambda _: _NOT_BUILT),
        ("tempo", lambda _: _NOT_BUILT),
        ("grafana", lambda _: _NOT_BUILT),
        ("fastapi-app", _fastapi_app),
        ("api", _api),
    ):
        component = build(bundle)
        if isinstance(component, str):
            unavailable[name] = component
        else:
            available.append(component)
    return available, unavailable


def _prometheus(bundle: _Bundle) -> Component | str:
    """The image's entrypoint and renderer, Debian's binary."""
    binary = bundle.which("prometheus")
    if binary is None:
        return "no `prometheus` binary (make setup-system installs it)"
    data = bundle.state_dir / "prometheus"

    def prepare() -> None:
        data.mkdir(parents=True, exist_ok=True)
        # rule_files are relative to the rendered file, as in the image.
        rules = data / "rules"
        if rules.is_symlink() or rules.exists():
            rules.unlink()
        rules.symlink_to(bundle.root / "prometheus" / "rules")

    env = bundle.env
    url = f"http://{bundle.local('prometheus')}"
    return Component(
        "prometheus",
        ["sh", str(bundle.root / "prometheus" / "entrypoint.sh"), "--web.enable-lifecycle"],
        bundle.root,
        {
            **env,
            "PROMETHEUS_BIN": binary,
            "PROMETHEUS_TEMPLATE": str(bundle.root / "prometheus" / "prometheus.yml"),
            "PROMETHEUS_CONFIG": str(data / "prometheus.yml"),
            "PROMETHEUS_DATA_DIR": str(data / "data"),
            "PROMETHEUS_LISTEN_ADDRESS": bundle.local("prometheus"),
            "PROMETHEUS_SELF_TARGETS": bundle.local("prometheus"),
            "FASTAPI_APP_TARGETS": bundle.local("fastapi"),
            "API_TARGETS": bundle.local("api"),
            "OTEL_COLLECTOR_TARGETS": bundle.local("otelcol_metrics"),
            # Not run natively unless you run them yourself (scraping nothing is fine).
            "LOKI_TARGETS": env.get("LOKI_TARGETS", ""),
            "TEMPO_TARGETS": env.get("TEMPO_TARGETS", ""),
            "GRAFANA_TARGETS": env.get("GRAFANA_TARGETS", ""),
            "ALERTMANAGER_TARGETS": (
                bundle.local("alertmanager") if _alert_destination(env) else ""
            ),
        },
        f"{url}/-/ready",
        url,
        _version([binary, "--version"]),
        prepare,
    )


def _alertmanager(bundle: _Bundle) -> Component | str:
    """Only with a destination: it refuses to start without one, as in compose."""
    if not _alert_destination(bundle.env):
        return "no ALERT_SLACK_WEBHOOK_URL or ALERT_EMAIL_TO set"
    binary = bundle.which("prometheus-alertmanager") or bundle.which("alertmanager")
    if binary is None:
        return "no alertmanager binary (make setup-system installs it)"
    url = f"http://{bundle.local('alertmanager')}"
    data = bundle.state_dir / "alertmanager"
    return Component(
        "alertmanager",
        [
            "sh",
            str(bundle.root / "alertmanager" / "render-config.sh"),
            f"--storage.path={data}",
            f"--web.listen-address={bundle.local('alertmanager')}",
            "--cluster.listen-address=",
        ],
        bundle.root,
        {
            **bundle.env,
            "ALERTMANAGER_BIN": binary,
            "ALERTMANAGER_CONFIG_FILE": str(bundle.state_dir / "alertmanager.yml"),
        },
        f"{url}/-/healthy",
        url,
        _version([binary, "--version"]),
        lambda: data.mkdir(parents=True, exist_ok=True),
    )


def _collector(bundle: _Bundle) -> Component | str:
    """The image's entrypoint, the binary `make backends` built."""
    binary = bundle.which("otelcol")
    if binary is None:
        return "no otelcol binary (run `make backends`)"
    return Component(
        "otel-collector",
        ["sh", str(bundle.root / "otel-collector" / "entrypoint.sh")],
        bundle.root,
        {
            # Where a natively run Tempo and Loki would listen; the environment may say otherwise.
            "TEMPO_OTLP_TRACES_URL": f"http://{bundle.local('tempo_otlp_http')}/v1/traces",
            "LOKI_OTLP_LOGS_URL": f"http://{bundle.local('loki')}/otlp/v1/logs",
            **bundle.env,
            "OTELCOL_BIN": binary,
            "OTELCOL_CONFIG_DIR": str(bundle.root / "otel-collector"),
            "OTELCOL_OTLP_GRPC_ENDPOINT": bundle.local("otlp_grpc"),
            "OTELCOL_OTLP_HTTP_ENDPOINT": bundle.local("otlp_http"),
            "OTELCOL_HEALTH_ENDPOINT": bundle.local("otelcol_health"),
            "OTELCOL_METRICS_HOST": "127.0.0.1",
            "OTELCOL_METRICS_PORT": str(bundle.ports["otelcol_metrics"]),
        },
        f"http://{bundle.local('otelcol_health')}/",
        f"http://{bundle.local('otlp_http')}",
        _version([binary, "--version"]),
    )


def _service_env(bundle: _Bundle, name: str, port: str) -> dict[str, str]:
    """A sample service's environment, wired as in docker-compose.yml."""
    return {
        **bundle.env,
        "PORT": str(bundle.ports[port]),
        "OTEL_SERVICE_NAME": name,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{bundle.local('otlp_http')}",
        "SENTRY_ENVIRONMENT": bundle.env.get("SENTRY_ENVIRONMENT", "local"),
    }


def _fastapi_app(bundle: _Bundle) -> Component | str:
    python = bundle.root / ".venv" / "bin" / "python"
    if not python.exists():
        return "no .venv (run `make setup-python`)"
    url = f"http://{bundle.local('fastapi')}"
    return Component(
        "fastapi-app",
        [str(python), "-m", "app"],
        bundle.root / "examples" / "fastapi-app",
        {
            **_service_env(bundle, "fastapi-app", "fastapi"),
            "SENTRY_DSN": bundle.env.get("SENTRY_DSN_FASTAPI", ""),
            "DOWNSTREAM_URL": f"http://{bundle.local('api')}",
        },
        f"{url}/ready",
        url,
        _version([str(python), "--version"]),
    )


def _api(bundle: _Bundle) -> Component | str:
    npm = bundle.which("npm")
    if npm is None or not (bundle.root / "examples" / "api" / "node_modules").is_dir():
        return "no npm or no node_modules (run `make setup-node`)"
    url = f"http://{bundle.local('api')}"
    node = bundle.which("node") or "node"
    return Component(
        "api",
        [npm, "start", "--silent"],
        bundle.root / "examples" / "api",
        {
            **_service_env(bundle, "api", "api"),
            # npm runs the service with the `node` it finds on PATH: the one `node` above is.
            "PATH": bundle.path,
            "SENTRY_DSN": bundle.env.get("SENTRY_DSN_API", ""),
            "FASTAPI_URL": f"http://{bundle.local('fastapi')}",
        },
        f"{url}/health",
        url,
        "node " + _version([node, "--version"]),
    )


def _alert_destination(env: Mapping[str, str]) -> bool:
    return bool(env.get("ALERT_SLACK_WEBHOOK_URL") or env.get("ALERT_EMAIL_TO"))


def _version(command: list[str]) -> str:
    """The first version-looking word a binary prints about itself."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    for word in (out.stdout + out.stderr).replace(",", " ").split():
        word = word.lstrip("v")
        if word[:1].isdigit() and "." in word:
            return word
    return "?"


# --- down and status ---------------------------------------------------------------------------


def _down(state_dir: Path) -> int:
    recorded = _read_state(state_dir)
    if not recorded:
        print(f"stack: nothing recorded in {state_dir}; nothing to stop")
        return EXIT_OK
    _stop_all(recorded)
    _write_state(state_dir, [])
    for running in reversed(recorded):
        print(f"{running.name:<15} stopped (pid {running.pid})")
    return EXIT_OK


def _stop_all(recorded: list[Running], grace: float = 15.0) -> None:
    """SIGTERM each recorded process group (services first), then SIGKILL what is left."""
    for running in reversed(recorded):
        if _alive(running):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(r) for r in recorded):
        time.sleep(0.1)
    for running in recorded:
        if _alive(running):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(running.pid, signal.SIGKILL)


def _status(state_dir: Path, output: str) -> int:
    rows = []
    for running in _read_state(state_dir):
        alive = _alive(running)
        healthy = alive and _wait_healthy(running, timeout=2) is None
        rows.append({**asdict(running), "running": alive, "healthy": healthy})
    if output == "json":
        json.dump({"state_dir": str(state_dir), "components": rows}, sys.stdout, indent=2)
        print()
    elif not rows:
        print(f"stack: nothing runs (no state in {state_dir})")
    else:
        for row in rows:
            state = "healthy" if row["healthy"] else "running" if row["running"] else "stopped"
            print(f"{row['name']:<15} {state:<8} {row['url']:<28} pid {row['pid']:<7} {row['log']}")
    everything_up = bool(rows) and all(row["healthy"] for row in rows)
    return EXIT_OK if everything_up else EXIT_FAILED


# --- state -------------------------------------------------------------------------------------


def _read_state(state_dir: Path) -> list[Running]:
    path = state_dir / "state.json"
    if not path.is_file():
        return []
    return [Running(**item) for item in json.loads(path.read_text())["components"]]


def _write_state(state_dir: Path, running: list[Running]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / "state.json.tmp"
    tmp.write_text(json.dumps({"components": [asdict(r) for r in running]}, indent=2))
    tmp.replace(state_dir / "state.json")


def _alive(running: Running) -> bool:
    """The recorded process still runs, and is the same process (pids are reused)."""
    start = _process_start_time(running.pid)
    return start != 0.0 and start == running.started_at


def _process_start_time(pid: int) -> float:
    """Start time of ``pid`` in clock ticks since boot (0 when gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return 0.0
    return float(fields[19])


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"
