"""Signalbox benchmarks: what the instrumentation costs, and what a broken backend costs.

Run with ``make bench`` (``python -m bench``); see docs/bench.md.
"""
