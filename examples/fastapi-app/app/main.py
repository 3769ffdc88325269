"""The FastAPI sample service: routes that show each signal, including deliberate failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any, Literal

import httpx
from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from app.observe import add_breadcrumb, capture_exception, monitored
from app.request_telemetry import BUILD_INFO, RequestTelemetryMiddleware
from app.settings import Settings
from app.telemetry import Telemetry, current_trace_id

_log = logging.getLogger("app")

SKU_PATTERN = r"^[A-Za-z0-9-]{1,32}$"
NAME_PATTERN = r"^[\w .'-]{1,64}$"
MAX_SLOW_MS = 10_000


class DeliberateError(RuntimeError):
    """Raised on purpose by /error so the whole error path can be seen end to end."""


class ErrorBody(BaseModel):
    """Every error answer of both sample services (examples/contract.yaml): a code for
    programs, a sentence for people; failures add ``trace_id`` and ``sentry_event_id``."""

    error: str
    message: str


def create_app(settings: Settings, telemetry: Telemetry) -> FastAPI:
    downstream_base = str(settings.downstream_url).rstrip("/")
    state: dict[str, Any] = {"ready": False}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            base_url=downstream_base,
            timeout=httpx.Timeout(settings.downstream_timeout_seconds),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        ) as client:
            state["client"] = client
            state["ready"] = True
            _log.info("listening; downstream %s", downstream_base)
            yield
            state["ready"] = False
        telemetry.shutdown()

    app = FastAPI(
        title="Signalbox FastAPI sample",
        version=settings.version,
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry instrumentation stays off: RequestTelemetryMiddleware
        # makes the server span, for a fraction of the cost (see app.request_telemetry).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        description="Emits Sentry errors, Tempo traces, Loki logs and Prometheus exemplars "
        "that share one trace id per request.",
        # Documents the 400/404 answers below; declaring 4XX also keeps FastAPI from
        # documenting the 422 it would answer by default.
        responses={"4XX": {"model": ErrorBody, "description": "Invalid input or unknown path"}},
    )
    app.add_middleware(
        RequestTelemetryMiddleware,
        tracer_provider=telemetry.tracer_provider,
        access_log=settings.access_log,
        exemplars=telemetry.summary["exemplars"],
    )

    # Bad input is answered 400 with the shared error body, as the Node service answers it:
    # {"error": "invalid_<parameter>", "message": "<parameter>: <what is wrong>"}. FastAPI's
    # default is 422 with its own shape. The message names the rule, never the value sent.
    @app.exception_handler(RequestValidationError)
    async def invalid_input(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        name = str(first["loc"][-1]) if first.get("loc") else "request"
        return _error(400, f"invalid_{name}", f"{name}: {first['msg']}")

    # Unknown paths (404) and methods (405, with its Allow header) in the same shape.
    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        return _error(exc.status_code, code, str(exc.detail), headers=exc.headers)

    BUILD_INFO.labels(settings.version, settings.git_commit, settings.otel_service_name).set(1)

    @app.get("/")
    async def info() -> dict[str, Any]:
        return {
            "service": settings.otel_service_name,
            "version": settings.version,
            "environment": settings.sentry_environment,
            "telemetry": telemetry.summary,
            "routes": ["/health", "/ready", "/hello", "/slow", "/error", "/chain", "/metrics"],
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if not state["ready"]:
            return JSONResponse({"status": "starting or stopping"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/hello")
    async def hello(
        name: Annotated[str, Query(pattern=NAME_PATTERN, description="Who to greet")] = "world",
    ) -> dict[str, str]:
        _log.debug("greeting %s", name)
        return {"message": f"Hello, {name}!"}

    @app.get("/slow")
    async def slow(
        ms: Annotated[int, Query(ge=0, le=MAX_SLOW_MS, description="Delay in milliseconds")] = 500,
    ) -> dict[str, int]:
        # asyncio.sleep yields the event loop: other requests are served meanwhile.
        await asyncio.sleep(ms / 1000)
        return {"slept_ms": ms}

    @app.get("/error")
    async def error(
        kind: Annotated[
            Literal["unhandled", "handled"],
            Query(description="unhandled: raise to the framework; handled: capture and answer"),
        ] = "unhandled",
    ) -> JSONResponse:
        add_breadcrumb("about to fail on purpose", category="demo", kind=kind)
        try:
            raise DeliberateError(f"deliberate {kind} error from /error")
        except DeliberateError as exc:
            if kind == "unhandled":
                raise
            _log.error("handled deliberate error", extra={"error_kind": kind})
            event_id = capture_exception(exc, route="/error", kind=kind)
            return _error(500, "deliberate_error", str(exc), event_id)

    @app.get("/chain")
    async def chain(
        sku: Annotated[
            str, Query(pattern=SKU_PATTERN, description="Inventory item id")
        ] = "SB-1001",
    ) -> JSONResponse:
        return await _lookup_inventory(state["client"], downstream_base, sku)

    # Not an API operation (and Prometheus text, not JSON): left out of the OpenAPI schema.
    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        # Exemplars only exist in the OpenMetrics format; Prometheus asks for it when scraping.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(REGISTRY), media_type=content_type)

    _answer_head_on_get_routes(app)
    return app


def _answer_head_on_get_routes(app: FastAPI) -> None:
    """HEAD is GET without the body (RFC 9110, 9.3.2): health checkers and link checkers send
    it. Starlette's plain routes answer it; FastAPI's answer 405. Each GET route gets a HEAD
    twin, left out of the OpenAPI schema (a second operation id for one function); the server
    drops the body."""
    for route in list(app.router.routes):
        if isinstance(route, APIRoute) and route.methods and "GET" in route.methods:
            app.add_api_route(route.path, route.endpoint, methods=["HEAD"], include_in_schema=False)


def _error(
    status: int,
    code: str,
    message: str,
    sentry_event_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An error answer in the shared shape; a failure (5xx) also names its trace and, when one
    was sent, its Sentry event."""
    body: dict[str, Any] = {"error": code, "message": message, **extra}
    if status >= 500:
        body["trace_id"] = current_trace_id()
    if sentry_event_id:
        body["sentry_event_id"] = sentry_event_id
    return JSONResponse(body, status_code=status, headers=headers)


