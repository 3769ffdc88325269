#!/usr/bin/env bash
# `make up` / `make down`: run Docker Compose v2 in whichever form this machine has.
#   scripts/compose.sh up -d --build
# Docker Desktop and docker-ce ship Compose v2 as the `docker compose` plugin; `make setup`
# installs it as a standalone `docker-compose` into .tools/bin. Compose 1.x (Debian bookworm's
# docker-compose 1.29) cannot read this compose file, so it is not used. Without a reachable
# Docker engine, one line says so and names the native alternative, instead of Compose's
# multi-line error (or the docker CLI's "unknown shorthand flag" when it has no plugin).
set -euo pipefail
cd "$(dirname "$0")/.."

action=${1:?usage: scripts/compose.sh up|down [compose options]}
native="or run the stack without Docker: .venv/bin/signalbox stack $action"

_v2_standalone() {
  local version
  command -v docker-compose >/dev/null || return 1
  version=$(docker-compose version --short 2>/dev/null) || return 1
  [[ $version =~ ^v?([0-9]+)\. ]] && ((BASH_REMATCH[1] >= 2))
}

if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif _v2_standalone; then
  compose=(docker-compose)
else
  echo "compose: Docker Compose v2 not found (no 'docker compose' plugin, no v2 docker-compose):" \
    "run 'make setup-system' to install it into .tools/bin, $native" >&2
  exit 1
fi

# `compose ls` needs the engine and nothing else: a cheap, honest probe (it follows DOCKER_HOST
# and docker contexts exactly as the real command will).
if ! probe=$("${compose[@]}" ls --quiet 2>&1 >/dev/null); then
  reason=$(head -n 1 <<<"$probe")
  [[ -n $reason ]] || reason="${compose[*]} ls failed"
  echo "compose: no Docker engine reachable ($reason): start Docker, $native" >&2
  exit 1
fi

exec "${compose[@]}" "$@"
