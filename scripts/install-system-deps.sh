#!/usr/bin/env bash
# Installs the system tools the tests use, idempotently:
#  - Debian's prometheus (server + promtool) for the real-Prometheus tests and rule checks.
#  - Docker Compose v2 (for `signalbox validate`: `docker-compose config -q` needs no daemon).
#    Bookworm only ships Compose 1.29, which rejects current compose keys, so the pinned
#    Debian trixie package is downloaded with a private apt state and unpacked into
#    .tools/ (static Go binary, runs on bookworm). Nothing is installed system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || need_apt+=(prometheus)
# Alertmanager + amtool: offline config checks and the notification delivery test.
command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
# wrk: the load generator of `make bench` (taskset, for pinning, is in util-linux).
command -v wrk >/dev/null || need_apt+=(wrk)
# valgrind: callgrind counts the instructions per request that `make bench` judges by.
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || need_apt+=(valgrind)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-system-deps: need root to apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

# --- Compose v2 into .tools/ -------------------------------------------------------------
# Bump both together; the version must exist in trixie (apt-cache policy docker-compose).
COMPOSE_DEB_VERSION=${COMPOSE_DEB_VERSION:-2.26.1-4}
COMPOSE_SUITE=${COMPOSE_SUITE:-trixie}
tools=$PWD/.tools
compose_bin=$tools/bin/docker-compose
compose_want=${COMPOSE_DEB_VERSION%%-*}

if [[ -x $compose_bin ]] && "$compose_bin" version 2>/dev/null | grep -q "version v\?${compose_want}"; then
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/parts" "$work/prefs"
cat >"$work/parts/$COMPOSE_SUITE.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: $COMPOSE_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
# A private apt state: the machine's sources, lists and preferences stay untouched, and the
# signed InRelease is still verified against Debian's archive keyring.
apt_opts=(
  -q
  -o "Dir::Etc::SourceList=/dev/null"
  -o "Dir::Etc::SourceParts=$work/parts"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=$work/prefs"
  -o "Dir::State::Lists=$work/lists"
  -o "Dir::Cache=$work/cache"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=$(id -un)"
)
echo "install-system-deps: Compose v2 $COMPOSE_DEB_VERSION from Debian $COMPOSE_SUITE into .tools/"
apt-get "${apt_opts[@]}" update >/dev/null
if ! (cd "$work" && apt-get "${apt_opts[@]}" download "docker-compose=$COMPOSE_DEB_VERSION" >/dev/null); then
  echo "install-system-deps: docker-compose=$COMPOSE_DEB_VERSION is not in Debian $COMPOSE_SUITE any more;" \
    "pick the current one from 'apt-cache policy docker-compose' (with a $COMPOSE_SUITE source) and" \
    "update COMPOSE_DEB_VERSION in scripts/install-system-deps.sh" >&2
  exit 1
fi
dpkg-deb -x "$work"/docker-compose_*.deb "$work/root"
mkdir -p "$tools/bin" "$tools/libexec"
install -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" "$tools/libexec/docker-compose"
ln -sf ../libexec/docker-compose "$compose_bin"
"$compose_bin" version
