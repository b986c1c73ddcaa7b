#!/usr/bin/env bash
# Benchmark (not a test): how long a rescue takes, side by side with libguestfs, and where the
# time goes. On fresh copies of the same broken seed disks (disk A: /boot, swap and / on GPT;
# disk B: /home; / and /home in the error state a journal abort leaves), RUNS alternating runs of
#   (a) vmrescue rescue --disk A --disk B --mode repair      (process start to exit)
#   (b) guestfish -a A -a B run : fsck ext4 /dev/sda3 : fsck ext4 /dev/sdb1
#       (direct backend, force_tcg where KVM does not work; its appliance built once before)
# then medians, min/max and the ratio a/b; the report's timings (where the guest's time goes);
# sizes against the appliance; the smallest guest RAM that completes; how time grows with the
# disk's size and its number of files; 8 rescues at once; `rescue --domain` (a BIOS and a
# UEFI domain) when libvirtd runs; a boot of the ISO; and a guest whose root and /home are LVM
# logical volumes, beside guestfish on the same disk.
#
# The image carries the purpose-made rescue kernel (`image build --rescue-kernel`, built once
# into the cache), which `rescue --disk` and `rescue --domain` boot; the same `--disk` runs with
# the host's kernel (VMRESCUE_KERNEL=host, its uncompressed files carried for it with
# --host-kernel-files) are measured beside it.
#
# Usage: bench/speed.sh [RUNS]   (default 5)
# Env:   VMRESCUE_BIN  a vmrescue binary to use instead of building the release one
#        BENCH_DIR     where to make the scratch directory (default: $TMPDIR or /var/tmp)
#        VMRESCUE_KERNEL_ENTRY=bzimage  compare with the bzImage boot instead of PVH
#        BENCH_NO_GUESTFISH=1  skip the libguestfs side (it installs libguestfs-tools, which
#                      brings lvm2, mdadm and more onto the host)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

runs=${1:-5}
[[ $runs =~ ^[0-9]+$ && $runs -ge 1 ]] || die "usage: $0 [RUNS]"

bash scripts/setup.sh >/dev/null
# What only the benchmark needs: the comparison and its arithmetic.
missing=()
gf=${BENCH_NO_GUESTFISH:+no}
gf=${gf:-yes}
[[ $gf == no ]] || command -v guestfish >/dev/null || missing+=(libguestfs-tools)
command -v bc >/dev/null || missing+=(bc)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    log "== installing ${missing[*]} (for the benchmark only)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bin=$(bench_bin)
bash scripts/build-agent.sh >/dev/null
agent=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/vmrescue-agent

work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/var/tmp}}/bench-speed.XXXXXX")
trap 'rm -rf "$work"' EXIT
# libvirt's QEMU runs as its own user: it must reach the disks and media in here.
chmod 0755 "$work"
log "== vmrescue image build (with media) into $work/image"
"$bin" image build --out "$work/image" --agent "$agent" --rescue-kernel --host-kernel-files >/dev/null

export LIBGUESTFS_BACKEND=direct
if ! grep -qw -e vmx -e svm /proc/cpuinfo || ! [[ -w /dev/kvm ]]; then
    export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
fi
if [[ $gf == yes ]]; then
    log "== building the libguestfs appliance once"
    guestfish -a /dev/null run >/dev/null 2>&1 || die "guestfish cannot start its appliance"
fi

