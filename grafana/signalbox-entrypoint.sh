#!/bin/sh
# Refuse to start with Grafana's built-in default credentials: without
# GF_SECURITY_ADMIN_PASSWORD Grafana would create admin/admin, and on Railway the domain is
# public. Then hand over to the image's own start script.
set -eu
if [ -z "${GF_SECURITY_ADMIN_PASSWORD:-}" ] && [ -z "${GF_SECURITY_ADMIN_PASSWORD__FILE:-}" ]; then
  echo "signalbox: GF_SECURITY_ADMIN_PASSWORD is not set; set it (or GF_SECURITY_ADMIN_PASSWORD__FILE) to the Grafana admin password" >&2
  exit 1
fi
if [ "${GF_SECURITY_ADMIN_PASSWORD:-}" = "admin" ]; then
  echo "signalbox: GF_SECURITY_ADMIN_PASSWORD is Grafana's default 'admin'; choose another password" >&2
  exit 1
fi
exec /run.sh "$@"
