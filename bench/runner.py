"""Runs the benchmark: starts the servers, alternates the cases, measures, checks the targets.

For each service every variant runs as its own process, pinned to one core (the load generator
and the receivers share the other), started once and warmed up. Then the cases run in rounds:
bare, full, documented way, production, full with 10% errors, refused, hanging, bare, full, ...
so that each comparison is made of alternated runs (A B A B) and slow drift of the machine hits
both sides. Then each variant the ratio targets compare is started once more under callgrind
(bench/callgrind.py), and its instructions per request are counted: the verdicts' figure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import callgrind, load, proc, stock_fastapi
from bench.stock_fastapi import Piece as StockPiece

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from receivers import OtlpReceiver, SentryReceiver
from services import FASTAPI_DIR, NODE_DIR, REPO, Service, run_service

SERVER_CPU = 0
LOAD_CPU = 1
BENCH_DIR = Path(__file__).resolve().parent
DOCS_NODE_DIR = BENCH_DIR / "docs-node"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SERVER_SPAN = 2  # SpanKind SERVER in OTLP


@dataclass(frozen=True)
class Settings:
    seconds: float = 4.0  # one measured run
    outage_seconds: float = 12.0  # one run against broken backends; x rounds = a minute
    # Five short rounds rather than three long ones: a median of five shrugs off two disturbed
    # runs, and this machine's CPU time per request drifts by up to a third within a minute.
    rounds: int = 5
    warmup_seconds: float = 2.0
    # Unmeasured load right before each run. Between its runs a server idles while the other
    # cases run (~40-60 s), and an instrumented Node server then takes 3-5 s of load to get
    # back to its steady CPU per request (bare Express: 1 s). A 4 s run straight after the
    # idle measured that restart: 25-35% more CPU per request than the steady state. FastAPI
    # shows no such effect. Capacity is the steady state.
    rewarm_seconds: float = 5.0
    # Healthy load before an outage begins: the time a Node or Python server takes to grow its
    # heap to its working size (~20 s here), which is not memory the outage costs.
    outage_warmup_seconds: float = 20.0
    services: tuple[str, ...] = ("fastapi", "node")
    # Instructions per request (callgrind): requests in each counted window. None: no
    # callgrind, the verdicts fall back to CPU time.
    callgrind_requests: int | None = 1500
    # Share of each service's callgrind warm-up (ServiceSpec.callgrind_warmup) to send.
    callgrind_warmup_share: float = 1.0


@dataclass(frozen=True)
class ServiceSpec:
    key: str
    title: str
    service_name: str
    hot_path: str
    bare_command: tuple[str, ...]
    instrumented_command: tuple[str, ...]  # the way users start the service
    # The same server without a launcher in between (``npm start`` runs node through a shell),
    # so that Valgrind runs the server itself.
    direct_command: tuple[str, ...]
    instrumented_dir: Path
    docs_command: tuple[str, ...]  # the app instrumented the way the libraries' docs show
    docs_dir: Path
    extra_env: Mapping[str, str]
    process_name: str | None  # measure this descendant instead of the started process
    # Uncounted requests before callgrind counts. Node's count keeps falling for ~10,000-20,000
    # requests under Valgrind (JIT tiers, heap sizing; bare Express, successive windows after
    # 6,000 uncounted requests: 174k, 130k, 121k per request; after 20,000: 137k, 115k, 114k);
    # FastAPI's is flat after a few hundred.
    callgrind_warmup: int
    # The service's custom pieces that ``make bench`` weighs against the library's own way
    # (issue #21: a piece stays only where it saves at least 10% of an instrumented request).
    pieces: tuple[StockPiece, ...] = ()
    # ``pieces`` -> the command that starts the service with those pieces swapped back, its
    # working directory and extra environment.
    stock: Callable[[Sequence[str]], tuple[tuple[str, ...], Path, dict[str, str]]] | None = None


def _fastapi_stock(keys: Sequence[str]) -> tuple[tuple[str, ...], Path, dict[str, str]]:
    command = (sys.executable, "-m", "bench.stock_fastapi", ",".join(keys))
    return command, FASTAPI_DIR, {"PYTHONPATH": str(REPO)}


STOCK_NODE_DIR = BENCH_DIR / "stock-node"


def _node_pieces() -> tuple[StockPiece, ...]:
    """bench/stock-node/pieces.json: one entry per custom piece of the Node service."""
    listed = STOCK_NODE_DIR / "pieces.json"
    if not listed.exists():
        return ()
    return tuple(
        StockPiece(str(p["key"]), str(p["piece"]), str(p["stock"]), str(p.get("paths", "hot")))
        for p in json.loads(listed.read_text())
    )


def _node_stock(keys: Sequence[str]) -> tuple[tuple[str, ...], Path, dict[str, str]]:
    """``npm start``'s node command with bench/stock-node/register.mjs loaded first: its loader
    hook serves bench/stock-node/<key>.mjs in place of the service module it replaces."""
    node, *rest = _npm_start(NODE_DIR)
    command = (node, "--import", str(STOCK_NODE_DIR / "register.mjs"), *rest)
    return command, NODE_DIR, {"BENCH_STOCK": ",".join(keys)}


def _npm_start(directory: Path) -> tuple[str, ...]:
    """The command ``npm start`` runs in ``directory`` (its package.json's start script)."""
    manifest = json.loads((directory / "package.json").read_text())
    return tuple(shlex.split(str(manifest["scripts"]["start"])))


def _specs() -> dict[str, ServiceSpec]:
    return {
        "fastapi": ServiceSpec(
            key="fastapi",
            title="FastAPI (examples/fastapi-app)",
            service_name="fastapi-app",
            hot_path="/hello?name=bench",
            bare_command=(sys.executable, "-m", "bench.bare_fastapi"),
            instrumented_command=(sys.executable, "-m", "app"),
            direct_command=(sys.executable, "-m", "app"),
            instrumented_dir=FASTAPI_DIR,
            docs_command=(sys.executable, "-m", "bench.docs_fastapi"),
            docs_dir=REPO,
            extra_env={},
            process_name=None,
            callgrind_warmup=1000,
            pieces=stock_fastapi.PIECES,
            stock=_fastapi_stock,
        ),
        "node": ServiceSpec(
            key="node",
            title="Node (examples/api)",
            service_name="api",
            hot_path="/inventory/SB-1001",
            bare_command=("node", "bench/bare_express.mjs"),
            instrumented_command=("npm", "start", "--silent"),
            direct_command=_npm_start(NODE_DIR),
            instrumented_dir=NODE_DIR,
            docs_command=_npm_start(DOCS_NODE_DIR),
            docs_dir=DOCS_NODE_DIR,
            # No probing of other services during the benchmark; Express in production mode.
            extra_env={"MONITOR_TARGETS": "none", "NODE_ENV": "production"},
            process_name="node",
            callgrind_warmup=10_000,
            pieces=_node_pieces(),
            stock=_node_stock,
        ),
    }


# --- receivers ----------------------------------------------------------------------------


class _CountingOtlpReceiver(OtlpReceiver):
    """The shared OTLP receiver (real protobuf/JSON decoding) that keeps counts and the trace
    ids of ``/error`` spans instead of every item: a benchmark sends millions, and a growing
    heap would slow the load generator's core with garbage collection."""

    def __init__(self) -> None:
        super().__init__("ok")
        self.server_span_count = 0
        self.log_record_count = 0
        self.error_trace_ids: set[str] = set()

    def _handle(self, path: str, headers: Any, body: bytes) -> tuple[int, bytes]:
        if "json" in (headers.get("Content-Type") or ""):
            return self._handle_json(path, json.loads(body))
        status, payload = super()._handle(path, headers, body)
        with self._lock:
            spans, self._spans = self._spans, []
            logs, self._logs = self._logs, []
            self.log_record_count += len(logs)
            for span in spans:
                if span.kind == _SERVER_SPAN:
                    self.server_span_count += 1
                if "/error" in span.name or span.attributes.get("http.route") == "/error":
                    self.error_trace_ids.add(span.trace_id)
        return status, payload

    def _handle_json(self, path: str, document: Any) -> tuple[int, bytes]:
        """OTLP/JSON (the Node exporters), read with json alone: protobuf's ParseDict, which
        the shared receiver uses, is pure Python and too slow to keep up with a saturated
        service, so the exporter's queue would overflow because of the receiver."""
        if path.endswith("/v1/logs"):
            count = sum(
                len(scope.get("logRecords", []))
                for resource in document.get("resourceLogs", [])
                for scope in resource.get("scopeLogs", [])
            )
            with self._lock:
                self.log_record_count += count
            return 200, b"{}"
        if not path.endswith("/v1/traces"):
            return 404, b'{"error":"unknown path"}'
        server, error_ids = 0, set()
        for resource in document.get("resourceSpans", []):
            for scope in resource.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    server += span.get("kind") in (_SERVER_SPAN, "SPAN_KIND_SERVER")
                    route = next(
                        (
                            a.get("value", {}).get("stringValue")
                            for a in span.get("attributes", [])
                            if a.get("key") == "http.route"
                        ),
                        None,
                    )
                    if "/error" in span.get("name", "") or route == "/error":
                        error_ids.add(str(span.get("traceId", "")).lower())
        with self._lock:
            self.server_span_count += server
            self.error_trace_ids |= error_ids
        return 200, b"{}"


class _SentryReceiver(SentryReceiver):
    """The shared Sentry receiver, also for @sentry/node 11, which puts its auth in the
    envelope URL's query string (``/api/1/envelope/?sentry_key=...``): the shared receiver
    compares the whole path, query included, and would answer 404."""

    def _handle(self, path: str, headers: Any, body: bytes) -> tuple[int, bytes]:
        return super()._handle(path.split("?", 1)[0], headers, body)


@dataclass
class _Backends:
    """Where a variant's telemetry goes, and the receivers to ask afterwards."""

    env: dict[str, str]
    otlp: _CountingOtlpReceiver | None = None
    sentry: SentryReceiver | None = None
    begin_outage: Callable[[], None] | None = None


def _healthy(stack: contextlib.ExitStack) -> _Backends:
    otlp = stack.enter_context(_CountingOtlpReceiver())
    sentry = stack.enter_context(_SentryReceiver())
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp.traces_endpoint,
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": otlp.logs_endpoint,
        "SENTRY_DSN": sentry.dsn,
    }
    return _Backends(env, otlp, sentry)