now() { date +%s.%N; }
# A partition's filesystem made apart (mkfs -d, the error state with debugfs), then put in place.
place() { # DISK PART_NUMBER IMAGE
    local start
    start=$(sfdisk --json "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['partitiontable']['partitions'][$2-1]['start'])")
    dd if="$3" of="$1" bs=512 seek="$start" conv=sparse,notrunc status=none
}
broken_ext4() { # IMAGE SIZE_MIB LABEL TREE
    truncate -s "$2M" "$1"
    mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 -L "$3" -d "$4" "$1"
    debugfs -w -R "ssv state 2" "$1" >/dev/null 2>&1
    debugfs -w -R "ssv error_count 3" "$1" >/dev/null 2>&1
}
# The seed layout: A = /boot, swap, / (ROOT_MIB); B = /home. FILES small files under /usr/share.
seed() { # DIR ROOT_MIB FILES
    local d=$1 root_mib=$2 files=$3 t
    mkdir -p "$d"
    t=$d/tree
    mkdir -p "$t"/{etc,usr/share/data,var/log,proc,sys,dev,run,tmp,boot,home,sbin}
    printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n' >"$t/etc/os-release"
    printf 'root:x:0:0:root:/root:/bin/bash\n' >"$t/etc/passwd"
    printf 'LABEL=root / ext4 errors=remount-ro 0 1\nLABEL=boot /boot ext4 defaults 0 2\nLABEL=home /home ext4 defaults 0 2\n' >"$t/etc/fstab"
    head -c 4096 /dev/urandom >"$t/sbin/init"
    for ((i = 0; i < files; i++)); do printf 'file %d\n' "$i" >"$t/usr/share/data/f$i"; done
    mkdir -p "$d/boot.tree" "$d/home.tree/user"
    head -c 1M /dev/urandom >"$d/boot.tree/vmlinuz"
    head -c 2M /dev/urandom >"$d/home.tree/user/data"
    truncate -s $((root_mib + 256))M "$d/A.img"
    printf 'label: gpt\nsize=64MiB, name=boot\nsize=64MiB, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=swap\nsize=%sMiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=root\n' "$root_mib" |
        sfdisk --quiet --no-reread --no-tell-kernel "$d/A.img"
    truncate -s 320M "$d/B.img"
    printf 'label: gpt\nsize=256MiB, name=home\n' | sfdisk --quiet --no-reread --no-tell-kernel "$d/B.img"
    broken_ext4 "$d/boot.ext4" 64 boot "$d/boot.tree"
    broken_ext4 "$d/root.ext4" "$root_mib" root "$t"
    broken_ext4 "$d/home.ext4" 256 home "$d/home.tree"
    place "$d/A.img" 1 "$d/boot.ext4"
    place "$d/A.img" 3 "$d/root.ext4"
    place "$d/B.img" 1 "$d/home.ext4"
    truncate -s 64M "$d/swap.img" && mkswap -q "$d/swap.img" && place "$d/A.img" 2 "$d/swap.img"
    rm -rf "$t" "$d"/*.tree "$d"/*.ext4 "$d/swap.img"
}
# The copies are written back before a run: a VM's disks are flushed when it ends, and the
# copy's dirty pages are nobody's cost (guestfish's runs included).
fresh() { cp --sparse=always "$1/A.img" "$work/a.img"; cp --sparse=always "$1/B.img" "$work/b.img"; sync; }
rescue() { # extra vmrescue args...; prints seconds, leaves the report in $work/report.json
    local s e
    s=$(now)
    "$bin" rescue --json --image "$work/image" --mode repair --disk "$work/a.img" --disk "$work/b.img" "$@" \
        >"$work/report.json" 2>"$work/rescue.err" || true
    e=$(now)
    echo "$e - $s" | bc
}
gfish() {
    local s e
    [[ $gf == yes ]] || { echo 0; return; }
    s=$(now)
    guestfish -a "$work/a.img" -a "$work/b.img" run : fsck ext4 /dev/sda3 : fsck ext4 /dev/sdb1 >/dev/null 2>&1 || true
    e=$(now)
    echo "$e - $s" | bc
}
stats() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f %.2f %.2f\n", m, a[1], a[NR]}'; }
outcome() { python3 -c "import json; print(json.load(open('$work/report.json')).get('outcome','?'))" 2>/dev/null || echo none; }

log "== seed disks"
seed "$work/seed" 512 200
: >"$work/a.times"
: >"$work/h.times"
: >"$work/b.times"
for ((r = 1; r <= runs; r++)); do
    fresh "$work/seed"
    t=$(rescue)
    echo "$t" >>"$work/a.times"
    o=$(outcome)
    fresh "$work/seed"
    h=$(VMRESCUE_KERNEL=host rescue)
    echo "$h" >>"$work/h.times"
    oh=$(outcome)
    fresh "$work/seed"
    g=$(gfish)
    echo "$g" >>"$work/b.times"
    log "run $r: vmrescue ${t}s ($o), with the host's kernel ${h}s ($oh), guestfish ${g}s"
done
fresh "$work/seed"
rescue >/dev/null
read -r am amin amax < <(stats <"$work/a.times")
read -r hm hmin hmax < <(stats <"$work/h.times")
read -r bm bmin bmax < <(stats <"$work/b.times")
echo "vmrescue rescue (repair, 2 disks): median ${am}s  min ${amin}s  max ${amax}s  (rescue kernel)"
echo "  the same, host's kernel:         median ${hm}s  min ${hmin}s  max ${hmax}s"
echo "guestfish run + 2 fsck:            median ${bm}s  min ${bmin}s  max ${bmax}s"
if [[ $gf == yes ]]; then
    echo "ratio a/b (medians): $(echo "scale=2; $am / $bm" | bc) (host's kernel: $(echo "scale=2; $hm / $bm" | bc))"
else
    echo "(guestfish skipped: BENCH_NO_GUESTFISH)"
fi

echo "-- where the time goes (last vmrescue run; guest uptime in seconds)"
python3 - "$work/report.json" "$am" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t = r.get("timings", [])
if not t:
    print("  (the report has no timings)")
    sys.exit()
prev = 0.0
print(f"  kernel start to agent:      {t[0]['uptime_s']:6.2f}")
for p in t:
    print(f"  {p['phase']:<26}  {p['uptime_s']:6.2f}  (+{p['uptime_s'] - prev:.2f})")
    prev = p["uptime_s"]
print(f"  host side and QEMU start:   {float(sys.argv[2]) - t[-1]['uptime_s']:6.2f} (wall median minus the report's uptime)")
EOF

echo "-- sizes (bytes)"
size() { stat -c %s "$1" 2>/dev/null || echo 0; }
# Allocated bytes: the appliance's root image is sparse.
appliance=$(du -s -B1 /var/tmp/.guestfs-"$(id -u)"/appliance.d 2>/dev/null | cut -f1 || echo 0)
ours=$(($(size "$work/image/vmlinuz") + $(size "$work/image/initramfs.img")))
rk=$(python3 -c "import json; print(json.load(open('$work/image/manifest.json'))['rescue_kernel']['release'])" 2>/dev/null || echo none)
rkb=$(size "$(ls -td "${XDG_CACHE_HOME:-$HOME/.cache}"/vmrescue/rescue-kernel-*/bzImage 2>/dev/null | head -n 1)")
echo "  agent $(size "$agent"), initramfs $(size "$work/image/initramfs.img"), vmlinuz $(size "$work/image/vmlinuz"), vmlinux $(size "$work/image/vmlinux")"
echo "  ISO $(size "$work/image/vmrescue.iso"), disk image $(size "$work/image/vmrescue-disk.qcow2")"
echo "  rescue --disk boots: initramfs-core.cpio $(size "$work/image/initramfs-core.cpio") and late.img $(size "$work/image/late.img") (a disk, read only when needed)"
rki=$((rkb + $(size "$work/image/initramfs-rescue.cpio")))
echo "  rescue kernel $rk: bzImage $rkb, vmlinux-rescue $(size "$work/image/vmlinux-rescue"), initramfs-rescue.cpio $(size "$work/image/initramfs-rescue.cpio")"
echo "  rescue kernel bzImage + initramfs-rescue.cpio $rki against the appliance: 1/$((appliance / (rki > 0 ? rki : 1)))"
echo "  kernel + initramfs $ours against the libguestfs appliance (kernel included) $appliance: 1/$((appliance / (ours > 0 ? ours : 1)))"

