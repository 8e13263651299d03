#!/usr/bin/env bash
# Installs edgetwin as a systemd service on a device or gateway.
#   sudo deploy/systemd/install.sh agent|collector [RELEASE_DIR]
# RELEASE_DIR holds a built release (dist/, node_modules/, package.json): a checkout after
# `npm ci && npm run build && npm prune --omit=dev`, or an unpacked `npm run package:agent` tarball.
#
# DESTDIR=/some/root stages the install instead (packaging, or a look at what it would do): files go
# under DESTDIR with their modes, and what needs root and the real system (the user, ownership,
# systemctl) is printed as `would run: …` lines instead of done. The real install still needs root.
set -euo pipefail
role=${1:?usage: install.sh agent|collector [RELEASE_DIR]}
here=$(cd "$(dirname "$0")" && pwd)
# In a checkout this script is deploy/systemd/; in an agent tarball it is systemd/.
if [ -n "${2:-}" ]; then src=$2; elif [ -f "$here/../dist/cli/edgetwin.js" ]; then src=$here/..; else src=$here/../..; fi
case "$role" in agent|collector) ;; *) echo "role must be agent or collector" >&2; exit 2 ;; esac
[ -f "$src/dist/cli/edgetwin.js" ] || { echo "$src has no dist/cli/edgetwin.js: build it first" >&2; exit 1; }
command -v node >/dev/null || { echo "node (>= 20) is required" >&2; exit 1; }
dest=${DESTDIR:-}
if [ -n "$dest" ]; then
  case "$dest" in /*) ;; *) echo "DESTDIR must be an absolute path" >&2; exit 2 ;; esac
  dest=${dest%/}
fi

# Runs a command that changes the real system; staged, it only says so.
privileged() {
  if [ -n "$dest" ]; then echo "would run: $*"; else "$@"; fi
}
# dir MODE OWNER:GROUP PATH
dir() {
  install -d -m "$1" "$dest$3"
  privileged chown "$2" "$3"
}
# file MODE OWNER:GROUP SOURCE PATH
file() {
  install -m "$1" "$3" "$dest$4"
  privileged chown "$2" "$4"
}

id -u edgetwin >/dev/null 2>&1 || privileged useradd --system --home-dir /var/lib/edgetwin --shell /usr/sbin/nologin edgetwin
dir 0755 root:root /opt/edgetwin
cp -a "$src/dist" "$src/node_modules" "$src/package.json" "$dest/opt/edgetwin/"
if [ -d "$src/models" ]; then cp -a "$src/models" "$dest/opt/edgetwin/"; fi
dir 0750 root:edgetwin /etc/edgetwin
dir 0750 edgetwin:edgetwin /var/lib/edgetwin
if [ ! -f "$dest/etc/edgetwin/$role.yaml" ]; then
  printf '# See docs/configuration.md\nstateDir: /var/lib/edgetwin/%s\n' "$role" > "$dest/etc/edgetwin/$role.yaml"
  chmod 0640 "$dest/etc/edgetwin/$role.yaml"
  privileged chown root:edgetwin "/etc/edgetwin/$role.yaml"
fi
if [ ! -f "$dest/etc/edgetwin/$role.env" ]; then
  file 0600 root:root /dev/null "/etc/edgetwin/$role.env"
fi
# Staged roots lack the unit folder a real system has.
if [ -n "$dest" ]; then install -d -m 0755 "$dest/etc/systemd/system"; fi
file 0644 root:root "$here/edgetwin-$role.service" "/etc/systemd/system/edgetwin-$role.service"
privileged systemctl daemon-reload
privileged systemctl enable --now "edgetwin-$role.service"
if [ -z "$dest" ]; then systemctl --no-pager status "edgetwin-$role.service" || true; fi
