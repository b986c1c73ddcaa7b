#!/usr/bin/env bash
# Idempotent set-up for vmrescue on Debian 12 (bookworm): the Debian packages the rescue image,
# the demo and the tests need, and the Rust musl target for the static agent.
#
# The bookworm-backports suite (QEMU 10, libvirt 11) is added by reusing the mirror URI that the
# machine's own /etc/apt/sources.list.d/debian.sources already names; no host name is written here.
#
# Usage: scripts/setup.sh [--check]   (--check: only report what is missing, exit 1 if anything is)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

# Packages from bookworm itself (linux-source and the compiler for the rescue kernel).
base_pkgs=(
  linux-image-amd64 e2fsprogs e2fsck-static busybox-static xfsprogs dosfstools btrfs-progs
  xorriso isolinux syslinux syslinux-common mtools shim-signed grub-efi-amd64-signed ovmf
  cpio zstd file fdisk xz-utils libxml2-utils debootstrap
  linux-source-6.1 make gcc flex bison bc libelf-dev
  # The layouts under guest filesystems: the rescue image carries lvm, mdadm, cryptsetup and
  # thin_check (late archive); the tests lay out LVM disks with lvm's no-activation modes and
  # LUKS headers with cryptsetup, on loop devices and image files, nothing activated.
  lvm2 mdadm cryptsetup-bin thin-provisioning-tools
  # ssh-keygen: the key a test gives a guest user (--ssh-key), then logs in with.
  openssh-client
  # libvirtd runs under tini as a subreaper (scripts/services.sh): its QEMU processes are
  # reaped the moment they exit, as under systemd.
  tini
)
# Packages that must come from bookworm-backports (QEMU 10 pairs with the qemu-utils 10 here).
bpo_pkgs=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev)

# Commands and files whose presence means the set-up has been done.
need_paths=(
  /usr/sbin/e2fsck /sbin/e2fsck.static /bin/busybox /usr/sbin/mkfs.xfs /usr/bin/xorriso
  /usr/lib/ISOLINUX/isolinux.bin /usr/bin/cpio /usr/bin/zstd /usr/bin/file
  /usr/bin/qemu-system-x86_64 /usr/bin/qemu-img /usr/bin/virsh /usr/sbin/debugfs /usr/sbin/sfdisk
  /usr/bin/xz /sbin/fsck.fat /bin/btrfs
  /usr/bin/syslinux /usr/bin/mformat /usr/lib/shim/shimx64.efi.signed
  /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed /usr/share/OVMF/OVMF_CODE_4M.ms.fd
  /usr/bin/xmllint /usr/sbin/debootstrap
  /usr/bin/make /usr/bin/gcc /usr/bin/flex /usr/bin/bison /usr/bin/bc /usr/include/libelf.h
  /usr/bin/tini /usr/sbin/pvcreate /usr/sbin/losetup /sbin/mdadm /sbin/cryptsetup /usr/sbin/thin_check
  /usr/bin/ssh-keygen
)

missing=()
for p in "${need_paths[@]}"; do [ -e "$p" ] || missing+=("$p"); done
if ! ls /boot/vmlinuz-* >/dev/null 2>&1; then missing+=("/boot/vmlinuz-*"); fi
# The source of the purpose-made rescue kernel (`vmrescue image build --rescue-kernel`).
if ! ls /usr/src/linux-source-*.tar.* >/dev/null 2>&1; then missing+=("/usr/src/linux-source-*.tar.*"); fi
rust_ok=1
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  rust_ok=0
  missing+=("rust target x86_64-unknown-linux-musl")
fi
for c in clippy fmt; do
  if ! cargo "$c" --version >/dev/null 2>&1; then
    rust_ok=0
    missing+=("cargo $c")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  log "set-up: everything is in place"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  log "set-up: missing: ${missing[*]}"
  exit 1
fi
log "set-up: missing: ${missing[*]}"

install_rust() {
  command -v rustup >/dev/null || die "rustup is not installed: install the Rust toolchain with rustup first"
  rustup target add x86_64-unknown-linux-musl
  rustup component add clippy rustfmt
}

pkgs_missing=0
for m in "${missing[@]}"; do case "$m" in /*) pkgs_missing=1 ;; esac; done
if [ "$pkgs_missing" -eq 0 ]; then
  install_rust
  log "set-up: done"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  die "set-up needs root to install Debian packages (run: sudo $0)"
fi

export DEBIAN_FRONTEND=noninteractive

add_backports() {
  local list=/etc/apt/sources.list.d/vmrescue-bookworm-backports.sources
  [ -f "$list" ] && return 0
  if apt-cache policy 2>/dev/null | grep -q 'bookworm-backports'; then return 0; fi
  local src=/etc/apt/sources.list.d/debian.sources uri=""
  if [ -f "$src" ]; then
    # The first URIs: line of the stanza whose Suites: names plain bookworm (not -security).
    uri=$(awk '
      /^[[:space:]]*$/ { if (s ~ /(^| )bookworm( |$)/ && u != "") { print u; exit } s=""; u=""; next }
      /^URIs:/   { u=$2 }
      /^Suites:/ { $1=""; s=$0 " " }
      END { if (s ~ /(^| )bookworm( |$)/ && u != "") print u }' "$src" | head -n 1)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $3=="bookworm" { print $2; exit }' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "cannot find a bookworm mirror URI in $src or /etc/apt/sources.list to add bookworm-backports"
  log "set-up: adding bookworm-backports from the existing mirror"
  cat >"$list" <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
}

add_backports
apt-get update -q
# Services must not be started by package scripts during set-up (containers, CI); the tests start
# what they need themselves.
apt-get install -y -q --no-install-recommends "${base_pkgs[@]}"
apt-get install -y -q --no-install-recommends -t bookworm-backports "${bpo_pkgs[@]}"

[ "$rust_ok" -eq 1 ] || install_rust
log "set-up: done"
