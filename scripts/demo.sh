#!/usr/bin/env bash
# The main job, end to end and without libvirt: build the rescue image from this host's kernel
# (and, once, the rescue kernel from linux-source, then cached), make a broken guest disk (ext4
# root in the error state a journal abort leaves, a damaged inode, /proc and /run gone, an fstab
# naming a kernel device and a detached volume), check it, rescue it under QEMU and print the
# reports.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

scripts/setup.sh
log "== building vmrescue and the static agent"
scripts/build-agent.sh
cargo build --release -p vmrescue-companion -p vmrescue-tests --bins

bin=target/release
work=$(mktemp -d "${TMPDIR:-/tmp}/vmrescue-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "== building the rescue image"
"$bin/vmrescue" image build

log "== making a broken guest disk"
"$bin/vmrescue-fixture" field-failure "$work/guest.img"
rc=0; e2fsck -fn "$work/guest.img" >/dev/null 2>&1 || rc=$?
log "host e2fsck -fn before the rescue: exit $rc"

log "== checking it (check mode: nothing is written)"
rc=0; "$bin/vmrescue" rescue --disk "$work/guest.img" --mode check || rc=$?
log "vmrescue exit status: $rc (1: problems found)"

log "== rescuing it (repair mode)"
rc=0; "$bin/vmrescue" rescue --disk "$work/guest.img" --mode repair || rc=$?
log "vmrescue exit status: $rc"

after=0; e2fsck -fn "$work/guest.img" >/dev/null 2>&1 || after=$?
log "host e2fsck -fn after the rescue: exit $after"
log "the guest's /etc/fstab now:"
debugfs -R "cat /etc/fstab" "$work/guest.img" 2>/dev/null | sed 's/^/    /'
[ "$rc" -eq 0 ] && [ "$after" -eq 0 ] || die "the demo rescue did not repair the disk"
log "demo: the disk was repaired"