echo "-- a root on LVM (vda1 /boot, vda2 a PV of vg0 with root and home; all three broken)"
cargo build --release -q -p vmrescue-tests --bin vmrescue-fixture
"${CARGO_TARGET_DIR:-target}/release/vmrescue-fixture" lvm-guest "$work/lvm" >/dev/null
: >"$work/l.times"
: >"$work/lg.times"
for ((r = 1; r <= runs; r++)); do
    cp --sparse=always "$work/lvm/guest.img" "$work/lvm.img"
    s=$(now)
    "$bin" rescue --json --image "$work/image" --mode repair --disk "$work/lvm.img" >"$work/report.json" 2>/dev/null || true
    e=$(now)
    echo "$e - $s" | bc >>"$work/l.times"
    lo=$(outcome)
    if [[ $gf == yes ]]; then
        cp --sparse=always "$work/lvm/guest.img" "$work/lvm.img"
        s=$(now)
        guestfish -a "$work/lvm.img" run : fsck ext4 /dev/sda1 : fsck ext4 /dev/vg0/root : fsck ext4 /dev/vg0/home >/dev/null 2>&1 || true
        e=$(now)
        echo "$e - $s" | bc >>"$work/lg.times"
    fi
done
read -r lm lmin lmax < <(stats <"$work/l.times")
echo "  vmrescue (repair): median ${lm}s  min ${lmin}s  max ${lmax}s ($lo; the ext4 seed: ${am}s)"
if [[ $gf == yes ]]; then
    read -r lgm lgmin lgmax < <(stats <"$work/lg.times")
    echo "  guestfish run + 3 fsck: median ${lgm}s  min ${lgmin}s  max ${lgmax}s; ratio $(echo "scale=2; $lm / $lgm" | bc)"