def _outage(stack: contextlib.ExitStack, kind: str) -> _Backends:
    """Receivers that work until the outage begins (``begin_outage``): then they go away
    (``refused``: connections refused, open ones cut off) or accept and never answer (``hang``).
    The server has run against healthy backends first, as a service in production has when its
    backends fail, so the memory figure is what the outage adds, not the heap's warm-up."""
    backends = _healthy(stack)
    assert backends.otlp is not None and backends.sentry is not None
    receivers = (backends.otlp, backends.sentry)

    def begin() -> None:
        for receiver in receivers:
            if kind == "refused":
                receiver.go_down()
            else:
                receiver.mode = "hang"

    # The outage's receivers answer nothing the report reads.
    return _Backends(backends.env, begin_outage=begin)


def _deprioritise_receiver_threads() -> None:
    """Receivers run in this process, on the load generator's core. Niced, they never hold
    wrk back (a stalled client would show up as server latency); threads they start inherit
    the nice value."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and thread.native_id is not None:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, thread.native_id, 10)


# --- servers ------------------------------------------------------------------------------


@dataclass
class Server:
    variant: str
    service: Service
    pid: int  # the process whose CPU and memory are measured
    backends: _Backends | None
    requests_sent: int = 0

    @property
    def url(self) -> str:
        return self.service.url


def _pinned(command: Sequence[str], pin: bool) -> list[str]:
    return [*priority(), "taskset", "-c", str(SERVER_CPU), *command] if pin else list(command)


def priority() -> list[str]:
    """A command prefix that lets the server and wrk win over anything else on the machine
    (only root may raise priority; elsewhere they run at normal priority)."""
    return ["nice", "-n", "-10"] if os.geteuid() == 0 else []


# Variant "stock:<key>": the 100%-traced service with that custom piece swapped back.
_STOCK = "stock:"
# The production profile: 10% of traces kept.
_PRODUCTION_SAMPLING = {
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.1",
}


def _instrumented_env(spec: ServiceSpec, backends: _Backends, variant: str) -> dict[str, str]:
    env = {
        "OTEL_SERVICE_NAME": spec.service_name,
        "SENTRY_ENVIRONMENT": "bench",
        "SENTRY_RELEASE": f"{spec.service_name}@bench",
        "LOG_LEVEL": "INFO",
        # Every trace kept and exported, unless this is the production profile.
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        **spec.extra_env,
        **backends.env,
    }
    if variant == "prod":
        env.update(_PRODUCTION_SAMPLING)
    if variant == "docs":
        # Metrics come from prometheus-client / prom-client on /metrics, as in the service; the
        # Node SDK would otherwise also export its own to OTLP every minute.
        env["OTEL_METRICS_EXPORTER"] = "none"
    return env


def _command(
    spec: ServiceSpec, variant: str, direct: bool
) -> tuple[tuple[str, ...], Path, dict[str, str]]:
    """How ``variant`` is started: its command, working directory and own environment."""
    if variant.startswith(_STOCK):
        assert spec.stock is not None
        return spec.stock(variant.removeprefix(_STOCK).split(","))
    if variant == "bare":
        return spec.bare_command, REPO, {}
    if variant == "docs":
        if not (spec.docs_dir / "node_modules").exists() and spec.docs_dir != REPO:
            raise RuntimeError(f"{spec.docs_dir} has no node_modules: run `make setup-node`")
        return spec.docs_command, spec.docs_dir, {}
    command = spec.direct_command if direct else spec.instrumented_command
    return command, spec.instrumented_dir, {}


@contextlib.contextmanager
def _start(
    spec: ServiceSpec,
    variant: str,
    backends: _Backends | None,
    pin: bool,
    callgrind_dir: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """One server of ``variant``; under callgrind (counting nothing yet) if ``callgrind_dir``."""
    command, cwd, own_env = _command(spec, variant, direct=callgrind_dir is not None)
    if backends is None:
        env = dict(spec.extra_env)
        env.pop("MONITOR_TARGETS", None)
    else:
        env = _instrumented_env(spec, backends, variant)
    env.update(own_env)
    env.update(extra_env or {})
    timeout = 60.0
    if callgrind_dir is not None:
        command = tuple(callgrind.command(command, callgrind_dir))
        timeout = callgrind.READY_TIMEOUT_S
    with run_service(_pinned(command, pin), cwd, env, timeout=timeout) as service:
        pid = service.process.pid
        # Under Valgrind the started process is the server (taskset and nice exec into it).
        if spec.process_name is not None and callgrind_dir is None:
            pid = proc.find_process(pid, spec.process_name)
        try:
            yield Server(variant, service, pid, backends)
        finally:
            if pid != service.process.pid:
                # SIGTERM to npm does not reach node through npm's shell: stop node itself
                # (it flushes telemetry and exits), or it outlives the benchmark.
                _terminate(pid)
            service.stop()
            if service.process.returncode not in (0, -15):
                print(
                    f"bench: {spec.key}/{variant} exited with {service.process.returncode}:\n"
                    + service.output()[-3000:],
                    file=sys.stderr,
                )
            service.log_path.unlink(missing_ok=True)


def _terminate(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


# --- measurement --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    variant: str
    mix: bool  # 10% /error
    long: bool  # outage run: long enough for memory growth to show


@dataclass
class Run:
    load: load.LoadResult
    cpu_seconds: float
    rss_before_mb: float
    rss_after_mb: float


@dataclass
class CaseResult:
    case: Case
    runs: list[Run] = field(default_factory=list)
    rss_growth_mb: float | None = None
    unmeasured_seconds: float = 0.0  # the load before each run (rewarm_seconds)
    dropped: dict[str, float] = field(default_factory=dict)
    errors_sent: int = 0
    errors_joined: int = 0
    errors_dropped: float = 0.0
    errors_without_trace: int = 0
    errors_duplicated: int = 0

    @property
    def requests(self) -> int:
        return sum(r.load.requests for r in self.runs)

    # Medians over the rounds: one run disturbed by something else on the machine does not
    # move the figure.
    @property
    def cpu_us(self) -> float:
        return statistics.median(self.cpu_us_runs) if self.runs else 0.0

    @property
    def cpu_us_runs(self) -> list[float]:
        return [r.cpu_seconds / max(1, r.load.requests) * 1e6 for r in self.runs]

    @property
    def rps(self) -> float:
        return statistics.median(r.load.requests / max(1e-9, r.load.seconds) for r in self.runs)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.load.p50_ms for r in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.load.p99_ms for r in self.runs)

    @property
    def max_ms(self) -> float:
        return max(r.load.max_ms for r in self.runs)

    @property
    def non_2xx(self) -> int:
        return sum(r.load.non_2xx for r in self.runs)

    @property
    def socket_errors(self) -> int:
        return sum(r.load.socket_errors for r in self.runs)

    @property
    def load_seconds(self) -> float:
        """All the load the server took in this case, the unmeasured part included: the span
        of the memory figure."""
        return sum(r.load.seconds for r in self.runs) + self.unmeasured_seconds


CASES = (
    Case("bare", "bare (no instrumentation)", "bare", mix=False, long=False),
    Case("full", "all signals, 100% traced", "full", mix=False, long=False),
    Case("docs", "documented way, all signals, 100% traced", "docs", mix=False, long=False),
    Case("prod", "production defaults (10% traced)", "prod", mix=False, long=False),
    Case("mix", "all signals, 100% traced, 10% /error", "full", mix=True, long=False),
    Case("refused", "backends refuse connections", "refused", mix=False, long=True),
    Case("hang", "backends accept, never answer", "hang", mix=False, long=True),
)


@dataclass
class ServiceResult:
    spec: ServiceSpec
    cases: dict[str, CaseResult]
    telemetry: dict[str, dict[str, float]]  # variant -> what the healthy receivers got
    pinned: bool
    # Case key -> instructions counted by callgrind (bare, full, docs, prod, mix); empty when
    # callgrind was not run.
    instructions: dict[str, callgrind.Count] = field(default_factory=dict)
    # The Sentry error budget the counted /error mix ran with (see _callgrind_counts).
    callgrind_error_budget: float | None = None


def _paths(spec: ServiceSpec, mix: bool) -> list[str]:
    return [spec.hot_path] * 9 + ["/error"] if mix else [spec.hot_path]


def _metric_totals(url: str, name: str, label: str) -> dict[str, float]:
    """Sum of a counter's samples by one label, read from the service's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                key = sample.labels.get(label, "")
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def _dropped(server: Server) -> dict[str, float]:
    if server.backends is None:  # the bare baselines have no metrics
        return {}
    return _metric_totals(server.url, "telemetry_dropped_total", "signal")