@monitored
async def _lookup_inventory(client: httpx.AsyncClient, base: str, sku: str) -> JSONResponse:
    """Call the Node service; map its failures to clear gateway errors."""
    try:
        response = await client.get(f"/inventory/{sku}")
    except httpx.TimeoutException as exc:
        return _downstream_failed(exc, 504, "downstream timed out", base, sku)
    except httpx.TransportError as exc:
        return _downstream_failed(exc, 503, "downstream unavailable", base, sku)
    if response.status_code == 404:
        return _error(404, "not_found", f"no inventory item {sku}", sku=sku)
    if response.status_code >= 500:
        error = httpx.HTTPStatusError(
            f"downstream answered {response.status_code}",
            request=response.request,
            response=response,
        )
        return _downstream_failed(error, 502, "downstream failed", base, sku)
    if response.status_code >= 400:
        return _error(
            502,
            "downstream_rejected",
            f"downstream answered {response.status_code}",
            downstream_status=response.status_code,
        )
    return JSONResponse({"sku": sku, "inventory": response.json(), "trace_id": current_trace_id()})


def _downstream_failed(
    error: Exception, status: int, message: str, base: str, sku: str
) -> JSONResponse:
    _log.error("%s: %s", message, type(error).__name__, extra={"downstream": base, "sku": sku})
    event_id = capture_exception(error, downstream=base, sku=sku, status=status)
    code = {502: "downstream_failed", 503: "downstream_unavailable", 504: "downstream_timeout"}
    return _error(status, code[status], message, event_id, downstream=base)