fi
python3 - "$work/report.json" <<'EOF'
import json, sys
t = {p["phase"]: p["uptime_s"] for p in json.load(open(sys.argv[1])).get("timings", [])}
if "layers" in t and "disks" in t:
    print(f"  opening the volume group (late tools unpacked, lvm run): {t['layers'] - t['disks']:.2f}s of guest time")
EOF
rm -rf "$work/lvm" "$work/lvm.img"

echo "-- smallest guest RAM that completes"
for m in 64 96 128; do
    fresh "$work/seed"
    t=$(rescue --memory "$m" --timeout 60)
    echo "  ${m} MiB: $(outcome) in ${t}s"
done

echo "-- how time grows with the work"
seed "$work/big" 65536 200
fresh "$work/big"
echo "  64 GiB sparse root, same files: $(rescue)s ($(outcome)); 512 MiB: ${am}s"
seed "$work/many" 512 2000
fresh "$work/many"
echo "  10x the files (2000): $(rescue)s ($(outcome))"
rm -rf "$work/big" "$work/many"

echo "-- 8 rescues at once"
s=$(now)
for i in $(seq 8); do
    mkdir -p "$work/p$i"
    cp --sparse=always "$work/seed/A.img" "$work/p$i/a.img"
    cp --sparse=always "$work/seed/B.img" "$work/p$i/b.img"
    "$bin" rescue --json --image "$work/image" --mode repair --disk "$work/p$i/a.img" --disk "$work/p$i/b.img" \
        >"$work/p$i/report.json" 2>/dev/null &
done
wait
e=$(now)
cores=$(nproc)
echo "  wall $(echo "$e - $s" | bc)s against 8 x ${am}s / $cores cores = $(echo "scale=2; 8 * $am / $cores" | bc)s"

