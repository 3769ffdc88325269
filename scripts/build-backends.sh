#!/usr/bin/env bash
# Builds the backends that Signalbox runs natively from their Go modules (`make backends`).
#
# Each tools/backends/<name>/ is a small Go module whose go.mod + go.sum lock every version.
# The binary lands in a cache OUTSIDE the clone, keyed by name, version and a hash of the
# module's files, and is linked into .tools/bin/<name>; a fresh clone on the same machine (CI)
# reuses it. Go's own module and build caches (~/go/pkg/mod, ~/.cache/go-build) are reused too.
# Nothing but the Go module proxy is used: GOTOOLCHAIN=local refuses to fetch another toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${SIGNALBOX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/signalbox}/bin
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly CGO_ENABLED=0
if ! command -v go >/dev/null; then
  echo "build-backends: Go is not installed (Go 1.26 or later is needed to build the backends)" >&2
  exit 1
fi
mkdir -p "$cache" .tools/bin

for dir in tools/backends/*/; do
  name=$(basename "$dir")
  # The version a wrapper builds: `version:` in its manifest (the builder's dist.version).
  version=$(sed -n 's/^  version: *//p' "$dir/manifest.yaml" | head -n 1)
  if [[ -z $version ]]; then
    echo "build-backends: $dir/manifest.yaml has no dist version" >&2
    exit 1
  fi
  digest=$(cd "$dir" && cat go.mod go.sum ./*.go manifest.yaml | sha256sum | cut -c1-12)
  binary=$cache/$name-$version-$digest
  if [[ -x $binary ]]; then
    echo "backends: $name $version (cached: $binary)"
  else
    echo "backends: building $name $version from $dir (a cold build takes a few minutes) ..."
    started=$SECONDS
    (cd "$dir" && go build -trimpath -ldflags="-s -w" -o "$binary.tmp" .)
    mv "$binary.tmp" "$binary"
    echo "backends: built $name $version in $((SECONDS - started)) s ($(du -h "$binary" | cut -f1))"
  fi
  ln -sfn "$binary" ".tools/bin/$name"
  # Older builds of this component are never used again.
  find "$cache" -maxdepth 1 -name "$name-*" ! -name "$(basename "$binary")" -delete
done
