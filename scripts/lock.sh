#!/usr/bin/env bash
# Regenerates the pinned lock files from pyproject.toml and the service's requirements.in.
# requirements.lock  – everything the repository venv needs (CLI, dev tools, the FastAPI service)
# examples/fastapi-app/requirements.txt – only the service's runtime tree (its Docker image)
set -euo pipefail
cd "$(dirname "$0")/.."
uv=.venv/bin/uv
common=(--python-version 3.11 --quiet --no-header --universal)
"$uv" pip compile "${common[@]}" examples/fastapi-app/requirements.in -o examples/fastapi-app/requirements.txt
"$uv" pip compile "${common[@]}" pyproject.toml --extra dev examples/fastapi-app/requirements.in -o requirements.lock
