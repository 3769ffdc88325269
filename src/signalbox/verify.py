"""``signalbox verify``: prove, on a running stack, that one request's trace id joins everything.

It sends ``/error`` (and ``/chain``) to the FastAPI sample service with a fresh W3C
``traceparent``, so the trace id is known, and ``tracestate: signalbox=keep``, so the
collector's tail sampling keeps both traces; then it polls each configured backend until that
id shows up or the deadline passes: Tempo (spans from every service on the path), Loki (log
lines of every service), Prometheus (the /error request's exemplar: exemplars mark failed
requests) and Sentry (the error event, in the expected project and environment). Backends
are read directly, or through Grafana's datasource proxy by uid so that only Grafana needs to
be reachable. Exit 0 means every leg asked for passed: all five
(grafana, tempo, loki, prometheus, sentry) unless --only names fewer; a leg that is not
configured is reported as skipped, never as passed, and makes the verdict INCOMPLETE.
See docs/verify.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
from dotenv.main import DotEnv

from signalbox.backends import grafana as grafana_api
from signalbox.backends import loki, prometheus, sentry, tempo
from signalbox.backends._http import BackendError, Endpoint, Lookup, error_message
from signalbox.report import EXIT_FAILED, EXIT_OK, Finding, Status

# Fixed datasource uids of the stack (grafana/provisioning/datasources).
UIDS: Mapping[str, str] = {
    "prometheus": "prometheus",
    "loki": "loki",
    "tempo": "tempo",
    "sentry": "sentry",
}
TRACE_BACKENDS = ("tempo", "loki", "prometheus")
BACKENDS = (*TRACE_BACKENDS, "sentry")
# What a user can ask for with --only: Grafana (up, datasources healthy) and each backend.
LEGS = ("grafana", *BACKENDS)
DEFAULT_SENTRY_URL = "https://sentry.io"
SENTRY_CREDENTIAL = "SENTRY_AUTH_TOKEN (scopes org:read, project:read, event:read)"
# The names Compose looks for, in its order (compose-go's cli.DefaultFileNames).
_COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
# Sent with every probe: the collector keeps such traces whatever its sampling share.
FORCE_KEEP = "signalbox=keep"
# Loki and Prometheus are asked about a window around the probe; clocks may disagree a little.
_WINDOW_BEFORE_S = 300.0
_WINDOW_AFTER_S = 60.0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="prove the trace-id join (traces, logs, metrics, errors) on a running stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    where = parser.add_argument_group("where things are (flags override environment variables)")
    where.add_argument(
        "--service-url", metavar="URL", help="FastAPI sample service [SIGNALBOX_SERVICE_URL]"
    )
    where.add_argument("--grafana-url", metavar="URL", help="Grafana [GRAFANA_URL]")
    where.add_argument(
        "--grafana-token",
        metavar="TOKEN",
        help="service-account token, Viewer role [GRAFANA_TOKEN]",
    )
    where.add_argument("--tempo-url", metavar="URL", help="Tempo, read directly [TEMPO_URL]")
    where.add_argument("--loki-url", metavar="URL", help="Loki, read directly [LOKI_URL]")
    where.add_argument(
        "--prometheus-url", metavar="URL", help="Prometheus, read directly [PROMETHEUS_URL]"
    )
    where.add_argument(
        "--sentry-url", metavar="URL", help=f"Sentry [SENTRY_URL, {DEFAULT_SENTRY_URL}]"
    )
    where.add_argument("--sentry-org", metavar="SLUG", help="Sentry organization [SENTRY_ORG]")
    where.add_argument(
        "--sentry-token", metavar="TOKEN", help="Sentry auth token [SENTRY_AUTH_TOKEN]"
    )
    where.add_argument(
        "--compose",
        action="store_true",
        help="default to the local compose stack's published ports on localhost: service "
        ":8000, Prometheus :9090, Loki :3100, Tempo :3200, and Grafana :3000 when a token is "
        "given (FASTAPI_APP_PORT, PROMETHEUS_PORT, LOKI_PORT, TEMPO_PORT, GRAFANA_PORT); "
        "variables are read as docker compose reads them, from the compose project's .env "
        "with exported variables winning; flags still win",
    )

    what = parser.add_argument_group("what to expect")
    what.add_argument(
        "--only",
        metavar="LEG,...",
        type=_leg_names,
        help=f"check only these legs, comma-separated, among {', '.join(LEGS)} (default: "
        "all five; a leg asked for but not configured makes the verdict INCOMPLETE, exit 1)",
    )
    what.add_argument(
        "--sentry-project",
        metavar="SLUG_OR_ID",
        help="project the error must land in [SENTRY_PROJECT; default: the project id in "
        "SENTRY_DSN_FASTAPI or SENTRY_DSN]",
    )
    what.add_argument(
        "--sentry-environment", metavar="NAME", help="environment of the error [SENTRY_ENVIRONMENT]"
    )
    what.add_argument(
        "--service-name", default="fastapi-app", help="service.name of the FastAPI service"
    )
    what.add_argument(
        "--downstream-service-name", default="api", help="service.name of the service /chain calls"
    )
    what.add_argument(
        "--sku", default="SB-1001", help="catalog item /chain asks the downstream for"
    )
    what.add_argument(
        "--no-chain", action="store_true", help="send only /error (no downstream service)"
    )
    what.add_argument(
        "--exemplar-selector",
        default=prometheus.DEFAULT_SELECTOR,
        help="PromQL selector whose exemplars are searched (default: %(default)s)",
    )

    how = parser.add_argument_group("how long")
    how.add_argument(
        "--timeout",
        type=_positive,
        default=120.0,
        help="seconds to wait for every backend (default: %(default)s)",
    )
    how.add_argument(
        "--poll-interval",
        type=_positive,
        default=1.0,
        help="seconds between polls (default: %(default)s)",
    )
    how.add_argument(
        "--request-timeout",
        type=_positive,
        default=10.0,
        help="seconds per HTTP request (default: %(default)s)",
    )
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.set_defaults(handler=run)


_EPILOG = """\
Either GRAFANA_URL + GRAFANA_TOKEN (every backend through Grafana's datasource proxy, by the
fixed uids prometheus, loki, tempo, sentry) or direct TEMPO_URL / LOKI_URL / PROMETHEUS_URL, or
a mix (a direct URL wins). Sentry is read directly when SENTRY_ORG and SENTRY_AUTH_TOKEN are
set, else through Grafana's Sentry datasource when it is set up.

