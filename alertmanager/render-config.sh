#!/bin/sh
# Renders the Alertmanager configuration from environment variables, then starts Alertmanager.
# Alertmanager does not expand environment variables in its config, and receivers must not
# exist without a destination, so the file is written at start-up.
#
#   render-config.sh [ALERTMANAGER ARGS...]   render to $ALERTMANAGER_CONFIG_FILE (default
#                                             /tmp/alertmanager.yml), exec $ALERTMANAGER_BIN
#                                             (default /bin/alertmanager, the image's binary)
#   render-config.sh --print                  print the rendered config and exit (tests, debugging)
#
# Where alerts go (at least one is required: nothing may fire into the void):
#   ALERT_SLACK_WEBHOOK_URL   Slack incoming-webhook URL (secret). https://api.slack.com/messaging/webhooks
#   ALERT_SLACK_CHANNEL       optional channel override, e.g. #alerts (the webhook has a default)
#   ALERT_EMAIL_TO            comma-separated recipients; needs ALERT_EMAIL_FROM and ALERT_SMTP_SMARTHOST
#   ALERT_EMAIL_FROM          sender address
#   ALERT_SMTP_SMARTHOST      SMTP server host:port, e.g. smtp.example.com:587
#   ALERT_SMTP_USERNAME, ALERT_SMTP_PASSWORD   SMTP auth (optional; the password is a secret)
#   ALERT_SMTP_REQUIRE_TLS    true (default) or false (only for a local test relay)
# Tuning:
#   ALERT_GRAFANA_URL         base URL put in front of dashboard links (default http://localhost:3000)
#   ALERT_GROUP_WAIT          wait before the first notification of a group (default 30s)
#   ALERT_REPEAT_INTERVAL     re-notify a still-firing alert after this long (default 4h)
# Reference: https://prometheus.io/docs/alerting/latest/configuration/
# POSIX sh: runs on the busybox shell of the Alertmanager image and on dash in CI.
set -eu

out=${ALERTMANAGER_CONFIG_FILE:-/tmp/alertmanager.yml}
errors=0
fail() {
  echo "alertmanager config: $1" >&2
  errors=$((errors + 1))
}

# A YAML double-quoted scalar: escape backslashes and quotes (values were checked for control
# characters by no_control_chars first).
quote() {
  printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

newline=$(printf '\nx'); newline=${newline%x}
no_control_chars() {
  case $2 in
    *"$newline"* | *"$(printf '\r')"* | *"$(printf '\t')"*)
      fail "$1 contains a line break or tab" ;;
  esac
}

duration_ok() { printf '%s\n' "$1" | grep -Eq '^([0-9]+(ms|s|m|h|d|w|y))+$'; }
hostport_ok() { printf '%s\n' "$1" | grep -Eq '^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$'; }
email_ok() { printf '%s\n' "$1" | grep -Eq '^[^@[:space:]]+@[^@[:space:]]+$'; }

slack_url=${ALERT_SLACK_WEBHOOK_URL:-}
slack_channel=${ALERT_SLACK_CHANNEL:-}
email_to=${ALERT_EMAIL_TO:-}
email_from=${ALERT_EMAIL_FROM:-}
smarthost=${ALERT_SMTP_SMARTHOST:-}
smtp_user=${ALERT_SMTP_USERNAME:-}
smtp_password=${ALERT_SMTP_PASSWORD:-}
require_tls=${ALERT_SMTP_REQUIRE_TLS:-true}
grafana_url=${ALERT_GRAFANA_URL:-http://localhost:3000}
group_wait=${ALERT_GROUP_WAIT:-30s}
repeat_interval=${ALERT_REPEAT_INTERVAL:-4h}

for name in ALERT_SLACK_WEBHOOK_URL ALERT_SLACK_CHANNEL ALERT_EMAIL_TO ALERT_EMAIL_FROM \
  ALERT_SMTP_SMARTHOST ALERT_SMTP_USERNAME ALERT_SMTP_PASSWORD ALERT_GRAFANA_URL; do
  eval "value=\${$name:-}"
  no_control_chars "$name" "$value"
done

if [ -z "$slack_url" ] && [ -z "$email_to" ]; then
  fail "no notification channel: set ALERT_SLACK_WEBHOOK_URL and/or ALERT_EMAIL_TO (see alertmanager/README.md)"
fi
case $slack_url in
  '' | https://* | http://*) ;;
  *) fail "ALERT_SLACK_WEBHOOK_URL must be an http(s) URL" ;;
