#!/usr/bin/env bash
# Sets up a fresh machine for photovault development: system packages, the project's own
# Node.js 24 LTS (from the npm registry, beside the system's node, never replacing it), the npm
# dependencies built against that Node.js, and the compiled CLI. Safe to run again.
#   scripts/setup.sh          to run photovault
#   scripts/setup.sh --test   also starts (installing if needed) the services the tests use
#   scripts/setup.sh --bench  also installs what the benchmarks compare against (Syncthing, vipsthumbnail)
set -euo pipefail
cd "$(dirname "$0")/.."
with_test_services=false
with_bench_peers=false
for arg in "$@"; do
  case "$arg" in
    --test) with_test_services=true ;;
    --bench) with_bench_peers=true ;;
    *) echo "setup: unknown option $arg (known: --test, --bench)" >&2; exit 2 ;;
  esac
done

NODE_VERSION=24.21.0
TOOLCHAIN=.toolchain

# System packages (Debian), only those missing. The workers need ffmpeg (video) and libheif's
# heif-convert (HEIC/HEIF, which sharp's prebuilt libvips cannot decode). The tests check
# metadata against exiftool and build the k3s kustomization with kubectl. With --bench, the
# peers the benchmarks run side by side with: Syncthing (bench:sync) and vipsthumbnail
# (bench:thumbs).
packages=(ffmpeg libheif-examples)
if $with_test_services; then
  packages+=(libimage-exiftool-perl)
  if ! command -v kubectl >/dev/null; then packages+=(kubernetes-client); fi
fi
if $with_bench_peers; then
  packages+=(libvips-tools)
  if ! command -v syncthing >/dev/null; then packages+=(syncthing); fi
fi
need=()
for pkg in "${packages[@]}"; do
  # Not `dpkg -s`: it also succeeds for a package removed with its config files left behind.
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

# Node.js 24 LTS: the official binary and headers, shipped by the node-linux-<cpu> package.
case "$(uname -m)" in
  x86_64) cpu=x64 ;;
  aarch64) cpu=arm64 ;;
  armv7l) cpu=armv7l ;;
  *) echo "setup: no Node.js package for CPU $(uname -m)" >&2; exit 1 ;;
esac
node_pkg="node-linux-$cpu"
node_home="$TOOLCHAIN/node_modules/$node_pkg"
if [ "$("$node_home/bin/node" --version 2>/dev/null)" != "v$NODE_VERSION" ]; then
  mkdir -p "$TOOLCHAIN"
  npm install --prefix "$TOOLCHAIN" --no-save --no-package-lock --loglevel=error "$node_pkg@$NODE_VERSION"
fi

# From here on every step runs under that Node.js, and native modules build against its headers.
source scripts/node-env.sh
npm ci --loglevel=error
npm run build
if $with_test_services; then scripts/services.sh; fi
echo "setup: ready (node $(node --version))"
