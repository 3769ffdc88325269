"""Signalbox FastAPI sample: one request, one trace id in errors, traces, logs and metrics."""
