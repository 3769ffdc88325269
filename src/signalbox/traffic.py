"""``signalbox traffic``: realistic load on the FastAPI sample service, so dashboards have data.

Requests are sent open-loop at ``--rate`` per second (a slow answer does not slow the schedule;
``--concurrency`` bounds what is in flight) for ``--duration`` seconds, or until interrupted
with ``--duration 0``. The mix: ``--error-fraction`` of /error (unhandled and handled),
``--slow-fraction`` of /slow, ``--chain-fraction`` of /chain (which calls the Node service; one
in ten asks for an unknown item, a 404), the rest /hello and /. Ctrl-C (or SIGTERM, as
``docker stop`` sends) stops the schedule, lets requests in flight finish, and prints the
summary: requests, status counts, latency percentiles, by route.

exit status: 0 every answer was the expected one, 1 transport errors or unexpected statuses
(for example /chain answering 503 because the Node service is down), 2 misuse, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx

DEFAULT_TARGET = "http://localhost:8000"
CATALOG = ("SB-1001", "SB-1002", "SB-1003", "SB-1004", "SB-1005")
UNKNOWN_SKU = "SB-9999"
NAMES = ("Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances")
_MAX_DURATION_S = 7 * 86_400.0
# Enough samples for stable percentiles over any run while bounding memory on endless runs.
_RESERVOIR = 20_000
_EXIT_INTERRUPTED = 130


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "traffic",
        help="send a realistic mix of requests to the FastAPI sample service",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--target",
        metavar="URL",
        help=f"FastAPI service base URL [SIGNALBOX_SERVICE_URL, {DEFAULT_TARGET}]",
    )
    parser.add_argument(
        "--rate",
        type=_bounded(0.01, 1000),
        default=5.0,
        help="requests per second (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        type=_bounded(0, _MAX_DURATION_S, include_low=True),
        default=60.0,
        help="seconds to run; 0 runs until interrupted (default: %(default)s)",
    )
    parser.add_argument(
        "--error-fraction",
        type=_fraction,
        default=0.1,
        help="share of /error (default: %(default)s)",
    )
    parser.add_argument(
        "--slow-fraction", type=_fraction, default=0.1, help="share of /slow (default: %(default)s)"
    )
    parser.add_argument(
        "--chain-fraction",
        type=_fraction,
        default=0.2,
        help="share of /chain (default: %(default)s)",
    )
    parser.add_argument(
        "--slow-ms",
        type=_ms_range,
        default=(200, 1500),
        metavar="MIN:MAX",
        help="delay range asked of /slow, milliseconds (default: 200:1500)",
    )
    parser.add_argument(
        "--concurrency",
        type=_whole(1, 1000),
        default=32,
        help="requests in flight at most (default: %(default)s)",
    )
    parser.add_argument(
        "--request-timeout",
        type=_bounded(0.1, 120),
        default=15.0,
        help="seconds before a request counts as timed out (default: %(default)s)",
    )
    parser.add_argument(
        "--wait",
        type=_bounded(0, 600, include_low=True),
        default=0.0,
        help="seconds to wait for the service's /ready before starting (default: %(default)s)",
    )
    parser.add_argument(
        "--report-every",
        type=_bounded(1, 3600, include_low=True),
        default=30.0,
        help="without a terminal, log a progress line this often, seconds (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, help="random seed, for a repeatable route mix")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from signalbox.cli import UsageError

    target = (args.target or os.environ.get("SIGNALBOX_SERVICE_URL") or DEFAULT_TARGET).strip()
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--target / SIGNALBOX_SERVICE_URL: {target!r} is not an http(s) URL")
    total_fraction = args.error_fraction + args.slow_fraction + args.chain_fraction
    if total_fraction > 1 + 1e-9:
        raise UsageError(
            f"--error-fraction + --slow-fraction + --chain-fraction is {total_fraction:g}; "
            "it must be at most 1"
        )
    plan = Plan(
        target=target.rstrip("/"),
        rate=args.rate,
        duration=args.duration,
        mix=Mix(args.error_fraction, args.slow_fraction, args.chain_fraction, args.slow_ms),
        concurrency=args.concurrency,
        request_timeout=args.request_timeout,
        wait=args.wait,
        report_every=args.report_every,
        seed=args.seed,
    )
    summary = asyncio.run(_drive(plan, sys.stderr))
    if args.output == "json":
        json.dump(summary.document(plan), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _render_text(summary, plan, sys.stdout)
    if summary.stop_signal == signal.SIGINT:
        return _EXIT_INTERRUPTED
    return 0 if summary.ok else 1


# --- what to send --------------------------------------------------------------------------


@dataclass(frozen=True)
class Mix:
    error: float
    slow: float
    chain: float
    slow_ms: tuple[int, int]

    def pick(self, rng: random.Random) -> tuple[str, str, frozenset[int]]:
        """(route template, path with query, expected statuses) for the next request."""
        roll = rng.random()
        if roll < self.error:
            if rng.random() < 0.7:
                return "/error", "/error", frozenset({500})
            return "/error", "/error?kind=handled", frozenset({500})
        roll -= self.error
        if roll < self.slow:
            return "/slow", f"/slow?ms={rng.randint(*self.slow_ms)}", frozenset({200})
        roll -= self.slow
        if roll < self.chain:
            if rng.random() < 0.1:
                return "/chain", f"/chain?sku={UNKNOWN_SKU}", frozenset({404})
            return "/chain", f"/chain?sku={rng.choice(CATALOG)}", frozenset({200})
        if rng.random() < 0.8:
            return "/hello", f"/hello?name={rng.choice(NAMES)}", frozenset({200})
        return "/", "/", frozenset({200})


@dataclass(frozen=True)
class Plan:
    target: str
    rate: float
    duration: float  # 0: until interrupted
    mix: Mix
    concurrency: int = 32
    request_timeout: float = 15.0
    wait: float = 0.0
    report_every: float = 30.0
    seed: int | None = None

    @property
    def planned(self) -> int | None:
        return math.ceil(self.rate * self.duration) if self.duration else None


# --- what happened -------------------------------------------------------------------------


@dataclass
class _Latencies:
    """Bounded reservoir sample (Algorithm R): exact below the bound, unbiased above it."""

    rng: random.Random
    seen: int = 0
    samples: list[float] = field(default_factory=list)
    largest: float = 0.0

    def add(self, value: float) -> None:
        self.seen += 1
        self.largest = max(self.largest, value)
        if len(self.samples) < _RESERVOIR:
            self.samples.append(value)
            return
        slot = self.rng.randrange(self.seen)
        if slot < _RESERVOIR:
            self.samples[slot] = value

    def percentiles(self) -> dict[str, float | None]:
        if not self.samples:
            return {"p50": None, "p90": None, "p99": None, "max": None}
        ordered = sorted(self.samples)

        def rank(q: float) -> float:
            return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

        return {
            "p50": round(rank(0.50) * 1000, 1),
            "p90": round(rank(0.90) * 1000, 1),
            "p99": round(rank(0.99) * 1000, 1),
            "max": round(self.largest * 1000, 1),
        }


@dataclass
class _RouteStats:
    statuses: Counter[str]
    latencies: _Latencies

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


@dataclass
class Summary:
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    rng: random.Random = field(default_factory=random.Random)
    routes: dict[str, _RouteStats] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    latencies: _Latencies | None = None
    behind_schedule: int = 0
    stop_signal: int | None = None
    abandoned: int = 0  # in flight when a second signal cut the run short
    not_ready: str = ""

    def record(self, route: str, outcome: str, seconds: float | None, expected: bool) -> None:
        """``outcome``: an HTTP status code, or a transport error kind ("timeout", "connect")."""
        stats = self.routes.setdefault(route, _RouteStats(Counter(), _Latencies(self.rng)))
        stats.statuses[outcome] += 1
        if outcome.isdigit():
            self.statuses[outcome] += 1
            if not expected:
                self.unexpected[f"{route} {outcome}"] += 1
        else:
            self.errors[outcome] += 1
        if seconds is not None:
            stats.latencies.add(seconds)
            if self.latencies is None:
                self.latencies = _Latencies(self.rng)
            self.latencies.add(seconds)

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.routes.values())

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def ok(self) -> bool:
        return not (self.errors or self.unexpected or self.not_ready or self.abandoned)

    def line(self) -> str:
        rate = self.requests / self.elapsed if self.elapsed > 0 else 0.0
        codes = " ".join(f"{k}:{v}" for k, v in sorted(self.statuses.items()))
        errors = " ".join(f"{k}:{v}" for k, v in sorted(self.errors.items()))
        p = self.latencies.percentiles() if self.latencies else {}
        latency = f"; p50 {p['p50']} ms, p99 {p['p99']} ms" if p.get("p50") is not None else ""
        return (
            f"{self.requests} requests in {self.elapsed:.0f} s ({rate:.1f}/s): {codes or '-'}"
            + (f"; errors {errors}" if errors else "")
            + latency
        )

    def document(self, plan: Plan) -> dict[str, Any]:
        elapsed = self.elapsed
        return {
            "ok": self.ok,
            "target": plan.target,
            "interrupted": self.stop_signal is not None,
            "not_ready": self.not_ready or None,
            "duration_s": round(elapsed, 3),
            "rate_target": plan.rate,
            "rate_achieved": round(self.requests / elapsed, 3) if elapsed > 0 else 0.0,
            "requests": self.requests,
            "planned": plan.planned,
            "by_status": dict(sorted(self.statuses.items())),
            "errors": dict(sorted(self.errors.items())),
            "unexpected": dict(sorted(self.unexpected.items())),
            "abandoned": self.abandoned,
            "behind_schedule": self.behind_schedule,
            "latency_ms": self.latencies.percentiles() if self.latencies else None,
            "by_route": {
                route: {
                    "requests": stats.requests,
                    "by_status": dict(sorted(stats.statuses.items())),
                    "latency_ms": stats.latencies.percentiles(),
                }
                for route, stats in sorted(self.routes.items())
            },
        }


# --- the run -------------------------------------------------------------------------------


async def _drive(plan: Plan, stderr: TextIO) -> Summary:
    # Not secrets: a reproducible route mix and a latency sample.
    rng = random.Random(plan.seed)  # noqa: S311
    summary = Summary(rng=random.Random(plan.seed))  # noqa: S311
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Task[None]] = set()

    def on_signal(signum: int) -> None:
        if summary.stop_signal is None:
            summary.stop_signal = signum
            stop.set()
            print(
                "\nsignalbox traffic: stopping; letting requests in flight finish "
                "(signal again to abandon them)",
                file=stderr,
            )
        else:
            for task in in_flight:
                task.cancel()

    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass
    # No keep-alive: uvicorn resets a connection right after an unhandled exception (/error),
    # and a request sent on it in that instant would fail without reaching the service.
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=0)
    try:
        async with httpx.AsyncClient(
            base_url=plan.target, limits=limits, timeout=plan.request_timeout
        ) as client:
            if plan.wait and not await _wait_ready(client, plan.wait, stop, summary):
                return summary
            summary.started = time.monotonic()
            with _Progress(plan, summary, stderr) as progress:
                await _schedule(client, plan, rng, summary, stop, in_flight, progress)
                if in_flight:
                    done = await asyncio.gather(*in_flight, return_exceptions=True)
                    summary.abandoned = sum(isinstance(r, asyncio.CancelledError) for r in done)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        summary.finished = time.monotonic()
    return summary


async def _schedule(
    client: httpx.AsyncClient,
    plan: Plan,
    rng: random.Random,
    summary: Summary,
    stop: asyncio.Event,
    in_flight: set[asyncio.Task[None]],
    progress: _Progress,
) -> None:
    slots = asyncio.Semaphore(plan.concurrency)
    index = 0
    while not stop.is_set() and (plan.planned is None or index < plan.planned):
        due = summary.started + index / plan.rate
        delay = due - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                break  # stopped while waiting
            except TimeoutError:
                pass
        elif delay < -1.0 / plan.rate:
            summary.behind_schedule += 1
        await slots.acquire()
        if stop.is_set():
            slots.release()
            break
        route, path, expected = plan.mix.pick(rng)
        task = asyncio.create_task(_one(client, route, path, expected, summary, progress))
        in_flight.add(task)
        task.add_done_callback(_finished(in_flight, slots))
        index += 1
        progress.tick()


def _finished(in_flight: set[asyncio.Task[None]], slots: asyncio.Semaphore) -> Any:
    def done(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        slots.release()

    return done


async def _one(
    client: httpx.AsyncClient,
    route: str,
    path: str,
    expected: frozenset[int],
    summary: Summary,
    progress: _Progress,
) -> None:
    started = time.monotonic()
    try:
        response = await client.get(path)
    except httpx.TimeoutException:
        summary.record(route, "timeout", None, False)
    except httpx.ConnectError:
        summary.record(route, "connect", None, False)
    except httpx.TransportError:
        summary.record(route, "protocol", None, False)
    else:
        code = response.status_code
        summary.record(route, str(code), time.monotonic() - started, code in expected)
    progress.update()


async def _wait_ready(
    client: httpx.AsyncClient, seconds: float, stop: asyncio.Event, summary: Summary
) -> bool:
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline and not stop.is_set():
        try:
            response = await client.get("/ready", timeout=2.0)
            if response.status_code == 200:
                return True
            last = f"/ready answered {response.status_code}"
        except httpx.TransportError as exc:
            last = str(exc) or type(exc).__name__
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)
    if stop.is_set():
        summary.not_ready = "interrupted while waiting for the service's /ready"
    else:
        summary.not_ready = f"service not ready after {seconds:.0f} s ({last})"
    return False


class _Progress:
    """A rich progress bar on a terminal; a periodic log line otherwise (compose logs)."""

    def __init__(self, plan: Plan, summary: Summary, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.summary = summary
        self.plan = plan
        self.stream = stream
        self.console = Console(file=stream)
        self.live = self.console.is_terminal
        self.next_report = time.monotonic() + plan.report_every
        self.progress = Progress(
            TextColumn("[bold]traffic[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=not self.live,
            transient=False,
        )
        self.task = self.progress.add_task("requests", total=plan.planned, status="")

    def __enter__(self) -> _Progress:
        self.progress.start()
        if not self.live:
            until = f"for {self.plan.duration:g} s" if self.plan.duration else "until stopped"
            print(
                f"signalbox traffic: {self.plan.rate:g}/s to {self.plan.target} {until}",
                file=self.stream,
                flush=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def tick(self) -> None:
        if not self.live and time.monotonic() >= self.next_report:
            self.next_report += self.plan.report_every
            print(f"signalbox traffic: {self.summary.line()}", file=self.stream, flush=True)

    def update(self) -> None:
        if self.live:
            counts = " ".join(f"{k}:{v}" for k, v in sorted(self.summary.statuses.items()))
            errors = sum(self.summary.errors.values())
            self.progress.update(
                self.task,
                completed=self.summary.requests,
                status=counts + (f" errors:{errors}" if errors else ""),
            )


# --- report --------------------------------------------------------------------------------


def _render_text(summary: Summary, plan: Plan, stream: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, highlight=False)
    if summary.not_ready:
        console.print(f"[red]NOT STARTED[/]: {summary.not_ready}", soft_wrap=True)
        return
    table = Table(title=f"signalbox traffic → {plan.target}", header_style="bold")
    for column in ("route", "requests", "statuses", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column in ("route", "statuses") else "right")

    def row(name: str, statuses: Mapping[str, int], latencies: _Latencies | None) -> None:
        p = latencies.percentiles() if latencies else {}
        table.add_row(
            name,
            str(sum(statuses.values())),
            " ".join(f"{k}:{v}" for k, v in sorted(statuses.items())),
            *(_ms(p.get(key)) for key in ("p50", "p90", "p99", "max")),
        )

    for route, stats in sorted(summary.routes.items()):
        row(route, stats.statuses, stats.latencies)
    table.add_section()
    row("all", summary.statuses + summary.errors, summary.latencies)
    console.print(table)
    how = "interrupted after" if summary.stop_signal else "in"
    rate = summary.requests / summary.elapsed if summary.elapsed > 0 else 0.0
    verdict = "OK" if summary.ok else "PROBLEMS"
    details = []
    if summary.errors:
        details.append(
            "transport errors " + ", ".join(f"{k}:{v}" for k, v in summary.errors.items())
        )
    if summary.unexpected:
        details.append("unexpected " + ", ".join(f"{k}:{v}" for k, v in summary.unexpected.items()))
    if summary.abandoned:
        details.append(f"{summary.abandoned} abandoned in flight")
    if summary.behind_schedule:
        details.append(
            f"{summary.behind_schedule} sent late (the --concurrency limit or this machine "
            "could not keep the rate)"
        )
    console.print(
        f"{verdict}: {summary.requests} requests {how} {summary.elapsed:.1f} s "
        f"({rate:.1f}/s of {plan.rate:g}/s)" + (f"; {'; '.join(details)}" if details else ""),
        soft_wrap=True,
    )


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


# --- argument types ------------------------------------------------------------------------


def _bounded(low: float, high: float, *, include_low: bool = False) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        above = value >= low if include_low else value > low
        if not (above and value <= high) or math.isnan(value):
            relation = ">=" if include_low else ">"
            raise argparse.ArgumentTypeError(f"{text!r} must be {relation} {low:g} and <= {high:g}")
        return value

    return parse


def _whole(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {low} and <= {high}")
        return value

    return parse


def _fraction(text: str) -> float:
    return float(_bounded(0, 1, include_low=True)(text))


def _ms_range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    try:
        bounds = (int(low), int(high if sep else low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN:MAX milliseconds") from None
    if not 0 <= bounds[0] <= bounds[1] <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r} must satisfy 0 <= MIN <= MAX <= 10000")
    return bounds
