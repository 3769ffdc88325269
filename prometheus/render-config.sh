#!/bin/sh
# Renders the Prometheus configuration template from environment variables.
#
#   render-config.sh TEMPLATE OUTPUT
#
# Every placeholder in TEMPLATE (a dollar sign and a variable name in braces) must be one of the
# variables below. Each value is checked before it is written, so a typo fails start-up with
# the variable's name instead of producing a config that scrapes nothing. Unset variables take
# the default (compose service names; the scrape timeout follows the interval); a variable set
# to the empty string renders an empty target list (that job scrapes nothing).
# POSIX sh: runs on the busybox shell of the Prometheus image and on Debian's dash in CI.
set -eu

if [ "$#" -ne 2 ]; then
  echo "usage: render-config.sh TEMPLATE OUTPUT" >&2
  exit 2
fi
template=$1
output=$2

# NAME|KIND|DEFAULT (PROMETHEUS_SCRAPE_TIMEOUT's default is the scrape interval, see below)
spec='PROMETHEUS_SCRAPE_INTERVAL|duration|15s
PROMETHEUS_SCRAPE_TIMEOUT|duration|
PROMETHEUS_EVALUATION_INTERVAL|duration|15s
PROMETHEUS_SELF_TARGETS|targets|localhost:9090
FASTAPI_APP_TARGETS|targets|fastapi-app:8000
API_TARGETS|targets|api:9091
LOKI_TARGETS|targets|loki:3100
TEMPO_TARGETS|targets|tempo:3200
GRAFANA_TARGETS|targets|grafana:3000
OTEL_COLLECTOR_TARGETS|targets|otel-collector:8888
ALERTMANAGER_TARGETS|targets|'

errors=0
fail() {
  echo "render-config: $1" >&2
  errors=$((errors + 1))
}

# host:port with a DNS name, an IPv4 address or a bracketed IPv6 address.
valid_target() {
  printf '%s\n' "$1" | grep -Eq '^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$'
}

# Prometheus durations: 1h30m, 15s, 500ms, ...
valid_duration() {
  printf '%s\n' "$1" | grep -Eq '^([0-9]+(ms|s|m|h|d|w|y))+$'
}

trim() {
  printf '%s' "$1" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//'
}

# Checks every item of a comma-separated target list (in this shell, so failures count).
check_targets() {
  old_ifs=$IFS
  IFS=','
  for item in $2; do
    IFS=$old_ifs
    item=$(trim "$item")
    if [ -n "$item" ] && ! valid_target "$item"; then
      fail "$1: '$item' is not host:port (DNS name, IPv4 or [IPv6] address, and a port)"
    fi
    IFS=','
  done
  IFS=$old_ifs
}

# "a:1, b:2" -> ['a:1', 'b:2'], a YAML flow sequence (items are checked first, so they need no
# escaping); empty -> [].
render_targets() {
  list=''
  old_ifs=$IFS
  IFS=','
  for item in $1; do
    IFS=$old_ifs
    item=$(trim "$item")
    [ -n "$item" ] && list="${list:+$list, }'$item'"
    IFS=','
  done
  IFS=$old_ifs
  printf '[%s]' "$list"
}

sed_script=''
newline='
'
old_ifs=$IFS
IFS=$newline
for line in $spec; do
  IFS=$old_ifs
  name=${line%%|*}
  rest=${line#*|}
  kind=${rest%%|*}
  default=${rest#*|}
  eval "is_set=\${$name+x}"
  if [ -n "$is_set" ]; then
    eval "value=\${$name}"
  elif [ "$name" = PROMETHEUS_SCRAPE_TIMEOUT ]; then
    # Prometheus refuses a timeout longer than the interval: follow the interval by default.
    value=${PROMETHEUS_SCRAPE_INTERVAL:-15s}
  else
    value=$default
  fi
  case $kind in
    duration)
      if ! valid_duration "$value"; then
        fail "$name: '$value' is not a Prometheus duration such as 15s or 1m"
      fi
      rendered=$value
      ;;
    targets)
      check_targets "$name" "$value"
      rendered=$(render_targets "$value")
      ;;
  esac
  sed_script="${sed_script}s|\\\${$name}|$rendered|g$newline"
  IFS=$newline
done
IFS=$old_ifs

if [ "$errors" -gt 0 ]; then
  echo "render-config: $errors invalid setting(s); see the messages above" >&2
  exit 1
fi

tmp="$output.tmp.$$"
sed "$sed_script" "$template" >"$tmp"
# shellcheck disable=SC2016 # a literal ${ to search for, not an expansion
if leftover=$(grep -o '\${[A-Za-z0-9_]*}' "$tmp" | sort -u | tr '\n' ' ') && [ -n "$leftover" ]; then
  rm -f "$tmp"
  echo "render-config: $template uses unknown placeholder(s): $leftover" >&2
  exit 1
fi
mv "$tmp" "$output"