def _wrk(
    server: Server, spec: ServiceSpec, mix: bool, seconds: float, pin: bool
) -> load.LoadResult:
    cpu, prefix = (LOAD_CPU, priority()) if pin else (None, [])
    return load.run_wrk(server.url, _paths(spec, mix), seconds, cpu, prefix)


def _measure(server: Server, spec: ServiceSpec, case: Case, seconds: float, pin: bool) -> Run:
    if server.service.process.poll() is not None:
        raise RuntimeError(f"{spec.key}/{server.variant} died:\n{server.service.output()[-3000:]}")
    rss_before = proc.rss_mb(server.pid)
    cpu_before = proc.cpu_seconds(server.pid)
    result = _wrk(server, spec, case.mix, seconds, pin)
    cpu_after = proc.cpu_seconds(server.pid)
    server.requests_sent += result.requests
    return Run(result, cpu_after - cpu_before, rss_before, proc.rss_mb(server.pid))


def _error_events(sentry: SentryReceiver) -> list[dict[str, Any]]:
    def deliberate(event: dict[str, Any]) -> bool:
        values = (event.get("exception") or {}).get("values") or [{}]
        return bool(values[-1].get("type") == "DeliberateError")

    return [event for event in sentry.events() if deliberate(event)]


def _event_trace_id(event: dict[str, Any]) -> str:
    return str(((event.get("contexts") or {}).get("trace") or {}).get("trace_id") or "")


