"""``python -m bench`` (``make bench``): instrumentation overhead and outage benchmarks.

Prints the results and the targets with met / not met, and writes them to bench/results.md.
Exit status: 0 when the benchmark ran (whatever the targets say, unless ``--strict``), 1 when it
could not run or ``--strict`` and a target is not met, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench import report, runner

_DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", choices=("fastapi", "node"), help="benchmark one service (default: both)"
    )
    parser.add_argument("--rounds", type=int, help="alternated rounds (default 5; 2 with --quick)")
    parser.add_argument("--seconds", type=float, default=4.0, help="one run, seconds (default 4)")
    parser.add_argument(
        "--outage-seconds",
        type=float,
        default=12.0,
        help="one run against broken backends, seconds (default 12; x rounds = the memory window)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2 rounds of 2 s runs, 4 s outage runs, 300 requests under callgrind",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=_DEFAULT_OUTPUT,
        help="markdown report (default bench/results.md; '-' to write none)",
    )
    parser.add_argument(
        "--callgrind-requests",
        type=int,
        help="requests counted per server under callgrind (default 1500; 300 with --quick)",
    )
    parser.add_argument(
        "--no-callgrind",
        action="store_true",
        help="count no instructions (no valgrind here): the verdicts use CPU time",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is not met")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 5
    if args.callgrind_requests is None:
        args.callgrind_requests = 300 if args.quick else 1500
    if args.rounds < 1 or args.seconds <= 0 or args.outage_seconds <= 0:
        parser.error("--rounds must be >= 1 and durations > 0")
    if args.callgrind_requests < 10:
        parser.error("--callgrind-requests must be >= 10")

    settings = runner.Settings(
        seconds=2.0 if args.quick else args.seconds,
        outage_seconds=4.0 if args.quick else args.outage_seconds,
        rounds=args.rounds,
        warmup_seconds=1.0 if args.quick else 2.0,
        rewarm_seconds=1.0 if args.quick else 5.0,
        outage_warmup_seconds=2.0 if args.quick else 20.0,
        services=(args.only,) if args.only else ("fastapi", "node"),
        callgrind_requests=None if args.no_callgrind else args.callgrind_requests,
        # Uncounted requests first, so that caches, heaps and Node's JIT settle.
        callgrind_warmup_share=0.1 if args.quick else 1.0,
    )
    load_before = os.getloadavg()[0]
    try:
        results = runner.run(settings)
    except (RuntimeError, OSError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    text = report.markdown(results, settings, (load_before, os.getloadavg()[0]))
    print(text)
    if str(args.output) != "-":
        args.output.write_text(text)
        print(f"bench: written to {args.output}", file=sys.stderr)
    missed = [t for r in results for t in report.evaluate(r, settings) if not t.met]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