esac
if [ -n "$email_to" ]; then
  [ -n "$email_from" ] || fail "ALERT_EMAIL_FROM is required when ALERT_EMAIL_TO is set"
  [ -z "$email_from" ] || email_ok "$email_from" || fail "ALERT_EMAIL_FROM: '$email_from' is not an email address"
  [ -n "$smarthost" ] || fail "ALERT_SMTP_SMARTHOST (host:port) is required when ALERT_EMAIL_TO is set"
  [ -z "$smarthost" ] || hostport_ok "$smarthost" || fail "ALERT_SMTP_SMARTHOST: '$smarthost' is not host:port"
  old_ifs=$IFS; IFS=','
  for address in $email_to; do
    email_ok "$address" || fail "ALERT_EMAIL_TO: '$address' is not an email address"
  done
  IFS=$old_ifs
fi
case $require_tls in true | false) ;; *) fail "ALERT_SMTP_REQUIRE_TLS must be true or false" ;; esac
duration_ok "$group_wait" || fail "ALERT_GROUP_WAIT: '$group_wait' is not a duration such as 30s"
duration_ok "$repeat_interval" || fail "ALERT_REPEAT_INTERVAL: '$repeat_interval' is not a duration such as 4h"
case $grafana_url in https://* | http://*) ;; *) fail "ALERT_GRAFANA_URL must be an http(s) URL" ;; esac

if [ "$errors" -gt 0 ]; then
  echo "alertmanager config: $errors problem(s); not starting" >&2
  exit 1
fi

# printf, not echo: dash's echo would turn the escaped backslashes back into escapes.
line() { printf '%s\n' "$1"; }

render() {
  line "# Rendered by render-config.sh at start-up from ALERT_* variables. Do not edit."
  line "global:"
  line "  resolve_timeout: 5m"
  if [ -n "$email_to" ]; then
    line "  smtp_smarthost: $(quote "$smarthost")"
    line "  smtp_from: $(quote "$email_from")"
    line "  smtp_require_tls: $require_tls"
    if [ -n "$smtp_user" ]; then
      line "  smtp_auth_username: $(quote "$smtp_user")"
      line "  smtp_auth_password: $(quote "$smtp_password")"
    fi
  fi
  # Static part: the Go templates below are Alertmanager's, not the shell's.
  cat <<'YAML'
templates: []
# One group per alert and service; pages repeat every hour until fixed or silenced.
route:
  receiver: team
  group_by: [alertname, job]
YAML
  line "  group_wait: $group_wait"
  line "  group_interval: 5m"
  line "  repeat_interval: $repeat_interval"
  cat <<'YAML'
  routes:
    - matchers: ['severity="page"']
      receiver: team
      repeat_interval: 1h
# A page for a service silences that service's lesser alerts about the same thing.
inhibit_rules:
  - source_matchers: ['alertname="ErrorBudgetBurnFast"']
    target_matchers: ['alertname=~"ErrorBudgetBurnSlow|HighErrorRatio"']
    equal: [job]
  - source_matchers: ['alertname="ScrapeTargetDown"']
    target_matchers: ['alertname="TelemetryDropped"']
    equal: [job]
receivers:
  - name: team
YAML
  if [ -n "$slack_url" ]; then
    line "    slack_configs:"
    line "      - api_url: $(quote "$slack_url")"
    [ -z "$slack_channel" ] || line "        channel: $(quote "$slack_channel")"
    line "        send_resolved: true"
    line "        title: '[{{ .Status | toUpper }}{{ if eq .Status \"firing\" }}:{{ .Alerts.Firing | len }}{{ end }}] {{ .CommonLabels.alertname }} {{ .CommonLabels.job }}'"
    line "        text: |-"
    line "          {{ range .Alerts }}*{{ .Annotations.summary }}* ({{ .Labels.severity }})"
    line "          {{ .Annotations.description }}"
    line "          Runbook: {{ .Annotations.runbook }}"
    line "          Dashboard: $grafana_url{{ .Annotations.dashboard }}"
    line "          {{ end }}"
  fi
  if [ -n "$email_to" ]; then
    line "    email_configs:"
    line "      - to: $(quote "$email_to")"
    line "        send_resolved: true"
    line "        headers:"
    line "          Subject: '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} {{ .CommonLabels.job }}: {{ .CommonAnnotations.summary }}'"
  fi
}

if [ "${1:-}" = "--print" ]; then
  render
  exit 0
fi

umask 077
render >"$out"
exec "${ALERTMANAGER_BIN:-/bin/alertmanager}" --config.file="$out" "$@"
