"""The documented way: the sample service's ``/hello`` instrumented as each library's docs show.

What a developer gets by following the getting-started pages, nothing tuned: the yardstick for
what the sample service's own telemetry code (examples/fastapi-app/app) buys. All four signals,
to the same loopback receivers as the service in the benchmark:

- traces: the SDK's ``TracerProvider`` with ``BatchSpanProcessor`` + ``OTLPSpanExporter``, and
  opentelemetry-instrumentation-fastapi's ``FastAPIInstrumentor`` (the sampler comes from
  ``OTEL_TRACES_SAMPLER``, which the SDK reads itself; the benchmark keeps every span);
- logs: uvicorn's access line and the app's own, as JSON on stdout (python-json-logger) and as
  OTLP log records (the SDK's ``LoggingHandler`` + ``BatchLogRecordProcessor`` +
  ``OTLPLogExporter``), which carry the active span's trace id;
- errors: sentry-sdk with its FastAPI integration (enabled by default when FastAPI is installed);
  Sentry's own tracing stays off, as in the service, so each request makes one trace;
- metrics: prometheus-client's ``Counter`` and ``Histogram`` per request, served by its ASGI app.

Same FastAPI, uvicorn stack (uvloop, httptools) and garbage-collector tuning as
``bench/bare_fastapi.py``, so the comparison measures the instrumentation only.

Run: ``PORT=8000 SENTRY_DSN=... python -m bench.docs_fastapi`` with the OTLP endpoints
(``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``) set.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

import sentry_sdk
import uvicorn
from fastapi import FastAPI, Query, Request, Response
from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import Counter, Histogram, make_asgi_app
from pythonjsonlogger.json import JsonFormatter

from bench.bare_fastapi import NAME_PATTERN

# --- telemetry, set up before the app is built (as the SDKs' docs do) ----------------------

# Reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
_resource = Resource.create()
_tracer_provider = TracerProvider(resource=_resource)
_tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(_tracer_provider)

_logger_provider = LoggerProvider(resource=_resource)
_logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
set_logger_provider(_logger_provider)

_stdout = logging.StreamHandler(sys.stdout)
_stdout.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}", style="{"))
logging.basicConfig(
    level=logging.INFO,
    handlers=[_stdout, LoggingHandler(level=logging.INFO, logger_provider=_logger_provider)],
)

sentry_sdk.init(
    dsn=os.environ.get("SENTRY_DSN"),
    send_default_pii=False,
)

REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status_code"])
DURATION = Histogram(
    "http_request_duration_seconds", "HTTP request duration", ["method", "route", "status_code"]
)

# --- the app ------------------------------------------------------------------------------

_log = logging.getLogger("docs")
app = FastAPI(title="documented-way instrumentation")
app.mount("/metrics", make_asgi_app())


@app.middleware("http")
async def _red_metrics(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    start = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    labels = (request.method, getattr(route, "path", "unmatched"), str(response.status_code))
    REQUESTS.labels(*labels).inc()
    DURATION.labels(*labels).observe(time.perf_counter() - start)
    return response


@app.get("/ready")
async def ready() -> dict[str, str]:
    return {"status": "ready"}


@app.get("/hello")
async def hello(
    name: Annotated[str, Query(pattern=NAME_PATTERN)] = "world",
) -> dict[str, str]:
    _log.debug("greeting %s", name)  # the service's call, at the service's level
    return {"message": f"Hello, {name}!"}


@app.get("/error")
async def error() -> None:
    raise RuntimeError("deliberate error from /error")


FastAPIInstrumentor.instrument_app(app, tracer_provider=_tracer_provider)


def main() -> None:
    # The same garbage-collector tuning as the sample and the bare baseline.
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(10_000, second, third)
    try:
        uvicorn.run(
            app,
            host="127.0.0.1",
            port=int(os.environ.get("PORT", "8000")),
            loop="uvloop",
            http="httptools",
            # uvicorn's access line ("uvicorn.access") goes through the handlers above: no
            # logging config of uvicorn's own, which would give it a plain-text handler.
            log_config=None,
            access_log=True,
            server_header=False,
        )
    finally:
        _tracer_provider.shutdown()
        _logger_provider.shutdown()
        sentry_sdk.flush(2)


if __name__ == "__main__":
    main()
