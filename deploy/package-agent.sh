#!/usr/bin/env bash
# Builds a self-contained agent tarball for devices without build tools:
#   npm run package:agent            -> edgetwin-agent-<version>-linux-<arch>.tar.gz (this machine's arch)
# Native modules (better-sqlite3, onnxruntime-node) are those of the build machine: build on (or
# for) the target architecture — see docs/deploy.md for arm64.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(node -p "require('$root/package.json').version")
arch=$(node -p "process.arch")
out=${1:-$root/edgetwin-agent-$version-linux-$arch.tar.gz}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

(cd "$root" && npm run build >/dev/null)
mkdir -p "$stage/edgetwin"
cp -a "$root/dist" "$root/package.json" "$root/package-lock.json" "$root/.npmrc" "$stage/edgetwin/"
[ -d "$root/models" ] && cp -a "$root/models" "$stage/edgetwin/"
cp -a "$root/deploy/systemd" "$stage/edgetwin/systemd"
# Production dependencies only, compiled here; no toolchain is needed on the device.
(cd "$stage/edgetwin" && npm ci --omit=dev --no-audit --no-fund >/dev/null)
tar -C "$stage" -czf "$out" edgetwin
echo "$out"