exit status: 0 every leg asked for (all five, or those of --only) passed, 1 a check failed or
a leg asked for is not configured (INCOMPLETE), 2 misuse
"""


def run(args: argparse.Namespace) -> int:
    config = _config(args, os.environ)
    findings = asyncio.run(_verify(config, sys.stderr))
    outcome = verdict(findings, config.legs)
    if args.output == "json":
        _render_json(findings, outcome, sys.stdout)
    else:
        _render_text(findings, outcome, sys.stdout)
    return outcome.exit_code


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    service_url: str
    grafana_url: str = ""
    grafana_token: str = ""
    grafana_hint: str = "GRAFANA_URL + GRAFANA_TOKEN"  # what to set when Grafana is not set up
    direct: Mapping[str, str] = field(default_factory=dict)  # backend -> URL
    sentry_url: str = DEFAULT_SENTRY_URL
    sentry_org: str = ""
    sentry_token: str = ""
    expect: sentry.Expectation = field(default_factory=lambda: sentry.Expectation(org=""))
    service_name: str = "fastapi-app"
    downstream_name: str = "api"
    sku: str = "SB-1001"
    chain: bool = True
    exemplar_selector: str = prometheus.DEFAULT_SELECTOR
    timeout: float = 120.0
    poll_interval: float = 1.0
    request_timeout: float = 10.0
    legs: frozenset[str] = frozenset(LEGS)  # what the user asked for (--only)

    @property
    def sentry_direct(self) -> bool:
        return bool(self.sentry_org and self.sentry_token)

    def through_grafana(self, backend: str) -> bool:
        """Whether this backend's leg is read through Grafana (no direct URL or credentials)."""
        if backend == "sentry":
            return not self.sentry_direct
        return backend not in self.direct