def _check_errors_reached_sentry(
    server: Server, result: CaseResult, events_before: int, dropped_before: float, sent: int
) -> None:
    """Every /error of the mix: a Sentry event whose trace id is a trace the OTLP receiver got,
    or counted in telemetry_dropped_total{signal="errors"}. Waits for the exporters' batches."""
    backends = server.backends
    assert backends is not None and backends.sentry is not None and backends.otlp is not None
    sentry, otlp = backends.sentry, backends.otlp

    def settled() -> bool:
        events = _error_events(sentry)[events_before:]
        ids = {_event_trace_id(e) for e in events}
        joined = len(ids & otlp.error_trace_ids)
        dropped = _dropped(server).get("errors", 0.0) - dropped_before
        return joined + dropped >= sent

    deadline = time.monotonic() + 20
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.5)
    events = _error_events(sentry)[events_before:]
    ids = [_event_trace_id(e) for e in events]
    result.errors_sent += sent
    result.errors_joined += len(set(ids) & otlp.error_trace_ids)
    result.errors_without_trace += sum(1 for i in ids if not _TRACE_ID.match(i))
    result.errors_duplicated += len(ids) - len(set(ids))
    result.errors_dropped += _dropped(server).get("errors", 0.0) - dropped_before


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_service_bench(spec: ServiceSpec, settings: Settings, pin: bool) -> ServiceResult:
    variants = ("bare", "full", "docs", "prod", "refused", "hang")
    with contextlib.ExitStack() as stack:
        backends: dict[str, _Backends | None] = {
            "bare": None,
            "full": _healthy(stack),
            "docs": _healthy(stack),
            "prod": _healthy(stack),
            "refused": _outage(stack, "refused"),
            "hang": _outage(stack, "hang"),
        }
        _deprioritise_receiver_threads()
        _log(f"{spec.key}: starting {', '.join(variants)}")
        managers = {v: _start(spec, v, backends[v], pin) for v in variants}
        # Start-up in parallel (Node takes seconds to load its instrumentation).
        with ThreadPoolExecutor(len(variants)) as pool:
            entered = {v: pool.submit(m.__enter__) for v, m in managers.items()}
        servers: dict[str, Server] = {}
        for variant, future in entered.items():
            exc = future.exception()
            if exc is None:
                servers[variant] = future.result()
                stack.push(managers[variant])
        failed = [v for v in variants if v not in servers]
        if failed:
            raise RuntimeError(
                f"{spec.key}: could not start {failed}: {entered[failed[0]].exception()}"
            )

        _log(f"{spec.key}: warming up")
        for variant, server in servers.items():
            outage = server.backends.begin_outage if server.backends else None
            for mix in (False, True) if variant == "full" else (False,):
                seconds = settings.outage_warmup_seconds if outage else settings.warmup_seconds
                warm = _wrk(server, spec, mix, seconds, pin)
                server.requests_sent += warm.requests
            if outage is not None:
                outage()

        results = {case.key: CaseResult(case) for case in CASES}
        rss_start = {v: proc.rss_mb(s.pid) for v, s in servers.items()}
        dropped_start = {v: _dropped(s) for v, s in servers.items()}
        for round_no in range(settings.rounds):
            for case in CASES:
                server = servers[case.variant]
                seconds = settings.outage_seconds if case.long else settings.seconds
                _log(
                    f"{spec.key}: round {round_no + 1}/{settings.rounds} {case.key} ({seconds:g}s)"
                )
                rewarm = _wrk(server, spec, False, settings.rewarm_seconds, pin)
                server.requests_sent += rewarm.requests
                results[case.key].unmeasured_seconds += rewarm.seconds
                sentry = server.backends.sentry if server.backends else None
                events_before = len(_error_events(sentry)) if sentry else 0
                dropped_before = _dropped(server).get("errors", 0.0) if case.mix else 0.0
                run = _measure(server, spec, case, seconds, pin)
                results[case.key].runs.append(run)
                if case.mix:
                    sent = run.load.non_2xx
                    _check_errors_reached_sentry(
                        server, results[case.key], events_before, dropped_before, sent
                    )
        for case in CASES:
            server = servers[case.variant]
            result = results[case.key]
            result.rss_growth_mb = proc.rss_mb(server.pid) - rss_start[case.variant]
            now = _dropped(server)
            result.dropped = {
                signal: now.get(signal, 0.0) - dropped_start[case.variant].get(signal, 0.0)
                for signal in sorted(set(now) | set(dropped_start[case.variant]))
            }
        requests_sent = {v: s.requests_sent for v, s in servers.items()}
        _log(f"{spec.key}: stopping (flushes telemetry)")
    telemetry: dict[str, dict[str, float]] = {}
    for variant in ("full", "prod"):
        b = backends[variant]
        if b is not None and b.otlp is not None:
            telemetry[variant] = {
                "requests": float(requests_sent[variant]),
                "server_spans": float(b.otlp.server_span_count),
                "log_records": float(b.otlp.log_record_count),
            }
    done = ServiceResult(spec, results, telemetry, pin)
    if settings.callgrind_requests:
        _callgrind_counts(done, settings, pin)
    return done