# RUNS runs of a boot path, each on fresh seed disks: median, min and max, and the ratio of
# the median to guestfish's.
ratio() { [[ $gf == yes ]] && echo "; $(echo "scale=2; $1 / $bm" | bc) x guestfish" || true; }
domain_rescue() { # NAME extra args...
    local s e
    s=$(now)
    "$bin" rescue --json --domain "$1" --image "$work/image" --mode repair "${@:2}" >"$work/report.json" 2>"$work/domain.err" || true
    e=$(now)
    echo "$e - $s" | bc
}
iso_boot() {
    local s e
    s=$(now)
    timeout 300 "${VMRESCUE_QEMU:-qemu-system-x86_64}" -machine pc -accel tcg -m 512 -nodefaults -display none \
        -no-reboot -cdrom "$work/image/vmrescue.iso" -boot d \
        -drive file="$work/a.img",if=virtio,format=raw,readonly=on \
        -drive file="$work/b.img",if=virtio,format=raw,readonly=on \
        -serial file:"$work/iso-console.log" >/dev/null 2>&1 || true
    e=$(now)
    "$bin" report --console-log "$work/iso-console.log" --json >"$work/report.json" 2>/dev/null || true
    echo "$e - $s" | bc
}
measure() { # LABEL COMMAND...: RUNS runs on fresh seed disks
    local f=$work/m.times t o
    : >"$f"
    for ((r = 1; r <= runs; r++)); do
        fresh "$work/seed"
        t=$("${@:2}")
        o=$(outcome)
        echo "$t" >>"$f"
    done
    read -r mm mmin mmax < <(stats <"$f")
    echo "  $1: median ${mm}s  min ${mmin}s  max ${mmax}s ($o$(ratio "$mm"); $(python3 -c "import json; print(json.load(open('$work/report.json')).get('kernel','?'))" 2>/dev/null || echo '?'))"
}

# A domain on the seed disks (both on virtio), defined: NAME MACHINE OS_ATTRIBUTES FEATURES.
define_domain() {
    cat >"$work/domain.xml" <<XML
<domain type='qemu'><name>$1</name><memory unit='MiB'>512</memory>
<os$3><type arch='x86_64' machine='$2'>hvm</type><boot dev='hd'/></os>$4
<devices><disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$work/a.img'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$work/b.img'/><target dev='vdb' bus='virtio'/></disk>
<serial type='pty'/><console type='pty'/></devices></domain>
XML
    virsh -q define "$work/domain.xml" >/dev/null
}
# The last run's error, when it gave no report.
domain_error() { [[ $(outcome) != none ]] || sed 's/^/  /' "$work/domain.err" | tail -2; }
undefine() { virsh -q undefine "$1" --nvram >/dev/null 2>&1 || virsh -q undefine "$1" >/dev/null; }

if virsh -c qemu:///system version >/dev/null 2>&1; then
    echo "-- rescue --domain (a pc domain, BIOS, both seed disks on virtio)"
    name=vmrescue-bench-$$
    # No <acpi/>: the rescue run adds it (without it the rescue could not power off).
    define_domain "$name" pc "" ""
    measure "default boot (the rescue kernel by direct kernel boot)" domain_rescue "$name"
    domain_error
    measure "--boot cdrom (the ISO through SeaBIOS and ISOLINUX)" domain_rescue "$name" --boot cdrom
    domain_error
    undefine "$name"
    echo "-- rescue --domain on a UEFI domain (q35, OVMF, both seed disks on virtio)"
    name=vmrescue-bench-uefi-$$
    # UEFI requires ACPI.
    define_domain "$name" q35 " firmware='efi'" "<features><acpi/></features>"
    measure "default boot (OVMF starts the rescue kernel's EFI stub)" domain_rescue "$name"
    domain_error
    undefine "$name"
fi

echo "-- a boot of the ISO by hand (QEMU, BIOS, check mode, until the rescue powers off)"
measure "ISO boot" iso_boot