def _config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    from signalbox.cli import UsageError

    env_file = None
    if args.compose:
        env_file = _compose_env_file(Path.cwd())
        env = {**_read_env_file(env_file), **env}  # exported variables win, as in Compose

    def pick(flag: str, var: str) -> str:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        return (value if value is not None else env.get(var, "")).strip()

    # --compose: the ports docker-compose.yml publishes on 127.0.0.1, with its defaults.
    compose = {
        "SIGNALBOX_SERVICE_URL": ("FASTAPI_APP_PORT", "8000"),
        "PROMETHEUS_URL": ("PROMETHEUS_PORT", "9090"),
        "LOKI_URL": ("LOKI_PORT", "3100"),
        "TEMPO_URL": ("TEMPO_PORT", "3200"),
        "GRAFANA_URL": ("GRAFANA_PORT", "3000"),
    }

    def url(flag: str, var: str) -> str:
        value = pick(flag, var)
        if not value and args.compose and var in compose:
            port_var, default = compose[var]
            # Compose's ${VAR:-default}: an empty value means the default too.
            port = env.get(port_var, "").strip() or default
            if not (port.isdigit() and 0 < int(port) < 65_536):
                raise UsageError(
                    f"{port_var}={port!r} (in the environment or {env_file}) is not a port number"
                )
            value = f"http://localhost:{port}"
        if value and not _is_http_url(value):
            raise UsageError(f"{flag} / {var}: {value!r} is not an http:// or https:// URL")
        return value.rstrip("/")

    service_url = url("--service-url", "SIGNALBOX_SERVICE_URL")
    if not service_url:
        raise UsageError(
            "the FastAPI service URL is required: --service-url or SIGNALBOX_SERVICE_URL "
            "(e.g. http://localhost:8000), or --compose for the local compose stack"
        )
    grafana_token = pick("--grafana-token", "GRAFANA_TOKEN")
    grafana_hint = Config.grafana_hint
    if args.compose and not grafana_token:
        # Grafana's API needs a token: without one the compose preset leaves Grafana unchecked.
        del compose["GRAFANA_URL"]
        grafana_hint = "GRAFANA_TOKEN (a Viewer service-account token of the local Grafana)"
    grafana_url = url("--grafana-url", "GRAFANA_URL")
    if grafana_url and not grafana_token:
        raise UsageError(
            "GRAFANA_URL is set but GRAFANA_TOKEN is not: create a service account with the "
            "Viewer role in Grafana and pass its token (--grafana-token or GRAFANA_TOKEN)"
        )
    if grafana_token and not grafana_url:
        raise UsageError("GRAFANA_TOKEN is set but GRAFANA_URL is not (--grafana-url)")
    direct = {
        backend: value
        for backend in TRACE_BACKENDS
        if (value := url(f"--{backend}-url", f"{backend.upper()}_URL"))
    }
    sentry_org = pick("--sentry-org", "SENTRY_ORG")
    sentry_token = pick("--sentry-token", "SENTRY_AUTH_TOKEN")
    if sentry_org and not sentry_token:
        raise UsageError("SENTRY_ORG is set but SENTRY_AUTH_TOKEN is not (--sentry-token)")
    if sentry_token and not sentry_org:
        raise UsageError("SENTRY_AUTH_TOKEN is set but SENTRY_ORG is not (--sentry-org)")
    if not grafana_url and not direct and not sentry_token:
        raise UsageError(
            "nothing to verify against: set GRAFANA_URL + GRAFANA_TOKEN (reads every backend "
            "through Grafana), or TEMPO_URL / LOKI_URL / PROMETHEUS_URL, or use --compose"
        )
    project = pick("--sentry-project", "SENTRY_PROJECT") or _dsn_project(env)
    return Config(
        service_url=service_url,
        grafana_url=grafana_url,
        grafana_token=grafana_token,
        grafana_hint=grafana_hint,
        direct=direct,
        sentry_url=url("--sentry-url", "SENTRY_URL") or DEFAULT_SENTRY_URL,
        sentry_org=sentry_org,
        sentry_token=sentry_token,
        expect=sentry.Expectation(
            org=sentry_org,
            project=project,
            environment=pick("--sentry-environment", "SENTRY_ENVIRONMENT"),
        ),
        service_name=args.service_name,
        downstream_name=args.downstream_service_name,
        sku=args.sku,
        chain=not args.no_chain,
        exemplar_selector=args.exemplar_selector,
        timeout=args.timeout,
        poll_interval=args.poll_interval,
        request_timeout=args.request_timeout,
        legs=args.only or frozenset(LEGS),
    )


