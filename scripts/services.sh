#!/usr/bin/env bash
# Starts what the libvirt tests need, idempotently: virtlogd and libvirtd (libvirt 11 from
# bookworm-backports, installed by scripts/setup.sh), as root, when they are not running;
# libvirtd with tests/libvirt/libvirtd.conf, which adds a TCP listener on 127.0.0.1 only.
#
# libvirtd runs under tini as a child subreaper. libvirtd daemonizes each QEMU, so a QEMU
# that exits is reaped by the nearest subreaper, else by PID 1; libvirt counts a domain shut
# off only once its QEMU is reaped. This machine's PID 1 reaps orphans only every second or
# two (measured: 1.1-2 s added to every domain stop), where systemd reaps at once.
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
# Whether the running libvirtd is tini's child.
under_tini() {
  local pid ppid
  pid=$(pgrep -xo libvirtd) || return 1
  ppid=$(ps -o ppid= -p "$pid" | tr -d ' ')
  [ "$(ps -o comm= -p "$ppid")" = tini ]
}
if pgrep -x libvirtd >/dev/null && { ! tcp_up || ! under_tini; }; then
  # Without the tests' loopback TCP listener or its reaper: restart it (domains keep running).
  log "services: restarting libvirtd with the tests' configuration ($conf) under tini"
  pkill -x libvirtd
  # Its orderly stop can take 15-20 s (measured here); running domains outlive it either way.
  for _ in $(seq 1 150); do pgrep -x libvirtd >/dev/null || break; sleep 0.2; done
  if pgrep -x libvirtd >/dev/null; then
    log "services: libvirtd did not stop in 30 s; killing it"
    pkill -KILL -x libvirtd
    for _ in $(seq 1 25); do pgrep -x libvirtd >/dev/null || break; sleep 0.2; done
  fi
fi
if ! pgrep -x libvirtd >/dev/null; then
  log "services: starting libvirtd (loopback TCP listener, $conf) under tini"
  setsid tini -s -- libvirtd --listen -f "$conf" </dev/null >>/var/log/libvirt/vmrescue-libvirtd.log 2>&1 &
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
