#!/usr/bin/env bash
# Builds a self-contained agent tarball for devices without build tools:
#   npm run package:agent [-- [--no-build] [--reuse-node-modules] [OUT.tar.gz]]
#     -> edgetwin-agent-<version>-linux-<arch>.tar.gz (this machine's arch)
# Native modules (better-sqlite3, onnxruntime-node) are those of the build machine: build on (or
# for) the target architecture — see docs/deploy.md for arm64. Only what the agent loads ships
# (deploy/agent-deps.mjs: its modules of dist/ and their npm packages), not the cloud's or the
# collector's (DuckDB, fastify, aedes, the Azure SDKs). Sizes unpacked go to stderr.
#   --no-build             package the dist/ that is already there (CI builds once, then packages)
#   --reuse-node-modules   copy this checkout's node_modules and prune dev dependencies instead of a
#                          fresh `npm ci --omit=dev` (offline, no recompiling better-sqlite3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=1
reuse=0
out=""
for arg in "$@"; do
  case "$arg" in
    --no-build) build=0 ;;
    --reuse-node-modules) reuse=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "package-agent: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
version=$(node -p "require('$root/package.json').version")
arch=$(node -p "process.arch")
out=${out:-$root/edgetwin-agent-$version-linux-$arch.tar.gz}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

[ "$build" = 1 ] && (cd "$root" && npm run build >/dev/null)
[ -f "$root/dist/cli/edgetwin.js" ] || { echo "package-agent: $root/dist is not built (npm run build)" >&2; exit 1; }
mkdir -p "$stage/edgetwin"
cp -a "$root/dist" "$root/package.json" "$root/package-lock.json" "$root/.npmrc" "$stage/edgetwin/"
# The models the agent runs: the manifest, the ONNX files and their cards (not the training code).
if [ -f "$root/models/manifest.json" ]; then
  (cd "$root" && find models \( -name manifest.json -o -name '*.onnx' -o -name MODEL_CARD.md \) -print0 | tar --null -T - -cf -) |
    tar -C "$stage/edgetwin" -xf -
fi
cp -a "$root/deploy/systemd" "$stage/edgetwin/systemd"
# Production dependencies only, compiled here; no toolchain is needed on the device.
if [ "$reuse" = 1 ]; then
  cp -a "$root/node_modules" "$stage/edgetwin/"
  (cd "$stage/edgetwin" && npm prune --omit=dev --no-audit --no-fund >/dev/null 2>&1)
else
  (cd "$stage/edgetwin" && npm ci --omit=dev --no-audit --no-fund >/dev/null)
fi
# Only the agent's own packages and modules stay.
node "$root/deploy/agent-deps.mjs" "$stage/edgetwin" --prune >/dev/null
# onnxruntime-node ships the runtime of every platform (≈ 290 MB); a device needs only its own.
ort="$stage/edgetwin/node_modules/onnxruntime-node/bin"
if [ -d "$ort" ]; then
  find "$ort" -mindepth 3 -maxdepth 3 -type d ! -path "*/linux/$arch" -exec rm -rf {} +
  find "$ort" -mindepth 2 -maxdepth 2 -type d -empty -delete
fi
total=$(du -sk "$stage/edgetwin" | cut -f1)
ort_kb=$(du -sk "$stage/edgetwin/node_modules/onnxruntime-node" 2>/dev/null | cut -f1 || echo 0)
echo "package-agent: unpacked $((total / 1024)) MiB, of which onnxruntime-node $((ort_kb / 1024)) MiB" >&2
tar -C "$stage" -czf "$out" edgetwin
echo "$out"