def _compose_env_file(cwd: Path) -> Path:
    """The ``.env`` that ``docker compose`` run in ``cwd`` reads: Compose looks for its file in
    ``cwd``, then in each parent folder, and reads ``.env`` next to it (in ``cwd`` without one)."""
    for folder in (cwd, *cwd.parents):
        if any((folder / name).is_file() for name in _COMPOSE_FILES):
            return folder / ".env"
    return cwd / ".env"


def _read_env_file(path: Path) -> dict[str, str]:
    """``.env`` in Compose's syntax: KEY=VALUE, ``export``, comments, quotes, ``${VAR}``.

    override=False: a ``${VAR}`` inside the file resolves against exported variables first,
    as Compose does. A missing file is no error (Compose does without one too); a bare
    ``KEY`` line (no value) sets nothing.
    """
    values = DotEnv(path, interpolate=True, override=False).dict()
    return {key: value for key, value in values.items() if value is not None}


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _dsn_project(env: Mapping[str, str]) -> str:
    """A DSN ends in the numeric project id: https://<key>@<host>/<project_id>."""
    for var in ("SENTRY_DSN_FASTAPI", "SENTRY_DSN"):
        tail = urlsplit(env.get(var, "").strip()).path.rstrip("/").rsplit("/", 1)[-1]
        if tail.isdigit():
            return tail
    return ""


