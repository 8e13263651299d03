#!/usr/bin/env bash
# Installs edgetwin as a systemd service on a device or gateway.
#   sudo deploy/systemd/install.sh agent|collector [RELEASE_DIR]
# RELEASE_DIR holds a built release (dist/, node_modules/, package.json): a checkout after
# `npm ci && npm run build && npm prune --omit=dev`, or an unpacked `npm run package:agent` tarball.
set -euo pipefail
role=${1:?usage: install.sh agent|collector [RELEASE_DIR]}
here=$(cd "$(dirname "$0")" && pwd)
# In a checkout this script is deploy/systemd/; in an agent tarball it is systemd/.
if [ -n "${2:-}" ]; then src=$2; elif [ -f "$here/../dist/cli/edgetwin.js" ]; then src=$here/..; else src=$here/../..; fi
case "$role" in agent|collector) ;; *) echo "role must be agent or collector" >&2; exit 2 ;; esac
[ -f "$src/dist/cli/edgetwin.js" ] || { echo "$src has no dist/cli/edgetwin.js: build it first" >&2; exit 1; }
command -v node >/dev/null || { echo "node (>= 20) is required" >&2; exit 1; }

id -u edgetwin >/dev/null 2>&1 || useradd --system --home-dir /var/lib/edgetwin --shell /usr/sbin/nologin edgetwin
install -d -m 0755 /opt/edgetwin
cp -a "$src/dist" "$src/node_modules" "$src/package.json" /opt/edgetwin/
[ -d "$src/models" ] && cp -a "$src/models" /opt/edgetwin/
install -d -m 0750 -o root -g edgetwin /etc/edgetwin
install -d -m 0750 -o edgetwin -g edgetwin /var/lib/edgetwin
if [ ! -f "/etc/edgetwin/$role.yaml" ]; then
  printf '# See docs/configuration.md\nstateDir: /var/lib/edgetwin/%s\n' "$role" > "/etc/edgetwin/$role.yaml"
  chmod 0640 "/etc/edgetwin/$role.yaml"; chgrp edgetwin "/etc/edgetwin/$role.yaml"
fi
if [ ! -f "/etc/edgetwin/$role.env" ]; then
  install -m 0600 -o root -g root /dev/null "/etc/edgetwin/$role.env"
fi
install -m 0644 "$here/edgetwin-$role.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now "edgetwin-$role.service"
systemctl --no-pager status "edgetwin-$role.service" || true