# --- instructions (callgrind) -------------------------------------------------------------

# The services' default SENTRY_MAX_EVENTS_PER_SECOND.
_ERROR_BUDGET = 10.0


def _callgrind_counts(result: ServiceResult, settings: Settings, pin: bool) -> None:
    """Counts instructions per request for the cases the ratio targets compare, one server at a
    time under callgrind (never two Valgrinds at once: each takes a core).

    The /error mix needs care: the services turn an error into a full Sentry event only within
    a budget of events per second (``SENTRY_MAX_EVENTS_PER_SECOND``), and count the rest as
    dropped, far more cheaply. Valgrind slows the server ~50x, so the same mix would make ~50x
    fewer errors a second and every one of them would get the expensive path, which no server
    at full speed sees. The counted mix therefore runs with the budget scaled by the slowdown
    (the 100% server's request rate under Valgrind over its rate in the timed runs), so that
    the same share of errors becomes a full event as in the timed mix.
    """
    spec = result.spec
    assert settings.callgrind_requests is not None
    requests = settings.callgrind_requests
    warmup = round(spec.callgrind_warmup * settings.callgrind_warmup_share)
    hot, mix = _paths(spec, mix=False), _paths(spec, mix=True)
    plan: list[tuple[str, str, list[str]]] = [
        ("bare", "bare", hot),
        ("full", "full", hot),
        ("prod", "prod", hot),
        ("docs", "docs", hot),
        ("mix", "full", mix),
    ]
    plan += [
        (f"{_STOCK}{p.key}", f"{_STOCK}{p.key}", mix if p.paths == "mix" else hot)
        for p in spec.pieces
    ]
    slowdown = 1.0
    for key, variant, paths in plan:
        extra: dict[str, str] = {}
        if paths is mix:
            result.callgrind_error_budget = _ERROR_BUDGET / slowdown
            extra["SENTRY_MAX_EVENTS_PER_SECOND"] = f"{result.callgrind_error_budget:.4f}"
        _log(f"{spec.key}: callgrind {key} ({warmup} + {requests} requests)")
        with callgrind.out_dir() as out, contextlib.ExitStack() as stack:
            backends = None if variant == "bare" else _healthy(stack)
            _deprioritise_receiver_threads()
            try:
                server = stack.enter_context(_start(spec, variant, backends, pin, out, extra))
            except AssertionError as exc:  # run_service's "not ready" / "exited"
                raise RuntimeError(f"{spec.key}/{key} under callgrind: {exc}") from exc
            counted = callgrind.count(server.pid, server.url, paths, warmup, requests, out)
            if key == "full":
                rate = requests / max(1e-9, counted.seconds)
                slowdown = max(1.0, result.cases["full"].rps / rate)
            result.instructions[key] = counted
            _log(
                f"{spec.key}: callgrind {key}: {counted.per_request / 1000:,.0f}k per request "
                f"(settling window {counted.settling.per_request / 1000:,.0f}k)"
            )