def _leg_names(text: str) -> frozenset[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(LEGS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown leg {', '.join(unknown) or '(none given)'}; legs: {', '.join(LEGS)}"
        )
    return frozenset(names)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0 and at most 86400")
    return value


# --- probes --------------------------------------------------------------------------------


@dataclass
class Probe:
    """One request to the service, sent with a known trace id."""

    name: str
    path: str
    expected_status: int
    services: tuple[str, ...]
    trace_id: str = field(default_factory=lambda: _random_id(16))
    sent_monotonic: float = 0.0
    sent_wall: float = 0.0
    problem: str = ""  # set when the request itself failed: nothing can be looked up

    @property
    def traceparent(self) -> str:
        # Version 00, a fresh parent span id, sampled (01): the service must record and export it.
        return f"00-{self.trace_id}-{_random_id(8)}-01"


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _random_id(nbytes: int) -> str:
    while True:
        value = secrets.token_hex(nbytes)
        if value.strip("0"):  # an all-zero id is invalid in W3C Trace Context
            return value


async def _send_probe(client: httpx.AsyncClient, base_url: str, probe: Probe) -> Finding:
    url = base_url + probe.path
    probe.sent_monotonic = time.monotonic()
    probe.sent_wall = time.time()
    where = f"GET {url}"
    details: dict[str, Any] = {"probe": probe.name, "trace_id": probe.trace_id}
    try:
        # A fresh connection per probe: uvicorn resets a kept-alive connection right after an
        # unhandled exception, and the next probe must not land on it.
        response = await client.get(
            url,
            # The collector's tail sampling keeps a trace that carries this tracestate whatever
            # its share of plain traces (otel-collector/config.yaml, policy "forced").
            headers={
                "traceparent": probe.traceparent,
                "tracestate": FORCE_KEEP,
                "Connection": "close",
            },
        )
    except httpx.TimeoutException:
        probe.problem = f"{probe.path} did not answer within {client.timeout.read} s"
    except httpx.TransportError as exc:
        probe.problem = f"cannot reach the service at {base_url}: {_reason(exc)}"
    check = f"service {probe.path.split('?', 1)[0]}"
    if probe.problem:
        return Finding.failed(check, probe.problem, where, **details)
    details["status"] = response.status_code
    if response.status_code != probe.expected_status:
        return Finding.failed(
            check,
            f"answered {response.status_code}, expected {probe.expected_status}: "
            f"{error_message(response)} (trace {probe.trace_id})",
            where,
            **details,
        )
    return Finding.passed(
        check,
        f"answered {response.status_code} as expected (trace {probe.trace_id})",
        where,
        **details,
    )


# --- routes: how each backend is reached, or why it is not ---------------------------------


@dataclass
class Route:
    backend: str
    endpoint: Endpoint | None = None
    via_grafana_sentry: bool = False  # Sentry through Grafana's /api/ds/query
    failure: str = ""  # reached through Grafana, but Grafana or the datasource is broken
    skipped: str = ""  # not configured

    @property
    def via(self) -> str | None:
        if self.via_grafana_sentry:
            return "grafana"
        return self.endpoint.via if self.endpoint else None


@dataclass
class GrafanaState:
    endpoint: Endpoint
    problem: str = ""  # Grafana cannot be used at all
    health: dict[str, grafana_api.Health] = field(default_factory=dict)
    unconfigured: set[str] = field(default_factory=set)


async def _check_grafana(
    client: httpx.AsyncClient, config: Config, findings: list[Finding]
) -> GrafanaState:
    state = GrafanaState(grafana_api.endpoint(config.grafana_url, config.grafana_token))
    location = f"{config.grafana_url}/api/health"
    try:
        up = await grafana_api.check_up(client, state.endpoint)
        findings.append(Finding.passed("grafana", up, location))
        location = f"{config.grafana_url}/api/datasources"  # the first call that needs the token
        listed = await grafana_api.list_datasources(client, state.endpoint)
    except BackendError as exc:
        state.problem = str(exc)
        findings.append(Finding.failed("grafana", state.problem, location))
        return state
    if listed is None:
        datasources = grafana_api.known(UIDS.values())
        note = " (token may not list datasources: checked the stack's fixed uids)"
    else:
        datasources = listed
        note = ""
        present = {ds.uid for ds in listed}
        for uid in UIDS.values():
            if uid not in present:
                state.health[uid] = grafana_api.Health(
                    uid, "missing", f"Grafana has no datasource with uid {uid!r}"
                )
    checkable = [ds for ds in datasources if ds.configured]
    state.unconfigured = {ds.uid for ds in datasources if not ds.configured}
    results = await asyncio.gather(
        *(grafana_api.check_datasource(client, state.endpoint, ds.uid) for ds in checkable),
        return_exceptions=True,
    )
    for ds, result in zip(checkable, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, BackendError):
                raise result
            result = grafana_api.Health(ds.uid, "error", str(result))
        state.health[ds.uid] = result
    for ds in datasources:
        findings.append(_datasource_finding(ds, state, note))
    for uid, health in state.health.items():
        if health.state == "missing" and uid not in {ds.uid for ds in datasources}:
            findings.append(_datasource_finding(grafana_api.Datasource(uid), state, note))
    return state


def _datasource_finding(ds: grafana_api.Datasource, state: GrafanaState, note: str) -> Finding:
    location = f"uid {ds.uid}" + (f" ({ds.type})" if ds.type else "")
    check = "grafana datasource"
    uid = ds.uid
    if ds.uid in state.unconfigured:
        return Finding.skipped(
            check, "Sentry datasource has no organization: Sentry not set up", location, uid=uid
        )
    health = state.health[ds.uid]
    if health.state == "ok":
        return Finding.passed(check, (health.message or "healthy") + note, location, uid=uid)
    if health.state == "unsupported":
        return Finding.skipped(check, health.message, location, uid=uid)
    if health.state == "missing" and ds.uid == UIDS["sentry"]:
        return Finding.skipped(
            check, f"{health.message}: Sentry not set up in Grafana", location, uid=uid
        )
    return Finding.failed(check, health.message or "unhealthy", location, uid=uid)


def _grafana_as_route(checked: list[Finding], config: Config) -> list[Finding]:
    """Grafana's findings when the user did not ask for Grafana but it is the way to a leg
    asked for: whether Grafana is usable, and the health of those legs' datasources only."""
    uids = {UIDS[b] for b in BACKENDS if b in config.legs and config.through_grafana(b)}
    return [f for f in checked if f.check == "grafana" or f.details.get("uid") in uids]


def _routes(config: Config, grafana: GrafanaState | None) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    for backend in TRACE_BACKENDS:
        route = Route(backend)
        if backend in config.direct:
            route.endpoint = Endpoint(backend, config.direct[backend], backend.capitalize())
        elif grafana is None:
            route.skipped = (
                f"not configured: set {backend.upper()}_URL, or GRAFANA_URL + GRAFANA_TOKEN"
            )
        else:
            route.failure = _grafana_problem(grafana, UIDS[backend])
            if not route.failure:
                route.endpoint = grafana_api.proxy(grafana.endpoint, backend, UIDS[backend])
        routes[backend] = route
    routes["sentry"] = _sentry_route(config, grafana)
    return routes


def _grafana_problem(grafana: GrafanaState, uid: str) -> str:
    if grafana.problem:
        return f"not checked: Grafana is unusable ({grafana.problem})"
    health = grafana.health.get(uid)
    if health is None or health.state in ("ok", "unsupported"):
        return ""
    if health.state == "missing":
        return f"not checked: {health.message}"
    return f"not checked: datasource {uid!r} is unhealthy in Grafana ({health.message})"


def _sentry_route(config: Config, grafana: GrafanaState | None) -> Route:
    route = Route("sentry")
    if config.sentry_direct:
        route.endpoint = Endpoint(
            "sentry",
            config.sentry_url,
            f"Sentry ({config.sentry_url})",
            headers={"Authorization": f"Bearer {config.sentry_token}"},
            credential=SENTRY_CREDENTIAL,
        )
        return route
    not_set = "not configured: set SENTRY_ORG + SENTRY_AUTH_TOKEN"
    uid = UIDS["sentry"]
    if grafana is None:
        route.skipped = not_set
    elif uid in grafana.unconfigured or (
        not grafana.problem
        and grafana.health.get(uid, grafana_api.Health(uid, "missing", "")).state == "missing"
    ):
        route.skipped = f"{not_set}, or set up Grafana's Sentry datasource (uid {uid!r})"
    else:
        route.failure = _grafana_problem(grafana, uid)
        route.endpoint = grafana.endpoint
        route.via_grafana_sentry = True
    return route


# --- polling -------------------------------------------------------------------------------


@dataclass
class Leg:
    """One backend asked about one probe's trace id."""

    route: Route
    probe: Probe
    looked_for: str
    check: Callable[[], Awaitable[Lookup]]


def _legs(
    client: httpx.AsyncClient, config: Config, routes: dict[str, Route], probes: list[Probe]
) -> list[Leg]:
    legs: list[Leg] = []
    for backend in (b for b in BACKENDS if b in config.legs):
        for probe in probes:
            if backend in ("sentry", "prometheus") and probe.name != "error":
                # Only /error raises an exception, and exemplars mark failed requests only.
                continue
            route = routes[backend]
            legs.append(
                Leg(
                    route,
                    probe,
                    _looked_for(config, backend, probe),
                    _lookup(client, config, route, probe),
                )
            )
    return legs


def _looked_for(config: Config, backend: str, probe: Probe) -> str:
    tid = probe.trace_id
    if backend == "tempo":
        return f"GET {tempo.trace_path(tid)} with spans from {', '.join(probe.services)}"
    if backend == "loki":
        return " and ".join(loki.logql(s, tid) for s in probe.services)
    if backend == "prometheus":
        return f"exemplar trace_id={tid} on {config.exemplar_selector}"
    return config.expect.describe(tid)


def _lookup(
    client: httpx.AsyncClient, config: Config, route: Route, probe: Probe
) -> Callable[[], Awaitable[Lookup]]:
    endpoint = route.endpoint
    tid = probe.trace_id

    async def check() -> Lookup:
        assert endpoint is not None
        if route.backend == "tempo":
            return await tempo.find_trace(client, endpoint, tid, probe.services)
        if route.backend == "loki":
            return await loki.find_logs(
                client,
                endpoint,
                tid,
                probe.services,
                start_ns=int((probe.sent_wall - _WINDOW_BEFORE_S) * 1e9),
                end_ns=int((time.time() + _WINDOW_AFTER_S) * 1e9),
            )
        if route.backend == "prometheus":
            return await prometheus.find_exemplar(
                client,
                endpoint,
                tid,
                selector=config.exemplar_selector,
                start=probe.sent_wall - _WINDOW_BEFORE_S,
                end=time.time() + _WINDOW_AFTER_S,
            )
        if route.via_grafana_sentry:
            return await sentry.find_event_via_grafana(
                client, endpoint, UIDS["sentry"], tid, config.expect
            )
        return await sentry.find_event(
            client, endpoint, tid, config.expect, project_id=await project_id()
        )

    resolved: list[str] = []

    async def project_id() -> str:
        # Resolved once: a slug becomes the numeric id the events API filters on.
        if not resolved:
            assert endpoint is not None
            resolved.append(await sentry.resolve_project_id(client, endpoint, config.expect))
        return resolved[0]

    return check


async def _poll(leg: Leg, deadline: float, interval: float) -> Finding:
    route, probe = leg.route, leg.probe
    check = f"{route.backend} {probe.path.split('?', 1)[0]}"
    details: dict[str, Any] = {
        "backend": route.backend,
        "probe": probe.name,
        "trace_id": probe.trace_id,
        "looked_for": leg.looked_for,
        "via": route.via,
        "seconds": None,
    }
    if route.skipped:
        return Finding.skipped(check, route.skipped, leg.looked_for, **details)
    if route.failure:
        return Finding.failed(check, route.failure, leg.looked_for, **details)
    if probe.problem:
        return Finding.failed(
            check,
            f"not checked: the {probe.path.split('?', 1)[0]} request failed",
            leg.looked_for,
            **details,
        )
    last = ""
    while True:
        try:
            lookup = await leg.check()
        except BackendError as exc:
            if exc.fatal:
                return Finding.failed(check, str(exc), leg.looked_for, **details)
            last = str(exc)
        else:
            if lookup.found:
                seconds = round(time.monotonic() - probe.sent_monotonic, 1)
                details.update(lookup.details, seconds=seconds)
                return Finding.passed(
                    check,
                    f"found after {seconds:.1f} s: {lookup.summary}",
                    leg.looked_for,
                    **details,
                )
            last = lookup.summary
            details.update(lookup.details)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            waited = time.monotonic() - probe.sent_monotonic
            return Finding.failed(
                check,
                f"not visible after {waited:.0f} s; last answer: {last}",
                leg.looked_for,
                **details,
            )
        await asyncio.sleep(min(interval, remaining))


async def _verify(config: Config, stderr: TextIO) -> list[Finding]:
    findings: list[Finding] = []
    timeout = httpx.Timeout(config.request_timeout)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        grafana = None
        wanted = "grafana" in config.legs
        needed = wanted or any(config.through_grafana(b) for b in BACKENDS if b in config.legs)
        if config.grafana_url and needed:
            checked: list[Finding] = []
            grafana = await _check_grafana(client, config, checked)
            findings += checked if wanted else _grafana_as_route(checked, config)
        elif wanted:
            findings.append(
                Finding.skipped(
                    "grafana",
                    f"not configured: set {config.grafana_hint} to check Grafana and the "
                    "health of its datasources",
                    "",
                    backend="grafana",
                )
            )
        routes = _routes(config, grafana)
        probes = [Probe("error", "/error", 500, (config.service_name,))]
        if config.chain:
            probes.append(
                Probe(
                    "chain",
                    f"/chain?sku={config.sku}",
                    200,
                    (config.service_name, config.downstream_name),
                )
            )
        for probe in probes:
            findings.append(await _send_probe(client, config.service_url, probe))
        polled = [
            b for b in BACKENDS if b in config.legs and routes[b].endpoint and not routes[b].failure
        ]
        if polled:
            ids = ", ".join(f"{p.path.split('?')[0]} trace {p.trace_id}" for p in probes)
            print(
                f"signalbox verify: sent {ids}; waiting up to {config.timeout:.0f} s for "
                f"{', '.join(polled)}",
                file=stderr,
            )
        deadline = time.monotonic() + config.timeout
        legs = _legs(client, config, routes, probes)
        findings += await asyncio.gather(
            *(_poll(leg, deadline, config.poll_interval) for leg in legs)
        )
    return findings


# --- verdict and output --------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The one-line answer and the exit status that goes with it."""

    word: str  # VERIFIED, INCOMPLETE or NOT VERIFIED
    line: str
    exit_code: int


def verdict(findings: list[Finding], asked: Collection[str] = LEGS) -> Verdict:
    """VERIFIED (exit 0) only when every leg asked for passed. A leg that is not configured
    proves nothing: the run is then INCOMPLETE (exit 1), never VERIFIED."""
    failed = [f.check for f in findings if f.status is Status.FAILED]
    not_configured = {
        f.details["backend"]
        for f in findings
        if "backend" in f.details and f.status is Status.SKIPPED
    }
    skipped = [leg for leg in LEGS if leg in not_configured]
    tail = f"; not checked (not configured): {', '.join(skipped)}" if skipped else ""
    if failed:
        line = f"NOT VERIFIED: {len(failed)} check(s) failed: {', '.join(failed)}{tail}"
        return Verdict("NOT VERIFIED", line, EXIT_FAILED)
    passed = [leg for leg in LEGS if leg in asked and leg not in not_configured]
    traces = ", ".join(
        f"{f.details['trace_id']} (/{f.details['probe']})"
        for f in findings
        if f.check.startswith("service ")
    )
    visible = sorted(set(passed) & set(BACKENDS))
    parts = [f"trace ids {traces} visible in {', '.join(visible)}"] if visible else []
    if "grafana" in passed:
        parts.append("Grafana and its datasources healthy")
    summary = "; ".join(parts) or "nothing checked"
    if skipped:
        narrow = f", or narrow the check with --only {','.join(passed)}" if passed else ""
        line = f"INCOMPLETE: {summary}{tail}: configure them{narrow}"
        return Verdict("INCOMPLETE", line, EXIT_FAILED)
    return Verdict("VERIFIED", f"VERIFIED: {summary}", EXIT_OK)


_STATUSES = (Status.PASSED, Status.FAILED, Status.SKIPPED)  # verify never warns


def _render_json(findings: list[Finding], outcome: Verdict, stream: TextIO) -> None:
    document = {
        "ok": outcome.exit_code == EXIT_OK,
        "verdict": outcome.word,
        "summary": outcome.line,
        "counts": {s.value: sum(f.status is s for f in findings) for s in _STATUSES},
        "findings": [asdict(f) for f in findings],
    }
    json.dump(document, stream, indent=2, default=str)
    stream.write("\n")


def _render_text(findings: list[Finding], outcome: Verdict, stream: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, highlight=False)
    if not console.is_terminal:
        # Piped or captured: ids and queries are long, and nobody is reading at 80 columns.
        console.width = max(console.width, 160)
    style = {Status.PASSED: "green", Status.FAILED: "red", Status.SKIPPED: "yellow"}
    word = {Status.PASSED: "found", Status.FAILED: "FAILED", Status.SKIPPED: "skipped"}
    table = Table(show_header=True, header_style="bold", title="signalbox verify", expand=False)
    for column in ("check", "result", "seconds", "looked for", "detail"):
        table.add_column(column, overflow="fold")
    for i, f in enumerate(findings):
        seconds = f.details.get("seconds")
        result = word[f.status] if "backend" in f.details else f.status.value
        following = findings[i + 1].check.split()[0] if i + 1 < len(findings) else ""
        table.add_row(
            f.check,
            f"[{style[f.status]}]{result}[/]",
            "" if seconds is None else f"{seconds:.1f}",
            f.location,
            f.message,
            end_section=following != f.check.split()[0],
        )
    console.print(table)
    console.print(outcome.line, soft_wrap=True)
