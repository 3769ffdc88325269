#!/bin/sh
# Start-up of the collector image: check the settings, pick the config files, exec the collector.
#
# config.yaml always; sentry.yaml on top when SENTRY_OTLP_TRACES_ENDPOINT is set. `signalbox
# stack up` runs this same script with OTELCOL_BIN and OTELCOL_CONFIG_DIR pointing at the
# built binary and the repository folder. Extra arguments are passed to the collector.
# POSIX sh: the image's busybox and Debian's dash.
set -eu

OTELCOL_BIN=${OTELCOL_BIN:-/otelcol-contrib}
OTELCOL_CONFIG_DIR=${OTELCOL_CONFIG_DIR:-/etc/otelcol}

bad=0
fail() {
  echo "entrypoint: $1" >&2
  bad=1
}
# NAME|what it must be; unset means the default in config.yaml.
check_number() {
  eval "value=\${$1-}"
  [ -z "$value" ] && return 0
  if ! printf '%s\n' "$value" | grep -Eq "$2"; then
    fail "$1: '$value' is not $3"
  fi
}
check_number TAIL_SAMPLING_PERCENTAGE '^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)$' "a percentage from 0 to 100"
check_number TAIL_SAMPLING_LATENCY_THRESHOLD_MS '^[0-9]+$' "a whole number of milliseconds"
check_number TAIL_SAMPLING_NUM_TRACES '^[1-9][0-9]*$' "a positive whole number"
check_number TAIL_SAMPLING_DECISION_WAIT '^[0-9]+(ms|s|m)$' "a duration such as 5s"
check_number OTELCOL_MEMORY_LIMIT_MIB '^[1-9][0-9]*$' "a positive whole number of MiB"
check_number OTELCOL_MEMORY_SPIKE_LIMIT_MIB '^[1-9][0-9]*$' "a positive whole number of MiB"
check_number SENTRY_OTLP_SAMPLE_PERCENTAGE '^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)$' "a percentage from 0 to 100"

set -- --config="file:$OTELCOL_CONFIG_DIR/config.yaml" "$@"
if [ -n "${SENTRY_OTLP_TRACES_ENDPOINT:-}" ]; then
  case $SENTRY_OTLP_TRACES_ENDPOINT in
    http://*/v1/traces | https://*/v1/traces) ;;
    *) fail "SENTRY_OTLP_TRACES_ENDPOINT: '$SENTRY_OTLP_TRACES_ENDPOINT' is not Sentry's OTLP traces URL (https://.../integration/otlp/v1/traces)" ;;
  esac
  [ -n "${SENTRY_OTLP_PUBLIC_KEY:-}" ] || fail "SENTRY_OTLP_PUBLIC_KEY: required with SENTRY_OTLP_TRACES_ENDPOINT (the DSN's public key)"
  set -- "$@" --config="file:$OTELCOL_CONFIG_DIR/sentry.yaml"
fi
[ "$bad" -eq 0 ] || exit 1

exec "$OTELCOL_BIN" "$@"