def can_pin() -> bool:
    return (
        hasattr(os, "sched_setaffinity")
        and len(os.sched_getaffinity(0)) >= 2
        and {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0)
        and shutil.which("taskset") is not None
    )


def _use_project_tools() -> None:
    """The Node the services run on: the Makefile puts the pinned Node in .tools/bin first on
    PATH, and so does ``python -m bench`` when it is started without make, so that bare,
    documented and service variants all run on the service's runtime."""
    tools = REPO / ".tools" / "bin"
    if (tools / "node").exists() and not os.environ.get("PATH", "").startswith(str(tools)):
        os.environ["PATH"] = f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"


def run(settings: Settings, progress: Callable[[str], None] = _log) -> list[ServiceResult]:
    _use_project_tools()
    if settings.callgrind_requests and (why := callgrind.available()) is not None:
        raise RuntimeError(f"{why} (or run with --no-callgrind: verdicts by CPU time)")
    pin = can_pin()
    if pin:
        # Before any thread exists: every thread of this process (receivers) and wrk inherit it.
        os.sched_setaffinity(0, {LOAD_CPU})
    else:
        progress("fewer than 2 usable cores or no taskset: running unpinned")
    specs = _specs()
    return [run_service_bench(specs[key], settings, pin) for key in settings.services]
