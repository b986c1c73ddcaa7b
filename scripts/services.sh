#!/usr/bin/env bash
# Starts what the libvirt tests need, idempotently: virtlogd and libvirtd (libvirt 11 from
# bookworm-backports, installed by scripts/setup.sh), as root, when they are not running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  log "services: not root; the libvirt tests need libvirtd running (sudo $0)"
  exit 0
fi
start() {
  local name=$1
  if pgrep -x "$name" >/dev/null; then
    return 0
  fi
  log "services: starting $name"
  "$name" -d
}
start virtlogd
start libvirtd
# libvirtd answers once its socket is up.
for _ in $(seq 1 50); do
  if virsh -q -c qemu:///system version >/dev/null 2>&1; then
    log "services: libvirtd answers on qemu:///system"
    exit 0
  fi
  sleep 0.2
done
die "services: libvirtd started but does not answer on qemu:///system"
