#!/usr/bin/env bash
# Starts what the libvirt tests need, idempotently: virtlogd and libvirtd (libvirt 11 from
# bookworm-backports, installed by scripts/setup.sh), as root, when they are not running;
# libvirtd with tests/libvirt/libvirtd.conf, which adds a TCP listener on 127.0.0.1 only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  log "services: not root; the libvirt tests need libvirtd running (sudo $0)"
  exit 0
fi
conf="$here/../tests/libvirt/libvirtd.conf"
tcp_up() { (exec 3<>/dev/tcp/127.0.0.1/16509) 2>/dev/null; }

if ! pgrep -x virtlogd >/dev/null; then
  log "services: starting virtlogd"
  virtlogd -d
fi
if pgrep -x libvirtd >/dev/null && ! tcp_up; then
  # Running without the tests' loopback TCP listener: restart it with it (domains keep running).
  log "services: restarting libvirtd with the tests' configuration ($conf)"
  pkill -x libvirtd
  for _ in $(seq 1 50); do pgrep -x libvirtd >/dev/null || break; sleep 0.2; done
fi
if ! pgrep -x libvirtd >/dev/null; then
  log "services: starting libvirtd (loopback TCP listener, $conf)"
  libvirtd -d --listen -f "$conf"
fi
# libvirtd answers once its socket is up.
for _ in $(seq 1 50); do
  if virsh -q -c qemu:///system version >/dev/null 2>&1 && tcp_up; then
    log "services: libvirtd answers on qemu:///system and qemu+tcp://127.0.0.1/system"
    exit 0
  fi
  sleep 0.2
done
die "services: libvirtd started but does not answer on qemu:///system"
