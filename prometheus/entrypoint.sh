#!/bin/sh
# Start-up of the Prometheus image: render the configuration from the environment, check the
# other settings, then exec Prometheus with the project's flags (extra arguments are appended).
#
# The real-run test (tests/test_prometheus_realrun.py) runs this same script against Debian's
# Prometheus 2.42, overriding only the paths and the listen address below. Every flag used here
# exists with the same meaning in 2.42 and 3.x; see docs/stack.md ("Prometheus flags").
set -eu

here=$(cd "$(dirname "$0")" && pwd)
PROMETHEUS_BIN=${PROMETHEUS_BIN:-/bin/prometheus}
PROMETHEUS_TEMPLATE=${PROMETHEUS_TEMPLATE:-/etc/prometheus/prometheus.yml.tmpl}
PROMETHEUS_CONFIG=${PROMETHEUS_CONFIG:-/etc/prometheus/prometheus.yml}
PROMETHEUS_DATA_DIR=${PROMETHEUS_DATA_DIR:-/prometheus}
PROMETHEUS_LISTEN_ADDRESS=${PROMETHEUS_LISTEN_ADDRESS:-:9090}
PROMETHEUS_RETENTION_TIME=${PROMETHEUS_RETENTION_TIME:-15d}
PROMETHEUS_RETENTION_SIZE=${PROMETHEUS_RETENTION_SIZE:-5GB}

bad=0
if ! printf '%s\n' "$PROMETHEUS_RETENTION_TIME" | grep -Eq '^([0-9]+(ms|s|m|h|d|w|y))+$'; then
  echo "entrypoint: PROMETHEUS_RETENTION_TIME: '$PROMETHEUS_RETENTION_TIME' is not a duration such as 15d" >&2
  bad=1
fi
if ! printf '%s\n' "$PROMETHEUS_RETENTION_SIZE" | grep -Eq '^[0-9]+(B|KB|MB|GB|TB|PB|EB)$'; then
  echo "entrypoint: PROMETHEUS_RETENTION_SIZE: '$PROMETHEUS_RETENTION_SIZE' is not a size such as 5GB (units B, KB, MB, GB, TB, PB, EB)" >&2
  bad=1
fi
[ "$bad" -eq 0 ] || exit 1

"$here/render-config.sh" "$PROMETHEUS_TEMPLATE" "$PROMETHEUS_CONFIG"

# --storage.tsdb.retention.*: deprecated since 3.8 in favour of storage.tsdb.retention in the
#   config file, which 2.42 (CI's promtool) rejects; the flags still work in 3.x.
# --web.listen-address=:9090: Go listens dual-stack on an empty host, so Railway's IPv6 private
#   network and IPv4 compose networks both reach it.
# --web.enable-remote-write-receiver: Tempo's metrics-generator pushes span metrics and service
#   graphs to /api/v1/write.
# --enable-feature=exemplar-storage: keep the trace ids that services attach to observations.
# https://prometheus.io/docs/prometheus/latest/command-line/prometheus/
exec "$PROMETHEUS_BIN" \
  --config.file="$PROMETHEUS_CONFIG" \
  --storage.tsdb.path="$PROMETHEUS_DATA_DIR" \
  --storage.tsdb.retention.time="$PROMETHEUS_RETENTION_TIME" \
  --storage.tsdb.retention.size="$PROMETHEUS_RETENTION_SIZE" \
  --web.listen-address="$PROMETHEUS_LISTEN_ADDRESS" \
  --web.enable-remote-write-receiver \
  --enable-feature=exemplar-storage \
  "$@"
