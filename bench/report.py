"""Targets, and the markdown report (printed, and written to bench/results.md)."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench import callgrind, load
from bench.runner import CaseResult, ServiceResult, Settings

_NODE_DIR = Path(__file__).resolve().parents[1] / "examples" / "api"
_DOCS_NODE_DIR = Path(__file__).resolve().parent / "docs-node"
# Targets from issues 7 and 21 (see docs/bench.md). The capacity ratios are judged by
# instructions per request (callgrind) when they were counted, by CPU time otherwise.
CAPACITY_FULL = 0.5
CAPACITY_PROD = 0.8
# The service against the same app instrumented the way the libraries' docs show, both 100%
# traced: the service must stay cheaper, or its own telemetry code has no reason to exist.
LEAD_OVER_DOCS = 1.0
OUTAGE_P99_RATIO = 1.2
OUTAGE_RSS_MB = 50.0
# A request that waited on a telemetry backend would take about the export timeout (5 s); at
# saturation the slowest healthy request here takes tens of milliseconds.
OUTAGE_MAX_MS = 1000.0
ERROR_MIX_CAPACITY = 0.8
# A hand-made piece of telemetry code must save at least this share of the request it serves
# against the library's own way, or the library's way is used (issue #21).
PIECE_SAVING = 0.10

_PY_PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "sentry-sdk",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-instrumentation-fastapi",
    "prometheus-client",
    "python-json-logger",
)
_NODE_PACKAGES = (
    "express",
    "@sentry/node",
    "@opentelemetry/sdk-trace",
    "@opentelemetry/instrumentation-http",
    "prom-client",
    "pino",
)
# Only the documented-way variant uses these (bench/docs-node).
_DOCS_NODE_PACKAGES = ("@opentelemetry/sdk-node", "@opentelemetry/instrumentation-express")


@dataclass(frozen=True)
class Target:
    service: str
    name: str
    measured: str
    threshold: str
    met: bool


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def evaluate(result: ServiceResult, settings: Settings) -> list[Target]:
    c = result.cases
    title = result.spec.key
    bare, full, prod, mix = c["bare"], c["full"], c["prod"], c["mix"]
    targets = [
        _at_least(
            result, "capacity, all signals, 100% traced (vs bare)", bare, full, CAPACITY_FULL
        ),
        _at_least(result, "capacity, production defaults (vs bare)", bare, prod, CAPACITY_PROD),
        _lead(result),
    ]
    for key in ("refused", "hang"):
        outage = c[key]
        what = outage.case.label
        p99 = _ratio(outage.p99_ms, full.p99_ms)
        targets.append(
            Target(
                title,
                f"{what}: p99 vs healthy",
                f"{p99:.2f}x ({outage.p99_ms:.1f} vs {full.p99_ms:.1f} ms)",
                f"<= {OUTAGE_P99_RATIO}x",
                p99 <= OUTAGE_P99_RATIO,
            )
        )
        failed = outage.socket_errors + outage.non_2xx
        targets.append(
            Target(
                title,
                f"{what}: no request waits on telemetry",
                f"max {outage.max_ms:.0f} ms, {failed} failed of {outage.requests}",
                f"max < {OUTAGE_MAX_MS:.0f} ms, none failed",
                outage.max_ms < OUTAGE_MAX_MS and failed == 0,
            )
        )
        growth = outage.rss_growth_mb or 0.0
        targets.append(
            Target(
                title,
                f"{what}: RSS growth over {outage.load_seconds:.0f} s of load",
                f"{growth:+.1f} MB",
                f"< {OUTAGE_RSS_MB:.0f} MB",
                growth < OUTAGE_RSS_MB,
            )
        )
        shown = ", ".join(f"{k} {v:.0f}" for k, v in outage.dropped.items())
        targets.append(
            Target(
                title,
                f"{what}: telemetry_dropped_total shows the loss",
                shown or "no counter",
                "traces > 0 and logs > 0",
                outage.dropped.get("traces", 0) > 0 and outage.dropped.get("logs", 0) > 0,
            )
        )
    targets.append(
        _at_least(result, "capacity with 10% /error (vs no errors)", full, mix, ERROR_MIX_CAPACITY)
    )
    accounted = mix.errors_joined + mix.errors_dropped
    targets.append(
        Target(
            title,
            "each /error reaches Sentry with its trace id, or is counted as dropped",
            f"{mix.errors_joined} joined + {mix.errors_dropped:.0f} dropped of {mix.errors_sent}"
            + (f"; {mix.errors_without_trace} without trace id" if mix.errors_without_trace else "")
            + (f"; {mix.errors_duplicated} duplicates" if mix.errors_duplicated else ""),
            "all, each with the trace id of its span",
            mix.errors_sent > 0 and accounted >= mix.errors_sent and mix.errors_without_trace == 0,
        )
    )
    targets += _piece_targets(result)
    return targets


# A piece's "paths" -> the service's case it is compared with, and what that case is.
_PIECE_CASES = {
    "hot": ("full", "a 100%-traced request"),
    "mix": ("mix", "the 10% /error mix"),
}


def _piece_targets(result: ServiceResult) -> list[Target]:
    """Issue #21's rule for each custom piece: with the library's way in its place, the
    instrumented request costs at least 10% more instructions."""
    counts = result.instructions
    targets = []
    for piece in result.spec.pieces:
        stock = counts.get(f"stock:{piece.key}")
        service_case, where = _PIECE_CASES.get(piece.paths, _PIECE_CASES["hot"])
        service = counts.get(service_case)
        if stock is None or service is None:
            continue
        saving = _ratio(stock.per_request - service.per_request, stock.per_request)
        targets.append(
            Target(
                result.spec.key,
                f"custom piece {piece.piece}; against {piece.stock}: share of the request saved",
                f"{saving:.0%} of {where} ({_kilo(service)} vs {_kilo(stock)} per request)",
                f">= {PIECE_SAVING:.0%}",
                saving >= PIECE_SAVING,
            )
        )
    return targets


def _cpu_ratio(base: CaseResult, case: CaseResult) -> str:
    """The CPU-time ratio, with the range of the rounds' ratios: round i of every case runs in
    the same pass, a minute or so apart, so the range shows how far the machine's noise moves
    the figure."""
    paired = [_ratio(b, c) for b, c in zip(base.cpu_us_runs, case.cpu_us_runs, strict=False)]
    spread = f"; rounds {min(paired):.2f}-{max(paired):.2f}x" if len(paired) > 1 else ""
    return (
        f"{_ratio(base.cpu_us, case.cpu_us):.2f}x "
        f"({case.cpu_us:.0f} vs {base.cpu_us:.0f} us CPU/request{spread})"
    )


def _kilo(count: callgrind.Count) -> str:
    return f"{count.per_request / 1000:,.0f}k"


def _kilo_window(window: callgrind.Window) -> str:
    return f"{window.per_request / 1000:,.0f}k"


def _compare(result: ServiceResult, base: CaseResult, case: CaseResult) -> tuple[float, str]:
    """``base`` over ``case``: by instructions when callgrind counted both, CPU time beside;
    by CPU time alone otherwise."""
    cpu = _cpu_ratio(base, case)
    counts = result.instructions
    if base.case.key in counts and case.case.key in counts:
        b, c = counts[base.case.key], counts[case.case.key]
        ratio = _ratio(b.per_request, c.per_request)
        return ratio, (
            f"{ratio:.2f}x by instructions ({_kilo(c)} vs {_kilo(b)} per request); CPU time {cpu}"
        )
    return _ratio(base.cpu_us, case.cpu_us), f"CPU time {cpu}"


def _at_least(
    result: ServiceResult, name: str, base: CaseResult, case: CaseResult, threshold: float
) -> Target:
    ratio, measured = _compare(result, base, case)
    return Target(result.spec.key, name, measured, f">= {threshold}x", ratio >= threshold)


def _lead(result: ServiceResult) -> Target:
    """How many times cheaper the service is than the documented way, both 100% traced."""
    ratio, measured = _compare(result, result.cases["full"], result.cases["docs"])
    lead = _ratio(1.0, ratio)
    return Target(
        result.spec.key,
        "all signals, 100% traced: the service vs the documented way",
        f"{lead:.2f}x cheaper; documented way vs service: {measured}",
        f"> {LEAD_OVER_DOCS}x cheaper",
        lead > LEAD_OVER_DOCS,
    )


# --- environment ---------------------------------------------------------------------------


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def _node_version(package: str, directory: Path = _NODE_DIR) -> str:
    try:
        manifest = json.loads((directory / "node_modules" / package / "package.json").read_text())
    except OSError:
        return "not installed"
    return str(manifest.get("version", "?"))


def _node_runtime() -> str:
    import subprocess

    done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


def machine() -> dict[str, str]:
    import os

    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} cores",
        "memory": f"{_memory_gb():.0f} GB",
        "os": f"{_os_name()}, Linux {platform.release()}",
        "python": platform.python_version(),
        "node": _node_runtime(),
        "wrk": load.wrk_version(),
    }


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in _PY_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    for name in _NODE_PACKAGES:
        found[name] = _node_version(name)
    for name in _DOCS_NODE_PACKAGES:
        found[name] = _node_version(name, _DOCS_NODE_DIR)
    return found


# --- markdown ------------------------------------------------------------------------------


def _case_table(result: ServiceResult) -> list[str]:
    bare = result.cases["bare"]
    counts = result.instructions
    lines = [
        "| case | instructions/request | vs bare | CPU/request | runs | vs bare | req/s "
        "| p50 | p99 | max | RSS growth |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for case in result.cases.values():
        spread = " / ".join(f"{v:.0f}" for v in case.cpu_us_runs)
        failed = case.socket_errors + (0 if case.case.mix else case.non_2xx)
        note = f" ({failed} failed)" if failed else ""
        count = counts.get(case.case.key)
        instructions = (
            f"{_kilo(count)} | {_ratio(counts['bare'].per_request, count.per_request):.2f}x"
            if count is not None and "bare" in counts
            else "- | -"
        )
        lines.append(
            f"| {case.case.label}{note} | {instructions} | {case.cpu_us:.0f} us | {spread} "
            f"| {_ratio(bare.cpu_us, case.cpu_us):.2f}x | {case.rps:.0f} "
            f"| {case.p50_ms:.1f} ms | {case.p99_ms:.1f} ms | {case.max_ms:.0f} ms "
            f"| {case.rss_growth_mb or 0:+.1f} MB |"
        )
    return lines


def _facts(result: ServiceResult) -> list[str]:
    c = result.cases
    per_error = (c["mix"].cpu_us - 0.9 * c["full"].cpu_us) / 0.1
    lines = [
        f"- One `/error` request costs about {per_error:.0f} us of CPU "
        f"(from the 10% mix: (mix - 0.9 x no-error) / 0.1).",
    ]
    for variant, got in result.telemetry.items():
        requests = got["requests"] or 1
        lines.append(
            f"- Receivers got, for the {'100%' if variant == 'full' else '10%'} traced server: "
            f"{got['server_spans'] / requests:.2f} server spans and "
            f"{got['log_records'] / requests:.2f} log records per request "
            f"({got['requests']:.0f} requests, warm-up included)."
        )
    if result.instructions:
        lines.append(
            "- Instructions per request, first (settling) window against the counted one: "
            + ", ".join(
                f"{key} {_kilo_window(count.settling)} / {_kilo(count)}"
                for key, count in result.instructions.items()
            )
            + "."
        )
    if result.callgrind_error_budget is not None:
        lines.append(
            "- The counted `/error` mix ran with `SENTRY_MAX_EVENTS_PER_SECOND="
            f"{result.callgrind_error_budget:.3g}` (the default 10 scaled by Valgrind's slowdown,"
            " so the same share of errors becomes a full Sentry event as at full speed)."
        )
    healthy_drops = {k: v for k, v in c["full"].dropped.items() if v}
    lines.append(
        "- Dropped while the backends were healthy: "
        + (", ".join(f"{k} {v:.0f}" for k, v in healthy_drops.items()) or "nothing")
        + "."
    )
    return lines


def markdown(
    results: list[ServiceResult], settings: Settings, load_average: tuple[float, float]
) -> str:
    info = machine()
    pinned = all(r.pinned for r in results)
    share = settings.callgrind_warmup_share
    warmups = ", ".join(
        f"{round(r.spec.callgrind_warmup * share):,} ({r.spec.key})" for r in results
    )
    out = [
        "# Signalbox benchmark results",
        "",
        "Written by `make bench` (`python -m bench`); how to read it: [docs/bench.md]"
        "(../docs/bench.md).",
        "",
        f"- Date: {info['date']}",
        f"- Machine: {info['cpu']}, {info['memory']} RAM; {info['os']}",
        f"- Runtimes: Python {info['python']}, Node {info['node']}, wrk {info['wrk']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "- Method: "
        + (
            f"server pinned to CPU {0}, wrk and the receivers to CPU {1}; "
            if pinned
            else "NOT pinned (fewer than 2 cores or no taskset); "
        )
        + f"wrk 1 thread, {load.CONNECTIONS} connections; {settings.rounds} alternated rounds of "
        f"{settings.seconds:g} s per case ({settings.outage_seconds:g} s for outage cases) "
        f"after {settings.warmup_seconds:g} s warm-up, each run preceded by "
        f"{settings.rewarm_seconds:g} s of unmeasured load (steady state, not a server waking "
        "from idle); the outage servers first run "
        f"{settings.outage_warmup_seconds:g} s against healthy backends, which then go away "
        "(refused) or stop answering (hang). CPU/request = the server process's "
        "utime+stime (all threads, exporters included) / requests completed; `runs` lists it "
        "per round. Latencies are wrk's, at saturation.",
        "- Instructions/request: "
        + (
            "callgrind, the whole server process (every thread), one server at a time, "
            "started with counting off; after "
            + warmups
            + f" uncounted requests, two windows of {settings.callgrind_requests} requests are "
            "counted and the second is the figure (the first shows whether the server had "
            f"settled); requests sent over {callgrind.CONNECTIONS} keep-alive connections from "
            "outside Valgrind. The capacity verdicts use this ratio; the CPU-time ratio stands "
            "beside it."
            if settings.callgrind_requests
            else "not counted (--no-callgrind): the capacity verdicts use CPU time."
        ),
        f"- Load average (1 min) before / after the run: {load_average[0]:.1f} / "
        f"{load_average[1]:.1f}, the benchmark's own load included; other work on the machine "
        "shows as spread in the `runs` column.",
        "",
    ]
    all_targets: list[Target] = []
    for result in results:
        out += [f"## {result.spec.title}", "", *_case_table(result), "", *_facts(result), ""]
        all_targets += evaluate(result, settings)
    met = sum(t.met for t in all_targets)
    out += [
        f"## Targets ({met} of {len(all_targets)} met)",
        "",
        "| service | target | measured | wanted | |",
        "|---|---|---|---|---|",
    ]
    out += [
        f"| {t.service} | {t.name} | {t.measured} | {t.threshold} | "
        f"{'met' if t.met else '**NOT MET**'} |"
        for t in all_targets
    ]
    return "\n".join(out) + "\n"
