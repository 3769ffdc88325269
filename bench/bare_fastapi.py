"""The baseline: the sample service's ``/hello`` in a FastAPI app with no instrumentation at all.

Same FastAPI, Starlette, uvicorn and pydantic as ``examples/fastapi-app`` (same virtualenv), same
query validation and response, served the same way (one uvicorn worker on uvicorn's standard
stack, uvloop and httptools, no access log, no server header). No logging set-up, metrics,
tracing or Sentry: the floor the instrumented service is measured against. ``/error`` raises, as
the sample's does.

Run: ``PORT=8000 python -m bench.bare_fastapi``.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Annotated

import uvicorn
from fastapi import FastAPI, Query

# The sample service's pattern for ``name`` (examples/fastapi-app/app/main.py).
NAME_PATTERN = r"^[\w .'-]{1,64}$"

_log = logging.getLogger("bare")
app = FastAPI(title="bare baseline")


@app.get("/ready")
async def ready() -> dict[str, str]:
    return {"status": "ready"}


@app.get("/hello")
async def hello(
    name: Annotated[str, Query(pattern=NAME_PATTERN)] = "world",
) -> dict[str, str]:
    # The same call as the sample; with logging unconfigured it stops at the level check.
    _log.info("greeting %s", name)
    return {"message": f"Hello, {name}!"}


@app.get("/error")
async def error() -> None:
    raise RuntimeError("deliberate error from /error")


def main() -> None:
    # The same garbage-collector tuning as the sample (app/__main__.py), so that the
    # comparison measures instrumentation only.
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(10_000, second, third)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8000")),
        # The service's stack, named as it names it, so that a missing package fails here too
        # instead of measuring asyncio and h11 against it.
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
